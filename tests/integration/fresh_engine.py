"""A second Docker engine with nothing in it, standing in for a fresh CI runner.

Its own data root, exec root, containerd and bridge; it writes no iptables rules of its own (two engines
would fight over the same chains), so the fixture adds the three that give its containers the network
(masquerade, forward out, replies in) and removes them after. The same containerd image store as
setup-docker configures. Tests point the
docker CLI (and so infra) at it with DOCKER_HOST. ``wipe`` empties it again between two runs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

OCTET = 20 + os.getpid() % 200          # one subnet per process: a test run and a benchmark may run at once
SUBNET = f"172.31.{OCTET}.1/24"
NETWORK = f"172.31.{OCTET}.0/24"


def _rules(bridge: str) -> list[tuple[str, str, list[str]]]:
    """(table, chain, rule) for the fresh engine's containers to reach the network, as docker would add them."""
    return [("nat", "POSTROUTING", ["-s", NETWORK, "!", "-o", bridge, "-j", "MASQUERADE"]),
            ("filter", "FORWARD", ["-i", bridge, "-j", "ACCEPT"]),
            ("filter", "FORWARD", ["-o", bridge, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"])]


def _iptables(action: str, table: str, chain: str, rule: list[str]) -> None:
    subprocess.run(["iptables", "-t", table, action, chain, *rule], check=action != "-D", capture_output=True,
                   timeout=30)


@dataclass(frozen=True)
class FreshEngine:
    host: str                 # unix:///.../docker.sock

    @property
    def env(self) -> dict[str, str]:
        return {"DOCKER_HOST": self.host}

    def docker(self, *args: str, check: bool = True) -> str:
        result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=300,
                                env={**os.environ, **self.env})
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} on the fresh engine: {result.stderr[-2000:]}")
        return result.stdout

    def images(self) -> list[str]:
        return [line for line in self.docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}").splitlines()
                if line.strip()]

    def wipe(self) -> None:
        """Every image and all build cache gone: a runner that has never built anything."""
        self.docker("image", "prune", "-af")
        self.docker("builder", "prune", "-af")
        assert self.images() == []


def _run(*cmd: str) -> None:
    subprocess.run(list(cmd), check=True, capture_output=True, timeout=60)


@contextmanager
def started(root: Path) -> Iterator[FreshEngine]:
    """A fresh engine under ``root`` for the time of the block; RuntimeError when it does not start."""
    bridge = f"infrafresh{os.getpid() % 10000}"
    _run("ip", "link", "add", bridge, "type", "bridge")
    proc = None
    try:
        _run("ip", "addr", "add", SUBNET, "dev", bridge)
        _run("ip", "link", "set", bridge, "up")
        for table, chain, rule in _rules(bridge):
            _iptables("-I", table, chain, rule)
        (root / "daemon.json").write_text(json.dumps({"features": {"containerd-snapshotter": True}}))
        sock = root / "docker.sock"
        log = (root / "dockerd.log").open("w")
        proc = subprocess.Popen(["dockerd", "--config-file", str(root / "daemon.json"), "--data-root",
                                 str(root / "data"), "--exec-root", str(root / "exec"), "--pidfile",
                                 str(root / "dockerd.pid"), "-H", f"unix://{sock}", "-b", bridge,
                                 "--iptables=false", "--ip6tables=false"], stdout=log, stderr=subprocess.STDOUT)
        engine = FreshEngine(f"unix://{sock}")
        deadline = time.monotonic() + 60
        while subprocess.run(["docker", "info"], capture_output=True, env={**os.environ, **engine.env}).returncode:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the second engine did not start: {(root / 'dockerd.log').read_text()[-2000:]}")
            time.sleep(0.3)
        yield engine
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        for table, chain, rule in _rules(bridge):
            _iptables("-D", table, chain, rule)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)
        subprocess.run(["rm", "-rf", str(root / "data"), str(root / "exec")], capture_output=True)


@pytest.fixture(scope="module")
def fresh_engine(tmp_path_factory: pytest.TempPathFactory, docker_engine: None) -> Iterator[FreshEngine]:
    if os.geteuid() != 0 or shutil.which("dockerd") is None or shutil.which("ip") is None:
        pytest.fail("a second engine needs root, dockerd and ip (scripts/setup.sh --test installs them)")
    try:
        with started(tmp_path_factory.mktemp("fresh-engine")) as engine:
            yield engine
    except RuntimeError as exc:
        pytest.fail(str(exc))
