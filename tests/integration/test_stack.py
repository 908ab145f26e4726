"""`infra up` on the real engine: stage workers with torch from the mounted native env, jobs through the
queue, scaling without double work, idempotent up, down that leaves nothing; and the refusals."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

pytestmark = pytest.mark.docker
STAGE_PROBE = ("import os, socket, torch; "
               "open(os.environ['INFRA_STAGE'] + '.out', 'w').write(torch.__version__); "
               "open(os.environ['INFRA_STAGE'] + '.runs', 'a').write(socket.gethostname() + chr(10))")


def infra(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: int = 900):
    return subprocess.run([sys.executable, "-m", "infra", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def make_project(root: Path, native_env: Path, project: str = "speech", env_path: str | None = None) -> Path:
    """The default spec with each stage's command replaced by a probe that imports torch."""
    shutil.copytree(REPO / "images", root / "images")
    spec = yaml.safe_load((REPO / "infra.yaml").read_text())
    spec["project"] = project
    spec["native_env"]["path"] = env_path or str(native_env)
    for stage in spec["stages"].values():
        stage["command"] = ["python3", "-c", STAGE_PROBE]
    (root / "infra.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return root


def media(root: Path) -> Path:
    path = root / "in" / "tone.wav"
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "sine=frequency=440:duration=2", str(path)],
                   check=True)
    return path


def labelled(project: str) -> list[str]:
    out = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=io.infra.project={project}"],
                         capture_output=True, text=True, check=True).stdout
    return out.split()


@pytest.fixture(scope="module")
def running(tmp_path_factory, native_env, offline_base):
    from tests.conftest import _HOST_CA

    project = make_project(tmp_path_factory.mktemp("stack"), native_env)
    env = {"INFRA_CA_BUNDLE": _HOST_CA} if _HOST_CA else {}
    up = infra("up", "--mode", "docker-cpu", "--build", "--scale", "asr=2", "--json", cwd=project, env=env)
    assert up.returncode == 0, up.stderr[-3000:]
    yield project, json.loads(up.stdout), env
    down = infra("down", "--mode", "docker-cpu", cwd=project)
    assert down.returncode == 0, down.stderr
    assert labelled("speech") == [], "down leaves no container with the project's label"


def test_every_worker_is_healthy_and_a_second_up_changes_nothing(running) -> None:
    project, services, env = running
    assert sorted(s["service"] for s in services) == ["asr", "asr", "demux", "diarize", "mux", "subtitles", "vad"]
    assert {s["health"] for s in services} == {"healthy"} and {s["state"] for s in services} == {"running"}
    ids = subprocess.run(["docker", "ps", "-q", "--filter", "label=io.infra.project=speech"],
                         capture_output=True, text=True, check=True).stdout.split()
    again = infra("up", "--mode", "docker-cpu", "--scale", "asr=2", "--json", cwd=project, env=env)
    assert again.returncode == 0, again.stderr[-2000:]
    after = subprocess.run(["docker", "ps", "-q", "--filter", "label=io.infra.project=speech"],
                           capture_output=True, text=True, check=True).stdout.split()
    assert sorted(after) == sorted(ids), "no container was recreated"


def test_jobs_go_through_the_workers_once_each_with_torch_from_the_native_env(running, native_env) -> None:
    from infra.stack.nativeenv import inspect_env

    project, _, _ = running
    clip = media(project)
    job_ids = []
    for _ in range(3):
        prepared = infra("job", "prepare", str(clip), "--json", cwd=project)
        assert prepared.returncode == 0, prepared.stderr
        job_ids.append(json.loads(prepared.stdout)["id"])
    for job_id in job_ids:
        submitted = infra("job", "submit", job_id, cwd=project)
        assert submitted.returncode == 0, submitted.stderr
    torch = inspect_env(native_env).torch
    for job_id in job_ids:
        waited = infra("job", "submit", job_id, "--wait", "--timeout", "120", cwd=project)
        assert waited.returncode == 0, waited.stderr
        job = json.loads(infra("job", "show", job_id, "--json", cwd=project).stdout)
        assert job["status"] == "done"
        job_dir = project / job["dir"]
        for stage in job["stages"]:
            assert stage["status"] == "done", stage
            assert (job_dir / f"{stage['name']}.out").read_text() == torch, "torch came from the mounted env"
            runs = (job_dir / f"{stage['name']}.runs").read_text().splitlines()
            assert len(runs) == 1, f"{stage['name']} of {job_id} ran {len(runs)} times"
            assert (job_dir / "logs" / f"{stage['name']}.log").exists()


def test_ps_and_logs_show_the_workers(running) -> None:
    project, _, _ = running
    ps = json.loads(infra("ps", "--mode", "docker-cpu", "--json", cwd=project).stdout)
    assert sorted({s["service"] for s in ps["services"]}) == ["asr", "demux", "diarize", "mux", "subtitles", "vad"]
    assert ps["work"] == []           # every job submitted so far is finished
    logs = infra("logs", "asr", "--mode", "docker-cpu", "--tail", "50", cwd=project)
    assert logs.returncode == 0 and "serving stage asr" in logs.stdout
    unknown = infra("logs", "whisper", "--mode", "docker-cpu", cwd=project)
    assert unknown.returncode == 2 and unknown.stderr.startswith("error: no service 'whisper' in docker-cpu")


def test_workers_are_not_root_and_cannot_write_the_environment(running) -> None:
    container = subprocess.run(["docker", "ps", "-q", "--filter", "label=io.infra.stage=asr"],
                               capture_output=True, text=True, check=True).stdout.split()[0]
    probe = ("import os; print(os.getuid()); "
             "print(os.path.exists('/var/run/docker.sock'));"
             "open('/opt/infra/native-site/probe', 'w')")
    result = subprocess.run(["docker", "exec", container, "python3", "-c", probe], capture_output=True, text=True)
    assert result.stdout.split()[:2] == ["10001", "False"]
    assert "Read-only file system" in result.stderr
    inspect = json.loads(subprocess.run(["docker", "inspect", container], capture_output=True, text=True,
                                        check=True).stdout)[0]
    assert inspect["HostConfig"]["Privileged"] is False
    mount = next(m for m in inspect["Mounts"] if m["Destination"] == "/opt/infra/native-site")
    assert mount["RW"] is False


def test_up_without_built_images_refuses_and_starts_nothing(tmp_path: Path, native_env) -> None:
    project = make_project(tmp_path, native_env, project="notbuilt")
    result = infra("up", "--mode", "docker-cpu", cwd=project)
    assert result.returncode == 2
    assert result.stderr.startswith("error: images not built or out of date for docker-cpu: ")
    assert "--build" in result.stderr and "Traceback" not in result.stderr
    assert labelled("notbuilt") == []


def test_up_with_a_missing_native_env_refuses(tmp_path: Path, native_env, running, ca_bundle) -> None:
    project = make_project(tmp_path, native_env, env_path=str(tmp_path / "no-such-env"))
    result = infra("up", "--mode", "docker-cpu", cwd=project)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: native environment {tmp_path / 'no-such-env'} does not exist")
    assert "infra env create" in result.stderr


def test_bad_requests(tmp_path: Path, native_env) -> None:
    project = make_project(tmp_path, native_env)
    scale = infra("up", "--mode", "docker-cpu", "--scale", "whisper=2", cwd=project)
    assert scale.returncode == 2 and scale.stderr.startswith("error: --scale: no service 'whisper' in docker-cpu")
    native = infra("up", "--mode", "native", cwd=project)
    assert native.returncode == 2 and native.stderr.startswith("error: native mode runs the ML stages")
    missing = infra("job", "submit", "20200101-0001", cwd=project)
    assert missing.returncode == 2 and missing.stderr.startswith("error: no job 20200101-0001")
    down = infra("up", "--mode", "docker-cpu", cwd=project, env={"DOCKER_HOST": f"unix://{tmp_path}/none.sock"})
    assert down.returncode == 1 and "no Docker engine answers" in down.stderr.splitlines()[0]


def test_ctrl_c_during_up_leaves_nothing_running(tmp_path: Path, native_env, running, ca_bundle) -> None:
    """SIGINT as soon as the first container exists, while `up` still waits for health."""
    import signal
    import time

    project, _, _ = running
    assert infra("down", "--mode", "docker-cpu", cwd=project).returncode == 0
    proc = subprocess.Popen([sys.executable, "-m", "infra", "up", "--mode", "docker-cpu"], cwd=project,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not labelled("speech"):
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "no container was created"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0, "up was interrupted, not finished"
    assert "Traceback" not in stderr
    assert labelled("speech") == [], "no half-started project is left"
    again = infra("up", "--mode", "docker-cpu", "--scale", "asr=2", cwd=project)   # the module's stack, as it was
    assert again.returncode == 0, again.stderr[-2000:]
