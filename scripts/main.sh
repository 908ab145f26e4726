#!/usr/bin/env bash
# The main job on the built-in default spec: set the machine up, validate the spec, check the toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cd "$(mktemp -d)"      # away from the repo's infra.yaml: use the spec built into the package
"$OLDPWD/.venv/bin/infra" config validate
"$OLDPWD/.venv/bin/infra" doctor
