"""A multi-node swarm on one machine: this engine as the manager, and N nodes that are containers running their
own Docker engine (each with its own image store), plus a registry every node reaches over TLS.

    python -m tests.integration.swarm_nodes up [--nodes 2] [--shared DIR ...]   (scripts/test-swarm.sh)
    python -m tests.integration.swarm_nodes down

The node image is made offline: the project's debootstrap base, Debian's containerd, runc and iptables, and the
dockerd, docker-proxy and docker binaries that scripts/setup-docker.sh installed on this machine. A node runs
--privileged with a named volume at /var/lib/docker (overlay2 works nested), its docker0 on a subnet of its own,
and the registry's CA in /etc/docker/certs.d. The manager advertises the docker0 gateway, which every node
reaches; so does the registry, which listens there with a certificate for that address. Folders given as
--shared are bind-mounted into every node at the same path (the job tree that every node sees). `down` removes
the nodes, their volumes, the registry, the CA and the swarm: nothing is left behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STATE = Path(os.environ.get("INFRA_TEST_SWARM_STATE", "/tmp/infra-test-swarm"))
NODE_PREFIX = "infra-node"
CERTS_D = Path("/etc/docker/certs.d")
LABEL = "io.infra.test-swarm=1"

DOCKERFILE = """\
FROM {base}
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \\
      containerd runc iptables libsystemd0 libcap2 ca-certificates && rm -rf /var/lib/apt/lists/*
COPY bin/ /usr/local/bin/
COPY node-start.sh /node-start.sh
ENTRYPOINT ["/bin/sh", "/node-start.sh"]
"""
START = """\
set -e
# A restarted node keeps its container's files: what the last run left in /run would stop the engines.
rm -rf /run/containerd /var/run/docker /var/run/docker.pid /var/run/docker.sock
containerd >/var/log/containerd.log 2>&1 &
for _ in $(seq 100); do [ -S /run/containerd/containerd.sock ] && break; sleep 0.1; done
exec dockerd --containerd=/run/containerd/containerd.sock --bip "$NODE_BIP" >/var/log/dockerd.log 2>&1
"""


def docker(*args: str, check: bool = True, capture: bool = True, input: str | None = None,
           timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(["docker", *args], capture_output=capture, text=True, input=input, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {(result.stderr or '').strip()[-2000:]}")
    return result


def gateway() -> str:
    return docker("network", "inspect", "bridge", "--format", "{{(index .IPAM.Config 0).Gateway}}").stdout.strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_image() -> str:
    """The project's offline base (made with debootstrap once; reused by tag)."""
    sys.path.insert(0, str(REPO))
    from infra.build.base import ensure_bases
    from infra.spec import load_stack

    stack = load_stack(REPO / "infra.yaml")
    for _ in ensure_bases(stack, ["docker-cpu"]):
        pass
    return stack.base_ref("docker-cpu")


def node_image() -> str:
    """infra-swarm-node:<hash of its recipe and binaries>, built when absent."""
    binaries = {name: Path(shutil.which(name) or "").resolve() for name in ("dockerd", "docker-proxy", "docker")}
    missing = [n for n, p in binaries.items() if not p.is_file()]
    if missing:
        raise RuntimeError(f"{', '.join(missing)} not found: scripts/setup-docker.sh installs the engine")
    base = base_image()
    recipe = DOCKERFILE.format(base=base) + START + "".join(f"{n}:{p.stat().st_size}" for n, p in binaries.items())
    ref = f"infra-swarm-node:{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"
    if docker("image", "inspect", ref, check=False).returncode == 0:
        return ref
    work = STATE / "node-image"
    shutil.rmtree(work, ignore_errors=True)
    (work / "bin").mkdir(parents=True)
    for name, path in binaries.items():
        shutil.copy2(path, work / "bin" / name)
    (work / "Dockerfile").write_text(DOCKERFILE.format(base=base))
    (work / "node-start.sh").write_text(START)
    docker("build", "-q", "-t", ref, str(work), timeout=1200)
    shutil.rmtree(work, ignore_errors=True)
    return ref


@dataclass
class TestSwarm:
    gateway: str
    registry: str                     # HOST:PORT, TLS with the CA below
    nodes: list[str] = field(default_factory=list)
    shared: list[str] = field(default_factory=list)

    def save(self) -> None:
        STATE.mkdir(parents=True, exist_ok=True)
        (STATE / "state.json").write_text(json.dumps(self.__dict__))

    @classmethod
    def load(cls) -> TestSwarm | None:
        try:
            return cls(**json.loads((STATE / "state.json").read_text()))
        except (OSError, ValueError):
            return None

    # -- nodes ------------------------------------------------------------------------------------------
    def start_node(self, name: str, index: int, image: str, labels: dict[str, str] | None = None) -> None:
        mounts = ["-v", f"{name}-lib:/var/lib/docker", "-v", f"{STATE / 'certs.d'}:/etc/docker/certs.d:ro"]
        for folder in self.shared:
            mounts += ["-v", f"{folder}:{folder}"]
        docker("run", "-d", "--privileged", "--name", name, "--hostname", name, "--label", LABEL,
               "-e", f"NODE_BIP=10.250.{index}.1/24", *mounts, image)
        self.join(name)
        for key, value in (labels or {}).items():
            docker("node", "update", "--label-add", f"{key}={value}", name)

    def join(self, name: str) -> None:
        """Wait for the node's engine, then join it to the swarm (a node that was a member rejoins by itself)."""
        deadline = time.monotonic() + 90
        while docker("exec", name, "docker", "info", "--format", "{{.Swarm.LocalNodeState}}",
                     check=False).stdout.strip() not in ("inactive", "active", "pending"):
            if time.monotonic() > deadline or docker("inspect", "--format", "{{.State.Running}}", name,
                                                      check=False).stdout.strip() != "true":
                log = docker("logs", "--tail", "30", name, check=False)
                tail = docker("exec", name, "tail", "-n", "30", "/var/log/dockerd.log", check=False).stdout
                raise RuntimeError(f"the engine in {name} did not start:\n{log.stdout}{log.stderr}{tail}")
            time.sleep(0.5)
        state = docker("exec", name, "docker", "info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip()
        if state == "inactive":
            token = docker("swarm", "join-token", "-q", "worker").stdout.strip()
            docker("exec", name, "docker", "swarm", "join", "--token", token, f"{self.gateway}:2377")
        self.wait_ready(name)

    def wait_ready(self, name: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while True:
            rows = docker("node", "ls", "--format", "{{.Hostname}} {{.Status}}").stdout.split("\n")
            if f"{name} Ready" in rows:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} is not Ready in the swarm: {rows}")
            time.sleep(0.5)

    def kill_node(self, name: str) -> None:
        docker("kill", name)

    def restart_node(self, name: str) -> None:
        docker("start", name)
        self.join(name)

    # -- registry ---------------------------------------------------------------------------------------
    def start_registry(self) -> subprocess.Popen:
        binary = shutil.which("docker-registry")
        if binary is None:
            raise RuntimeError("docker-registry is not installed: scripts/setup.sh --test installs it")
        root = STATE / "registry"
        (root / "data").mkdir(parents=True, exist_ok=True)
        (root / "config.yml").write_text(
            "version: 0.1\nlog: {level: warn}\n"
            f"storage: {{filesystem: {{rootdirectory: {root / 'data'}}}, delete: {{enabled: true}}}}\n"
            f"http: {{addr: '{self.registry}', "
            f"tls: {{certificate: {STATE / 'registry.crt'}, key: {STATE / 'registry.key'}}}}}\n")
        proc = subprocess.Popen([binary, "serve", str(root / "config.yml")], stdout=(root / "log").open("a"),
                                stderr=subprocess.STDOUT, start_new_session=True)
        (STATE / "registry.pid").write_text(str(proc.pid))
        deadline = time.monotonic() + 30
        while subprocess.run(["curl", "-sf", "--cacert", str(STATE / "ca.crt"), f"https://{self.registry}/v2/"],
                             capture_output=True).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"registry did not start: {(root / 'log').read_text()[-2000:]}")
            time.sleep(0.2)
        return proc

    def stop_registry(self) -> None:
        try:
            pid = int((STATE / "registry.pid").read_text())
            os.kill(pid, 9)
            for _ in range(50):
                os.kill(pid, 0)
                time.sleep(0.1)
        except (OSError, ValueError):
            pass


def make_ca(address: str) -> None:
    """A CA for this run and a registry certificate for ``address``; docker trusts it via certs.d."""
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(STATE / "ca.key"), "-out",
            str(STATE / "ca.crt"), "-days", "2", "-subj", "/CN=infra test swarm CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(STATE / "registry.key"), "-out",
            str(STATE / "registry.csr"), "-subj", f"/CN={address}")
    (STATE / "ext.cnf").write_text(f"subjectAltName=IP:{address}\n")
    openssl("x509", "-req", "-in", str(STATE / "registry.csr"), "-CA", str(STATE / "ca.crt"), "-CAkey",
            str(STATE / "ca.key"), "-CAcreateserial", "-out", str(STATE / "registry.crt"), "-days", "2",
            "-extfile", str(STATE / "ext.cnf"))


def up(nodes: int = 2, shared: list[str] | None = None, labels: dict[int, dict[str, str]] | None = None) -> TestSwarm:
    if docker("info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip() != "inactive":
        raise RuntimeError("this engine is already in a swarm; `docker swarm leave --force` first")
    down()
    STATE.mkdir(parents=True, exist_ok=True)
    gw = gateway()
    swarm = TestSwarm(gateway=gw, registry=f"{gw}:{free_port()}", shared=[str(Path(s).resolve()) for s in shared or []])
    swarm.save()
    make_ca(gw)
    for folder in (STATE / "certs.d" / swarm.registry, CERTS_D / swarm.registry):
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy2(STATE / "ca.crt", folder / "ca.crt")
    swarm.start_registry()
    image = node_image()
    docker("swarm", "init", "--advertise-addr", gw)
    for index in range(1, nodes + 1):
        name = f"{NODE_PREFIX}{index}"
        swarm.nodes.append(name)
        swarm.save()
        swarm.start_node(name, index, image, (labels or {}).get(index))
    return swarm


def down() -> None:
    """Remove everything `up` made (safe to call when nothing is up)."""
    swarm = TestSwarm.load()
    names = docker("ps", "-aq", "--filter", f"label={LABEL}", check=False).stdout.split()
    if names:
        docker("rm", "-f", "-v", *names, check=False)
    volumes = [v for v in docker("volume", "ls", "-q", check=False).stdout.split()
               if v.startswith(NODE_PREFIX) and v.endswith("-lib")]
    if volumes:
        docker("volume", "rm", "-f", *volumes, check=False)
    if swarm is not None:
        swarm.stop_registry()
        shutil.rmtree(CERTS_D / swarm.registry, ignore_errors=True)
        if docker("info", "--format", "{{.Swarm.NodeAddr}}", check=False).stdout.strip() == swarm.gateway:
            docker("swarm", "leave", "--force", check=False)
    shutil.rmtree(STATE, ignore_errors=True)


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tests.integration.swarm_nodes")
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--shared", action="append", default=[], help="a folder every node sees at the same path")
    args = parser.parse_args(argv)
    if args.action == "down":
        down()
        print("test swarm removed")
        return 0
    swarm = up(args.nodes, args.shared)
    print(json.dumps({"registry": swarm.registry, "manager": swarm.gateway, "nodes": swarm.nodes}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
