#!/usr/bin/env bash
# Prepare this machine for infra: system packages, a Docker engine, the tool's virtualenv.
# Idempotent and quick on a second run. Usage: scripts/setup.sh [--test]
#   --test  also install what the test suite needs (a registry, speech and media tools).
set -euo pipefail
cd "$(dirname "$0")/.."

with_test=0
[ "${1:-}" = "--test" ] && with_test=1
say() { printf 'setup: %s\n' "$*" >&2; }

packages=(ffmpeg debootstrap espeak-ng)   # espeak-ng speaks `infra run --sample` when pyannote's sample is absent
[ "$with_test" = 1 ] && packages+=(sox docker-registry apache2-utils)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # Debian starts the registry as a service where it can; tests run their own.
    if [ "$with_test" = 1 ]; then pkill -x docker-registry 2>/dev/null || true; fi
  else
    say "please install: ${missing[*]} (then run this again)"
    exit 1
  fi
fi

scripts/setup-docker.sh

venv=.venv
extras=""
[ "$with_test" = 1 ] && extras="[test]"
stamp="$venv/.infra-stamp"
want="$(sha256sum pyproject.toml | cut -c1-16)$extras"
if [ ! -x "$venv/bin/python" ]; then
  say "creating $venv"
  python3 -m venv "$venv"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing infra$extras into $venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -e ".$extras" 2>&1 | grep -v '^WARNING: Location' >&2 || true
  "$venv/bin/python" -c 'import infra.cli.app' || { say "install failed"; exit 1; }
  echo "$want" >"$stamp"
fi
