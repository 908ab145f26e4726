"""`infra deploy --target swarm` on a real multi-node swarm: this engine as the manager and two nodes that are
containers with their own engines (tests/integration/swarm_nodes.py), images and the native environment from a
TLS registry, the job tree on a folder every node sees. Ten jobs spread over the nodes, a node killed while it
holds a stage, the registry killed while the nodes pull, and the refusals that come before anything starts.

The stages are probes that import torch from the delivered environment (the pipeline itself is proven
elsewhere); the one called `asr` sleeps long in a job that holds a file named `slow`, so a node can be killed
while it runs it.
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

import pytest
import yaml

from tests.conftest import REPO
from tests.integration import swarm_nodes
from tests.integration.conftest import forget_images

pytestmark = pytest.mark.docker

PROBE = ("import os, time, torch; "
         "time.sleep(25 if os.path.exists('slow') and os.environ['INFRA_STAGE'] == 'asr' else 0.5); "
         "open(os.environ['INFRA_STAGE'] + '.out', 'w').write(torch.__version__); "
         "open(os.environ['INFRA_STAGE'] + '.runs', 'a')"
         ".write(os.environ.get('INFRA_NODE', os.uname().nodename) + chr(10))")
STAGES = ("demux", "asr", "mux")   # the names the subtitles workflow asks for
CLAIM_TIMEOUT_S = 10
NEEDS_GB = 8.0      # measured: free space fell by 6.7 GB at most over this module


def infra(*args: str, cwd: Path, timeout: int = 1800) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "infra", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def make_project(root: Path, registry: str, native_env: Path, clips: int = 12) -> Path:
    """Two small images (base, subtitles), three probe stages, the env delivered as an image."""
    (root / "images").mkdir(parents=True)
    for name in ("base", "subtitles"):
        shutil.copytree(REPO / "images" / name, root / "images" / name)
    spec = yaml.safe_load((REPO / "infra.yaml").read_text())
    spec.update(project="fleet", registry=f"{registry}/fleet", claim_timeout_s=CLAIM_TIMEOUT_S)
    spec["native_env"].update(path=str(native_env), delivery="image")
    after = {"demux": [], "asr": ["demux"], "mux": ["asr"]}
    spec["stages"] = {name: {"image": "subtitles", "command": ["python3", "-c", PROBE], "after": after[name],
                             "gpu": name == "asr", "reads_media": name == "demux"} for name in STAGES}
    (root / "infra.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    (root / "in").mkdir(parents=True)
    for index in range(clips):          # a clip per job: a job is named by its input
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                        f"sine=frequency={300 + 20 * index}:duration=1", str(root / "in" / f"tone{index}.wav")],
                       check=True)
    return root


def job_dir(project: Path, job_id: str) -> Path:
    from infra.jobs.prepare import job_dir_of
    from infra.workspace import Workspace

    return job_dir_of(Workspace(project), job_id)


def job_file(project: Path, job_id: str) -> dict:
    return json.loads((job_dir(project, job_id) / "job.json").read_text())


def prepare(project: Path, index: int) -> str:
    result = infra("job", "prepare", f"in/tone{index}.wav", "--json", cwd=project)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)["id"]


def stage_report(project: Path, job_id: str) -> str:
    """Each stage's status and error, and the end of its log: what a failed job's assertion shows."""
    folder = job_dir(project, job_id)
    lines = []
    for stage in job_file(project, job_id)["stages"]:
        log = folder / "logs" / f"{stage['name']}.log"
        tail = log.read_text(errors="replace")[-600:] if log.is_file() else ""
        lines.append(f"{stage['name']}: {stage.get('status')} {stage.get('error') or ''} {tail}")
    return "\n".join(lines)


def wait_done(project: Path, job_ids: list[str], timeout: float = 600) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    while True:
        jobs = {j: job_file(project, j) for j in job_ids}
        if all(j["status"] in ("done", "failed") for j in jobs.values()):
            return jobs
        assert time.monotonic() < deadline, {j: (d["status"], [s.get("status") for s in d["stages"]])
                                             for j, d in jobs.items()}
        time.sleep(1)


@pytest.fixture(scope="module")
def torch_env(tmp_path_factory) -> Iterator[Path]:
    """A native environment of torch alone (`infra env create --torch-only`): every node holds the environment
    twice (its image and the copy the workers mount), so the stages' probes get the smallest real one."""
    path = tmp_path_factory.mktemp("torch-env") / "env"
    made = infra("env", "create", "--path", str(path), "--target", "cpu", "--torch-only", cwd=REPO, timeout=1200)
    assert made.returncode == 0, made.stderr[-3000:]
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_torch_only_environment_is_torch_and_its_lock(torch_env: Path) -> None:
    shown = infra("env", "show", "--path", str(torch_env), "--json", cwd=REPO)
    env = json.loads(shown.stdout)
    assert env["torch"].startswith("2.13.0") and env["lock"]["target"] == "cpu", env
    assert {"sympy", "filelock"} <= set(env["packages"]), env["packages"]
    assert not {"faster-whisper", "ctranslate2", "onnxruntime"} & set(env["packages"]), env["packages"]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, torch_env):
    if swarm_nodes.docker("info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip() != "inactive":
        pytest.fail("this engine is in a swarm already; the test makes its own")
    root = swarm_nodes.docker("info", "--format", "{{.DockerRootDir}}").stdout.strip()
    free_gb = shutil.disk_usage(root).free / 1e9
    if free_gb < NEEDS_GB:      # a full disk would stall the nodes' pulls (and everything else on the machine)
        pytest.fail(f"the test swarm needs about {NEEDS_GB:.0f} GB free at {root} (its nodes' image stores and "
                    f"environment copies); {free_gb:.1f} GB is free")
    project = tmp_path_factory.mktemp("fleet")
    swarm = swarm_nodes.up(nodes=2, shared=[str(project)])
    # The manager only manages (as in production): the work, and the environment's copies, stay on the nodes.
    manager = swarm_nodes.docker("info", "--format", "{{.Name}}").stdout.strip()
    swarm_nodes.docker("node", "update", "--availability", "drain", manager)
    try:
        yield make_project(project, swarm.registry, torch_env), swarm
    finally:
        infra("deploy", "--mode", "docker-cpu", "--down", cwd=project, timeout=120)
        swarm_nodes.down()
        forget_project("fleet")
        assert not Path(swarm_nodes.CERTS_D / swarm.registry).exists()
        assert swarm_nodes.docker("ps", "-aq", "--filter", f"label={swarm_nodes.LABEL}").stdout.split() == []
        assert "fleet-docker-cpu_native-env" not in swarm_nodes.docker("volume", "ls", "-q").stdout.split()


def forget_project(project: str) -> None:
    """What the project left on this engine: its images (local and registry tags) and the environment's volume,
    which `docker stack rm` keeps (it is a cache of the environment, like an image)."""
    forget_images(lambda ref: ref.split("/")[-1].startswith(f"{project}-"))
    for _ in range(30):             # the stack's containers go a moment after `docker stack rm`
        if swarm_nodes.docker("volume", "rm", f"{project}-docker-cpu_native-env", check=False).returncode == 0 \
                or f"{project}-docker-cpu_native-env" not in swarm_nodes.docker("volume", "ls", "-q").stdout.split():
            return
        time.sleep(1)


def test_ten_jobs_across_nodes_with_the_environment_from_the_registry(fleet) -> None:
    project, swarm = fleet
    built = infra("build", "--mode", "docker-cpu", "--push", cwd=project)
    assert built.returncode == 0, built.stderr[-3000:]

    # Refused before anything starts: a GPU stage with no GPU node, and an environment not in the registry.
    gpu = infra("deploy", "--mode", "docker-gpu", cwd=project)
    assert gpu.returncode == 2 and gpu.stderr.startswith("error: GPU stage(s) asr and no node of the swarm "
                                                         "is labelled infra.gpu=true"), gpu.stderr
    no_env = infra("deploy", "--mode", "docker-cpu", cwd=project)
    assert no_env.returncode == 2 and "is not in the registry, so no node can get the native environment" \
        in no_env.stderr, no_env.stderr
    assert "infra env push" in no_env.stderr
    pushed = infra("env", "push", "--json", cwd=project)
    assert pushed.returncode == 0, pushed.stderr[-2000:]
    env_image = json.loads(pushed.stdout)
    assert env_image["status"] == "pushed" and env_image["digest"].startswith("sha256:")
    again = infra("env", "push", "--json", cwd=project)
    assert json.loads(again.stdout)["status"] == "in registry"

    # The registry dies as the nodes start pulling; the deploy reports it and finishes once it is back.
    deploy = subprocess.Popen([sys.executable, "-m", "infra", "deploy", "--mode", "docker-cpu", "--scale", "asr=2",
                               "--scale", "demux=2", "--scale", "mux=2"], cwd=project, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: list[str] = []
    assert deploy.stdout is not None
    for line in deploy.stdout:
        lines.append(line.rstrip())
        if line.startswith("delivering the native environment"):
            break
    swarm.stop_registry()
    reported = None
    for line in deploy.stdout:
        lines.append(line.rstrip())
        if line.startswith("note: native-env on infra-node"):
            reported = line
            break
    swarm.start_registry()
    lines += [line.rstrip() for line in deploy.stdout]
    assert deploy.wait(timeout=900) == 0, "\n".join(lines[-40:])
    assert reported is not None, "\n".join(lines)
    assert any(line.startswith("running: demux 2/2, asr 2/2, mux 2/2") for line in lines), "\n".join(lines)

    ps = infra("ps", "--target", "swarm", "--mode", "docker-cpu", "--json", cwd=project)
    tasks = json.loads(ps.stdout)["tasks"]
    env_nodes = {t["node"] for t in tasks if t["service"] == "native-env" and t["state"] == "running"}
    assert env_nodes >= set(swarm.nodes), tasks
    # No shared host path for the environment: each nested node holds it in its own volume, by digest.
    folder = env_image["digest"].replace(":", "-")
    for node in swarm.nodes:
        listed = swarm_nodes.docker("exec", node, "sh", "-c",
                                    "ls /var/lib/docker/volumes/fleet-docker-cpu_native-env/_data").stdout.split()
        assert listed == [folder], (node, listed)

    jobs = [prepare(project, i) for i in range(10)]
    for job_id in jobs:
        submitted = infra("job", "submit", job_id, cwd=project)
        assert submitted.returncode == 0, submitted.stderr[-2000:]
    finished = wait_done(project, jobs)
    assert all(j["status"] == "done" for j in finished.values()), \
        "\n".join(stage_report(project, j) for j, job in finished.items() if job["status"] != "done")
    nodes_used: dict[str, int] = {}
    for job_id, job in finished.items():
        for stage in job["stages"]:
            assert stage["attempts"] == 1 and stage["node"], stage
            nodes_used[stage["node"]] = nodes_used.get(stage["node"], 0) + 1
        for name in STAGES:
            assert (job_dir(project, job_id) / f"{name}.out").read_text().startswith("2.13.0")
    assert sum(nodes_used.values()) == 30
    assert len(set(nodes_used) & set(swarm.nodes)) == 2, nodes_used

    logs = infra("logs", "--target", "swarm", "--mode", "docker-cpu", "asr", "--tail", "50", cwd=project)
    assert logs.returncode == 0 and "@infra-node" in logs.stdout, logs.stdout[-2000:]


def test_a_node_killed_mid_stage_costs_a_retry_and_comes_back(fleet) -> None:
    project, swarm = fleet
    job_id = prepare(project, 10)
    (job_dir(project, job_id) / "slow").write_text("")
    assert infra("job", "submit", job_id, cwd=project).returncode == 0
    deadline = time.monotonic() + 120
    while True:
        work = next(s for s in job_file(project, job_id)["stages"] if s["name"] == "asr")
        if work.get("status") == "running" and work.get("node"):
            break
        assert time.monotonic() < deadline, work
        time.sleep(0.5)
    victim = work["node"]
    assert victim in swarm.nodes
    ps = infra("ps", "--target", "swarm", "--mode", "docker-cpu", cwd=project)
    assert job_id in ps.stdout and victim in ps.stdout
    swarm.kill_node(victim)
    job = wait_done(project, [job_id], timeout=300)[job_id]
    assert job["status"] == "done", stage_report(project, job_id)
    work = next(s for s in job["stages"] if s["name"] == "asr")
    assert work["attempts"] == 2 and work["node"] != victim
    assert [lost["node"] for lost in work["lost"]] == [victim]
    runs = (job_dir(project, job_id) / "asr.runs").read_text().split()
    assert runs == [work["node"]], "the stage ran to completion once, on the node that took it over"

    swarm.restart_node(victim)
    redeploy = infra("deploy", "--mode", "docker-cpu", "--scale", "asr=3", "--scale", "demux=2",
                     "--scale", "mux=2", cwd=project)
    assert redeploy.returncode == 0, redeploy.stdout[-2000:] + redeploy.stderr[-2000:]
    tasks = json.loads(infra("ps", "--target", "swarm", "--mode", "docker-cpu", "--json", cwd=project).stdout)
    back = {t["service"] for t in tasks["tasks"] if t["node"] == victim and t["state"] == "running"}
    assert "native-env" in back and "asr" in back, tasks


def test_compose_mounts_the_environment_image_pulled_from_the_registry(fleet) -> None:
    project, _ = fleet
    removed = infra("deploy", "--mode", "docker-cpu", "--down", cwd=project, timeout=120)
    assert removed.returncode == 0, removed.stderr
    time.sleep(5)                        # the swarm's workers stop before compose's start on the same queue
    image = json.loads(infra("env", "show", "--registry", "--json", cwd=project).stdout)["registry"]
    assert image["digest"] and image["image"].startswith(f"{fleet[1].registry}/fleet/fleet-native-env:")
    swarm_nodes.docker("image", "rm", image["image"])          # this engine must get it from the registry
    up = infra("up", "--mode", "docker-cpu", cwd=project)
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        assert f"pulling the environment image {image['image']}" in up.stdout + up.stderr
        job_id = prepare(project, 11)
        assert infra("job", "submit", job_id, cwd=project).returncode == 0
        job = wait_done(project, [job_id], timeout=300)[job_id]
        assert job["status"] == "done", stage_report(project, job_id)
        assert (job_dir(project, job_id) / "asr.out").read_text().startswith("2.13.0")
        mounts = swarm_nodes.docker("inspect", "--format", "{{json .Mounts}}",
                                    swarm_nodes.docker("ps", "-q", "--filter", "label=io.infra.stage=asr",
                                                       "--filter", "label=io.infra.project=fleet").stdout.split()[0])
        site = next(m for m in json.loads(mounts.stdout) if m["Destination"] == "/opt/infra/native-site")
        assert site["Type"] == "image" and not site["RW"], site
    finally:
        infra("down", "--mode", "docker-cpu", cwd=project, timeout=300)
