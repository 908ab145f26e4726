#!/usr/bin/env bash
# The main job on the built-in default spec: set the machine up, validate the spec, check the
# toolchain, build the docker-cpu stack (offline base included; a second run is all up to date),
# then turn the built-in sample (two speakers) into subtitles and a muxed video with the real stages.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
scripts/setup.sh
infra="$repo/.venv/bin/infra"
# Behind a TLS-intercepting proxy, builds need the CA bundle that this machine's pip trusts.
if [ -z "${INFRA_CA_BUNDLE:-}" ]; then
  for cert in "${PIP_CERT:-}" $("$repo/.venv/bin/python" -m pip config list 2>/dev/null \
                                | sed -n "s/^[^=]*\.cert='\(.*\)'\$/\1/p"); do
    if [ -n "$cert" ] && [ -f "$cert" ]; then export INFRA_CA_BUNDLE="$cert"; break; fi
  done
fi
work="${INFRA_WORKDIR:-$HOME/.cache/infra/main}"   # away from the repo's infra.yaml: the built-in spec is used
mkdir -p "$work" && cd "$work"
"$infra" config validate
# The native ML environment the stages use, natively or mounted into the containers
# (kept when it already has what they import).
if ! "$work/.venv-ml/bin/python" -c 'import faster_whisper, resemblyzer, onnxruntime' 2>/dev/null; then
  "$infra" env create
fi
"$infra" bootstrap                 # workspace, hardware cache, the recommended Whisper model from PyPI
"$infra" doctor
"$infra" build --mode docker-cpu
"$infra" run --sample              # in the recommended mode; prints where the SRT, the WebVTT and the muxed MP4 are
