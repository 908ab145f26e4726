"""`infra serve` as the stack's service 'serve' on the real engine: `infra up --mode docker-cpu` with serve.enabled
brings it up with the workers (healthy, its port published), a film uploaded over HTTP is done by the workers
through the queue (the real stages, Whisper tiny.en), and `infra down` removes it.

One stack, one film: the images are built for this module's own project name (BuildKit's cache makes most of
it quick), so it never touches another test's stack.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.conftest import REPO
from tests.integration.conftest import free_port
from tests.integration.media_fixtures import media  # noqa: F401

pytestmark = pytest.mark.docker
PROJECT = "servestack"
TOKEN = "stack-token-for-tests-only-0123456789"


def infra(*args: str, cwd: Path, env: dict[str, str], timeout: int = 1800) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "infra", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


def labelled() -> list[str]:
    return subprocess.run(["docker", "ps", "-aq", "--filter", f"label=io.infra.project={PROJECT}"],
                          capture_output=True, text=True, check=True).stdout.split()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, native_env: Path, model_cache: Path,
          offline_base: str) -> Iterator[dict[str, Any]]:
    """The default spec under its own project name, serve enabled on a free port of loopback, the token in the
    workspace's secrets file (which the service reads through config/), Whisper tiny.en in the workspace's model
    cache; then `infra up --mode docker-cpu --build`."""
    from tests.conftest import _HOST_CA

    ws = tmp_path_factory.mktemp("serve-stack")
    shutil.copytree(REPO / "images", ws / "images")
    spec = yaml.safe_load((REPO / "infra.yaml").read_text())
    port = free_port()
    spec.update(project=PROJECT, serve={"enabled": True, "port": port, "address": "127.0.0.1"})
    spec["native_env"]["path"] = str(native_env)
    (ws / "infra.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    (ws / "config").mkdir()
    (ws / "config" / "secrets.json").write_text(json.dumps({"INFRA_SERVE_TOKEN": TOKEN}))
    shutil.copytree(model_cache / "whisper", ws / "shared-model-and-cache" / "whisper", copy_function=os.link)
    env = {k: v for k, v in os.environ.items() if k not in ("INFRA_FILE", "INFRA_SERVE_TOKEN", "INFRA_CACHE")}
    env.update({"INFRA_CA_BUNDLE": _HOST_CA} if _HOST_CA else {})
    up = infra("up", "--mode", "docker-cpu", "--build", "--json", cwd=ws, env=env)
    state = {"ws": ws, "port": port, "env": env, "up": up, "url": f"http://127.0.0.1:{port}"}
    try:
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-3000:]
        yield state
    finally:
        down = infra("down", "--mode", "docker-cpu", cwd=ws, env=env, timeout=300)
        state["down"] = down
        assert down.returncode == 0, down.stderr[-2000:]


def api(state: dict, method: str, path: str, token: str | None = TOKEN, **kwargs: Any) -> requests.Response:
    session = requests.Session()
    session.trust_env = False
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with session:
        return session.request(method, state["url"] + path, headers=headers, timeout=120, **kwargs)


def test_up_brings_the_service_with_the_workers_healthy_and_published(stack: dict) -> None:
    services = json.loads(stack["up"].stdout)
    assert sorted(s["service"] for s in services) == ["asr", "demux", "diarize", "mux", "serve", "subtitles", "vad"]
    assert {(s["state"], s["health"]) for s in services} == {("running", "healthy")}
    assert api(stack, "GET", "/healthz", token=None).json() == {"status": "ok"}
    assert api(stack, "GET", "/api/jobs", token=None).status_code == 401
    assert api(stack, "GET", "/api/jobs").json() == []
    container = next(s["container"] for s in services if s["service"] == "serve")
    inspect = json.loads(subprocess.run(["docker", "inspect", container], capture_output=True, text=True,
                                        check=True).stdout)[0]
    assert inspect["Config"]["User"] == "10001:10001"
    assert TOKEN not in json.dumps(inspect)                       # read from config/, never put in the container
    bound = inspect["HostConfig"]["PortBindings"][f"{stack['port']}/tcp"]
    assert bound == [{"HostIp": "127.0.0.1", "HostPort": str(stack["port"])}]
    rendered = (stack["ws"] / ".infra" / "out" / "docker-cpu" / "compose.yaml").read_text()
    assert TOKEN not in rendered


def test_a_film_uploaded_over_http_is_done_by_the_workers(stack: dict, media) -> None:  # noqa: F811
    with media["speech"].open("rb") as film:
        answer = api(stack, "POST", "/api/jobs", files={"file": ("speech.mp4", film, "video/mp4")},
                     data={"model": "tiny.en", "language": "en"})
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["id"]
    assert answer.json()["mode"] == "docker-cpu"
    deadline = time.monotonic() + 600
    while True:
        job = api(stack, "GET", f"/api/jobs/{job_id}").json()
        if job["status"] in ("done", "failed"):
            break
        assert time.monotonic() < deadline, job
        time.sleep(1)
    assert job["status"] == "done", job
    srt = api(stack, "GET", f"/api/jobs/{job_id}/srt")
    assert srt.status_code == 200 and " --> " in srt.text and "film" in srt.text.lower()
    ws = stack["ws"]
    data = json.loads((ws / (ws / "jobs" / job_id).read_text().strip() / "job.json").read_text())
    assert data["submitted"] and data["media"]["path"].startswith("/data/in/uploads/")
    assert all(s.get("worker") and "runner" not in s for s in data["stages"]), data["stages"]    # the workers ran it
    logs = infra("logs", "serve", "--mode", "docker-cpu", "--tail", "200", cwd=ws, env=stack["env"])
    assert logs.returncode == 0 and "POST /api/jobs 202" in logs.stdout and TOKEN not in logs.stdout


def test_down_removes_the_service(stack: dict) -> None:
    """Runs last: down (the fixture's own teardown checks it again) leaves no container and closes the port."""
    down = infra("down", "--mode", "docker-cpu", cwd=stack["ws"], env=stack["env"], timeout=300)
    assert down.returncode == 0, down.stderr[-2000:]
    assert labelled() == []
    with pytest.raises(requests.ConnectionError):
        api(stack, "GET", "/healthz", token=None)
