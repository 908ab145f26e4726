#!/usr/bin/env bash
# Deprecated: the virtualenv is found by prepare-job.sh (and `infra job prepare` needs none of this).
echo "prepare-job-venv.sh is deprecated and will be removed: use 'infra job prepare' (or prepare-job.sh), which does the same" >&2
exec "$(dirname "${BASH_SOURCE[0]}")/prepare-job.sh" "$@"
