#!/usr/bin/env bash
# Make a current Docker engine (with BuildKit), buildx and compose v2 available and running.
#
# Idempotent: when a recent enough engine already answers, nothing changes.
# As root on Debian bookworm it installs Engine 28 from Debian's `forky` suite
# (bookworm's own docker.io 20.10 has a BuildKit without named build contexts),
# starts dockerd in the background and waits until `docker info` answers.
# Anywhere else it says what to install.
#
# The engine keeps its images in containerd's image store (daemon.json
# "features": {"containerd-snapshotter": true}): only that store lets the
# engine's own BuildKit export its cache to a registry, write OCI images with
# rewritten timestamps (reproducible builds) and keep provenance attestations
# through `--load` and `docker push` (docs/REGISTRY.md). An engine this script
# started with the classic store is restarted with it; images of the classic
# store stay on disk but are hidden while the containerd store is on.
set -euo pipefail

MIN_ENGINE_MAJOR=23      # named build contexts (target:) need BuildKit >= 0.10
MIN_BUILDX="0.17"
PLUGIN_DIR=/usr/local/lib/docker/cli-plugins
PREFIX=/opt/infra-docker
DOCKERD_LOG=/var/log/infra-dockerd.log
DAEMON_JSON=/etc/docker/daemon.json

say() { printf 'setup-docker: %s\n' "$*" >&2; }

version_ge() {  # version_ge A B: A >= B (dotted numbers)
  [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]
}

engine_ok() {
  command -v docker >/dev/null 2>&1 || return 1
  local v
  v=$(timeout 10 docker version --format '{{.Server.Version}}' 2>/dev/null) || return 1
  [ "${v%%.*}" -ge "$MIN_ENGINE_MAJOR" ] 2>/dev/null
}

containerd_store() {   # the running engine keeps its images in containerd's store
  docker info --format '{{json .DriverStatus}}' 2>/dev/null | grep -q 'io.containerd.snapshotter'
}
own_dockerd() {        # the running dockerd is the one this script installs (so it may restart it)
  local pid
  pid=$(pgrep -x dockerd | head -n1) || return 1
  [ "$(readlink -f "/proc/$pid/exe")" = "$(readlink -f /usr/local/bin/dockerd 2>/dev/null)" ]
}
enable_containerd_store() {   # merge the feature into daemon.json, keeping whatever else it says
  mkdir -p "$(dirname "$DAEMON_JSON")"
  python3 - "$DAEMON_JSON" <<'PY'
import json, os, sys
path = sys.argv[1]
config = json.load(open(path)) if os.path.exists(path) and os.path.getsize(path) else {}
config.setdefault("features", {})["containerd-snapshotter"] = True
tmp = path + ".tmp"
with open(tmp, "w") as out:
    json.dump(config, out, indent=2)
    out.write("\n")
os.replace(tmp, path)
PY
}
plugins_ok() {
  local bx
  bx=$(docker buildx version 2>/dev/null | awk '{print $2}' | sed 's/^v//; s/[-+].*//') || return 1
  [ -n "$bx" ] && version_ge "$bx" "$MIN_BUILDX" || return 1
  docker compose version --short >/dev/null 2>&1 || return 1
}

if engine_ok && plugins_ok && containerd_store; then
  say "engine $(docker version --format '{{.Server.Version}}') (containerd image store), buildx and compose already usable; nothing to do"
  exit 0
fi
if engine_ok && plugins_ok && ! own_dockerd; then
  say "the running engine keeps its images in the classic store: registry build cache, reproducible images and"
  say "attestations need the containerd image store; add \"features\": {\"containerd-snapshotter\": true} to $DAEMON_JSON and restart it"
  exit 0
fi

if [ "$(id -u)" != 0 ] || [ ! -f /etc/debian_version ]; then
  say "no usable Docker engine (need Engine >= ${MIN_ENGINE_MAJOR} with buildx >= ${MIN_BUILDX} and compose v2)."
  say "install Docker Engine with the buildx and compose plugins (https://docs.docker.com/engine/install/), start it, and run this again."
  exit 1
fi

install_binaries() {
  export DEBIAN_FRONTEND=noninteractive
  say "installing containerd, runc, iptables and tini from the machine's Debian"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends containerd runc iptables tini ca-certificates >/dev/null

  local work uri
  work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  uri=$(grep -hEo '^URIs: *[^ ]+' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1 | awk '{print $2}')
  [ -n "$uri" ] || uri=$(grep -hEo '^deb +[^ ]+' /etc/apt/sources.list 2>/dev/null | head -n1 | awk '{print $2}')
  [ -n "$uri" ] || uri=http://deb.debian.org/debian
  mkdir -p "$work/lists/partial" "$work/parts" "$work/debs"
  printf 'deb [trusted=yes] %s forky main\n' "$uri" >"$work/forky.list"
  local opts=(-o "Dir::Etc::sourcelist=$work/forky.list" -o "Dir::Etc::sourceparts=$work/parts"
              -o "Dir::State::Lists=$work/lists" -o "Dir::Cache::archives=$work/debs"
              -o "APT::Get::List-Cleanup=0" -o "APT::Sandbox::User=root")
  say "fetching docker.io, docker-cli, docker-buildx and docker-compose from Debian forky ($uri)"
  apt-get "${opts[@]}" update -qq
  (cd "$work/debs" && apt-get "${opts[@]}" download docker.io docker-cli docker-buildx docker-compose >/dev/null)

  rm -rf "$PREFIX.new" && mkdir -p "$PREFIX.new"
  for deb in "$work"/debs/*.deb; do dpkg-deb -x "$deb" "$PREFIX.new"; done
  rm -rf "$PREFIX" && mv "$PREFIX.new" "$PREFIX"

  for bin in dockerd docker-proxy; do
    ln -sf "$(find "$PREFIX" -type f -perm -u+x -name "$bin" | head -n1)" "/usr/local/bin/$bin"
  done
  ln -sf "$(command -v tini-static || command -v tini)" /usr/local/bin/docker-init
  if ! command -v docker >/dev/null 2>&1; then
    ln -sf "$(find "$PREFIX" -type f -perm -u+x -path '*/bin/docker' | head -n1)" /usr/local/bin/docker
  fi
  mkdir -p "$PLUGIN_DIR"
  for plugin in docker-buildx docker-compose; do
    ln -sf "$(find "$PREFIX" -type f -perm -u+x -path "*/cli-plugins/$plugin" | head -n1)" "$PLUGIN_DIR/$plugin"
  done
}

dockerd_version() { /usr/local/bin/dockerd --version 2>/dev/null | sed -E 's/^Docker version ([0-9]+).*/\1/'; }

if [ ! -x /usr/local/bin/dockerd ] || [ "$(dockerd_version)" -lt "$MIN_ENGINE_MAJOR" ] 2>/dev/null \
   || [ ! -x "$PLUGIN_DIR/docker-buildx" ] || [ ! -x "$PLUGIN_DIR/docker-compose" ]; then
  install_binaries
fi

if [ "$(id -u)" = 0 ]; then
  enable_containerd_store
fi
if engine_ok && ! containerd_store && own_dockerd; then
  say "restarting dockerd with the containerd image store"
  pkill -x dockerd
  for _ in $(seq 1 30); do pgrep -x dockerd >/dev/null 2>&1 || break; sleep 1; done
fi
if ! engine_ok; then
  if pgrep -x dockerd >/dev/null 2>&1; then
    say "a dockerd is running but does not answer (or is too old); stop it and run this again"
    exit 1
  fi
  say "starting dockerd (log: $DOCKERD_LOG)"
  rm -f /var/run/docker.pid
  nohup setsid /usr/local/bin/dockerd >"$DOCKERD_LOG" 2>&1 </dev/null &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
fi

if ! engine_ok; then
  say "dockerd did not answer within 60 s; last lines of $DOCKERD_LOG:"
  tail -n 20 "$DOCKERD_LOG" >&2 || true
  exit 1
fi
plugins_ok || { say "buildx >= $MIN_BUILDX or compose v2 missing in $PLUGIN_DIR"; exit 1; }
say "engine $(docker version --format '{{.Server.Version}}'), $(docker buildx version | awk '{print $1, $2}'), compose $(docker compose version --short) ready"
