"""`infra deploy --target swarm` on a real one-node swarm that the test makes and leaves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.test_stack import make_project, media

pytestmark = pytest.mark.docker


def infra(*args: str, cwd: Path, timeout: int = 600):
    return subprocess.run([sys.executable, "-m", "infra", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ))


def swarm_state() -> str:
    return subprocess.run(["docker", "info", "--format", "{{.Swarm.LocalNodeState}}"], capture_output=True,
                          text=True, check=True).stdout.strip()


@pytest.fixture
def swarm():
    assert swarm_state() == "inactive", "the test makes its own swarm"
    subprocess.run(["docker", "swarm", "init", "--advertise-addr", "127.0.0.1"], check=True, capture_output=True)
    try:
        yield
    finally:
        subprocess.run(["docker", "swarm", "leave", "--force"], capture_output=True)


def test_deploy_refuses_without_a_swarm(tmp_path: Path, native_env) -> None:
    project = make_project(tmp_path, native_env)
    result = infra("deploy", "--target", "swarm", "--mode", "docker-cpu", cwd=project)
    assert result.returncode == 2
    assert result.stderr.startswith("error: this engine is not part of a swarm (state: inactive)")
    assert "docker swarm init" in result.stderr


def test_deploy_runs_the_workers_on_a_one_node_swarm_and_removes_them(tmp_path: Path, native_env, swarm,
                                                                       ca_bundle) -> None:
    project = make_project(tmp_path, native_env)
    built = infra("build", "--mode", "docker-cpu", cwd=project, timeout=1800)
    assert built.returncode == 0, built.stderr[-3000:]
    deployed = infra("deploy", "--target", "swarm", "--mode", "docker-cpu", cwd=project)
    assert deployed.returncode == 0, deployed.stderr[-3000:]
    assert "a node that joins later needs the same environment at that path" in deployed.stderr
    try:
        deadline = time.monotonic() + 120
        while True:
            rows = subprocess.run(["docker", "stack", "services", "speech-docker-cpu", "--format", "{{json .}}"],
                                  capture_output=True, text=True, check=True).stdout.splitlines()
            replicas = {json.loads(r)["Name"]: json.loads(r)["Replicas"] for r in rows}
            if len(replicas) == 6 and all(v.startswith("1/") and v == "1/1" for v in replicas.values()):
                break
            assert time.monotonic() < deadline, f"services did not start: {replicas}"
            time.sleep(1)
        clip = media(project)
        prepared = infra("job", "prepare", str(clip), "--json", cwd=project)
        assert prepared.returncode == 0, prepared.stderr
        job_id = json.loads(prepared.stdout)["id"]
        done = infra("job", "submit", job_id, "--wait", "--timeout", "180", cwd=project)
        assert done.returncode == 0, done.stderr[-2000:]
    finally:
        removed = infra("deploy", "--target", "swarm", "--mode", "docker-cpu", "--down", cwd=project)
    assert removed.returncode == 0, removed.stderr
    assert "removed stack speech-docker-cpu" in removed.stdout
    left = subprocess.run(["docker", "stack", "ls", "--format", "{{.Name}}"], capture_output=True, text=True).stdout
    assert "speech-docker-cpu" not in left.split()
