#!/usr/bin/env bash
# Prepare this machine for infra: system packages, a Docker engine, the tool's virtualenv.
# Idempotent and quick on a second run. Usage: scripts/setup.sh [--test]
#   --test  also install what the test suite needs (a registry, speech and media tools).
set -euo pipefail
cd "$(dirname "$0")/.."

with_test=0
[ "${1:-}" = "--test" ] && with_test=1
say() { printf 'setup: %s\n' "$*" >&2; }

# The service that installing docker-registry started: systemd's unit, or without systemd the
# init script's daemon, whose pid file names it (start-stop-daemon stops that process only).
stop_package_registry() {
  if [ -d /run/systemd/system ]; then
    say "stopping the docker-registry service the package started (tests run their own)"
    systemctl stop docker-registry.service || say "could not stop the docker-registry service"
  elif [ -s /var/run/docker-registry.pid ] && [ -x /etc/init.d/docker-registry ]; then
    say "stopping the docker-registry service the package started (tests run their own)"
    /etc/init.d/docker-registry stop >/dev/null || say "could not stop the docker-registry service"
  fi
}

packages=(ffmpeg debootstrap espeak-ng)   # espeak-ng speaks `infra run --sample` when pyannote's sample is absent
# chromium: the status page's browser test (tests/integration/test_status_page.py drives it with Playwright);
# gcc: the ELF reader's tests build small shared objects (tests/unit/test_elfscan.py)
[ "$with_test" = 1 ] && packages+=(sox docker-registry apache2-utils chromium gcc)

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
    # Debian's docker-registry package starts its service where it can; the tests run their own
    # registries, so stop that service (and only it: a registry the user runs is left alone).
    if [[ " ${missing[*]} " == *" docker-registry "* ]]; then stop_package_registry; fi
  else
    say "please install: ${missing[*]} (then run this again)"
    exit 1
  fi
fi

scripts/setup-docker.sh

extras=""
[ "$with_test" = 1 ] && extras="[test]"
scripts/install-venv.sh .venv "$extras" infra.cli.app   # fails (and stamps nothing) when pip fails
