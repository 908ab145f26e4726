"""compose/ overlays on the real engine: compose's own merge agrees with infra's, `docker stack config` takes the
swarm file, and an overlay reaches the running stack (an environment variable, a bind mount, a sidecar)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.integration.test_stack import infra

pytestmark = pytest.mark.docker
PROJECT = "ovl"          # its own compose project and image names: nothing of test_stack's "speech" is touched
MODE = "docker-cpu"

SIDECAR = f"""\
services:
  sidecar:
    image: {PROJECT}-ffmpeg:latest-cpu
    command: [sleep, infinity]
    labels: {{io.infra.test: overlay}}
"""
STAGE = """\
services:
  demux:
    environment:
      - OVERLAY_PROBE=from-the-overlay
    volumes:
      - ./nas:/data/nas:ro
"""
RICH = """\
services:
  asr:
    environment: [EXTRA=1, HF_HOME=/elsewhere]
    labels: [team=speech]
    extra_hosts: ["nas.local:10.0.0.5"]
    volumes:
      - ./nas:/data/nas:ro
      - {type: bind, source: /srv/in, target: /data/in, read_only: true}
    ports: ["8080:80", "8080:80"]
    dns: [1.1.1.1]
    command: [echo, hi]
    healthcheck: {test: [CMD, "true"], retries: 5}
    depends_on: [demux]
    deploy: {labels: [x=y], resources: {limits: {cpus: "2"}}}
  vad:
    cap_drop: [NET_RAW]
    networks: [default, extra]
  tool:
    image: speech-ffmpeg:latest
    command: [sleep, infinity]
    extra_hosts: {a: 1.2.3.4}
    pull_policy: never
networks:
  extra: {}
volumes:
  nas: {}
"""


def docker(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False)


def test_the_merge_is_compose_own_and_the_swarm_file_is_what_stack_deploy_takes(project: Path) -> None:
    """`docker compose -f rendered -f overlay config` and `docker compose -f merged config` say the same."""
    from infra.render import default_layout, render_mode
    from infra.render.compose import render_compose
    from infra.render.overlay import rewrite_paths
    from infra.spec import load_stack

    (project / "compose").mkdir()
    (project / "compose" / "rich.yaml").write_text(RICH)
    shutil.copy(REPO / "compose" / "examples" / "nas-and-sidecar.yaml", project / "compose" / "z-example.yaml")
    stack = load_stack(project / "infra.yaml")
    layout = default_layout(stack, MODE)
    out = project / ".infra" / "out" / MODE
    out.mkdir(parents=True)
    files = render_mode(stack, MODE, layout)
    for name in ("compose.yaml", "stack.yaml"):
        (out / name).write_text(files[name])
    (out / "base.yaml").write_text(render_compose(stack, MODE, layout))
    for overlay in stack.overlays:      # paths as the overlay means them: the project's, seen from the output
        (out / Path(overlay.file).name).write_text(yaml.safe_dump(rewrite_paths(overlay.data, layout.to_project)))

    theirs = docker("compose", "-f", "base.yaml", "-f", "rich.yaml", "-f", "z-example.yaml", "config", "--format", "json",
                    cwd=out)
    ours = docker("compose", "-f", "compose.yaml", "config", "--format", "json", cwd=out)
    assert theirs.returncode == 0 and ours.returncode == 0, theirs.stderr + ours.stderr
    assert json.loads(ours.stdout) == json.loads(theirs.stdout)
    assert json.loads(ours.stdout)["services"]["asr"]["environment"]["EXTRA"] == "1"

    swarm = docker("stack", "config", "-c", "stack.yaml", cwd=out)
    assert swarm.returncode == 0, swarm.stderr
    merged = yaml.safe_load(swarm.stdout)["services"]
    assert merged["tool"]["image"] == "speech-ffmpeg:latest" and "pull_policy" not in merged["tool"]
    assert merged["results"]["ports"][0]["published"] == 8080


@pytest.fixture(scope="module")
def overlay_project(tmp_path_factory: pytest.TempPathFactory, native_env: Path, offline_base: str) -> Path:
    """The default spec cut to the stages of the ffmpeg image (so only base and ffmpeg are built), with overlays:
    every mode gets a sidecar, docker-cpu's demux an environment variable and a bind mount."""
    from infra.spec import load_stack

    root = tmp_path_factory.mktemp("overlay")
    for image in ("base", "ffmpeg"):
        shutil.copytree(REPO / "images" / image, root / "images" / image)
    spec = yaml.safe_load((REPO / "infra.yaml").read_text())
    spec["project"] = PROJECT
    spec["native_env"]["path"] = str(native_env)
    spec["stages"] = {"demux": spec["stages"]["demux"], "mux": {**spec["stages"]["mux"], "after": ["demux"]}}
    (root / "infra.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    (root / "compose" / MODE).mkdir(parents=True)
    (root / "compose" / "sidecar.yaml").write_text(SIDECAR)
    (root / "compose" / MODE / "demux.yaml").write_text(STAGE)
    (root / "nas").mkdir()
    (root / "nas" / "hello.txt").write_text("from the nas\n")
    # the offline base under this project's name: the same recipe, so no second debootstrap
    tagged = docker("tag", offline_base, load_stack(root / "infra.yaml").base_ref(MODE))
    assert tagged.returncode == 0, tagged.stderr
    return root


def containers(label: str) -> list[str]:
    return docker("ps", "-aq", "--filter", f"label={label}").stdout.split()


def test_an_overlay_reaches_the_running_stack(overlay_project: Path) -> None:
    from tests.conftest import _HOST_CA

    env = {"INFRA_CA_BUNDLE": _HOST_CA} if _HOST_CA else {}
    project = f"com.docker.compose.project={PROJECT}"
    try:
        up = infra("up", "--mode", MODE, "--build", "--json", cwd=overlay_project, env=env)
        assert up.returncode == 0, up.stderr[-3000:]
        states = {s["service"]: s["state"] for s in json.loads(up.stdout)}
        assert states == {"demux": "running", "mux": "running", "sidecar": "running"}

        demux = containers("io.infra.stage=demux")
        assert len(demux) == 1
        inspect = json.loads(docker("inspect", demux[0]).stdout)[0]
        assert "OVERLAY_PROBE=from-the-overlay" in inspect["Config"]["Env"]
        assert "INFRA_STAGE=demux" in inspect["Config"]["Env"], "the rendered environment is still there"
        nas = next(m for m in inspect["Mounts"] if m["Destination"] == "/data/nas")
        assert nas["Source"] == str(overlay_project / "nas") and nas["RW"] is False
        site = next(m for m in inspect["Mounts"] if m["Destination"] == "/opt/infra/native-site")
        assert site["RW"] is False
        read = docker("exec", demux[0], "cat", "/data/nas/hello.txt")
        assert read.stdout == "from the nas\n", read.stderr

        mux = json.loads(docker("inspect", containers("io.infra.stage=mux")[0]).stdout)[0]
        assert "OVERLAY_PROBE=from-the-overlay" not in mux["Config"]["Env"], "the overlay named demux only"
        sidecar = containers("io.infra.test=overlay")
        assert len(sidecar) == 1
        state = json.loads(docker("inspect", sidecar[0]).stdout)[0]
        assert state["State"]["Running"] is True and state["Config"]["Cmd"] == ["sleep", "infinity"]
    finally:
        down = infra("down", "--mode", MODE, cwd=overlay_project)
    assert down.returncode == 0, down.stderr
    assert containers(project) == [], "down removes the stage workers and the sidecar"
