#!/usr/bin/env bash
# A multi-node test swarm on this machine: this engine as the manager, N nodes as containers running their
# own Docker engine, and a TLS registry they all reach (tests/integration/swarm_nodes.py).
#
#   scripts/test-swarm.sh up [--nodes 2] [--shared DIR ...]
#   scripts/test-swarm.sh down
#
# `up` prints the registry address to put in infra.yaml; `down` removes the nodes, their volumes, the
# registry, its CA and the swarm.
set -euo pipefail
cd "$(dirname "$0")/.."
python=.venv/bin/python
[ -x "$python" ] || python=python3
exec "$python" -m tests.integration.swarm_nodes "$@"
