#!/usr/bin/env bash
# The test suite: set up (engine included), then pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
export TESTCONTAINERS_RYUK_DISABLED=true
exec .venv/bin/python -m pytest "$@"
