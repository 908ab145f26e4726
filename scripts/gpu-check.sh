#!/usr/bin/env bash
# On a machine with an NVIDIA GPU, no Docker needed: infra's hardware detection through real NVML, the recommendation
# infra makes for that GPU, torch's CUDA from the environment, and faster-whisper in float16 on a short clip made
# here, with their figures (scripts/gpu_check.py; docs/HARDWARE.md, "Checking a GPU machine").
#
#   scripts/gpu-check.sh [--python PY] [--wheels DIR] [--model DIR] [--clip AUDIO] [--compute-type float16]
#                        [--json FILE | --json -] [--timeout SECONDS]
#
# --python   the Python whose torch and faster-whisper the stages use (default: $INFRA_GPU_PYTHON, else the tree's
#            .venv-ml when it exists, else python3)
# --wheels   a folder of wheels to install for this run only (pip --no-index --no-deps into a temporary folder put
#            on PYTHONPATH): what that Python lacks, e.g. pydantic for infra, or faster-whisper
# --model    a CTranslate2 Whisper model folder (default: $INFRA_CACHE/whisper/tiny.en, else the tree's
#            shared-model-and-cache/whisper/tiny.en)
# Exit: 0 every check passed; 1 a check failed; 2 something the checks need is missing (said on its line);
#       3 no NVIDIA GPU on this machine.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${INFRA_GPU_PYTHON:-}"
wheels=""
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --python|--wheels)
            [ $# -ge 2 ] || { echo "gpu-check: $1 needs a value" >&2; exit 2; }
            if [ "$1" = --python ]; then python="$2"; else wheels="$2"; fi
            shift 2 ;;
        -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) args+=("$1"); shift ;;
    esac
done
if [ -z "$python" ]; then
    if [ -x "$root/.venv-ml/bin/python" ]; then
        python="$root/.venv-ml/bin/python"
    else
        python="$(command -v python3 || true)"
    fi
fi
if [ -z "$python" ] || ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "gpu-check: no Python 3.11 or newer at '${python:-python3}' (give one with --python PY)" >&2
    exit 2
fi
site=""
if [ -n "$wheels" ]; then
    if ! compgen -G "$wheels/*.whl" >/dev/null; then
        echo "gpu-check: no wheels (*.whl) in $wheels" >&2
        exit 2
    fi
    site="$(mktemp -d "${TMPDIR:-/tmp}/gpu-check-site.XXXXXX")"
    trap 'rm -rf "$site"' EXIT
    if ! "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" \
            "$wheels"/*.whl; then
        echo "gpu-check: $python -m pip could not install the wheels in $wheels" >&2
        exit 2
    fi
fi
export PYTHONPATH="$root${site:+:$site}${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
"$python" "$root/scripts/gpu_check.py" ${args[@]+"${args[@]}"}
