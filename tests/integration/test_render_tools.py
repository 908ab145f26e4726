"""The rendered files, fed to the real tools: compose, buildx bake (--print and --check), docker stack.

Nothing is built or started. `bake --check` runs BuildKit's Dockerfile frontend
on every target (parse and lint) with each parent replaced by an empty local
image, since a `target:` context cannot be checked without building it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

pytestmark = pytest.mark.docker
MODES = ("native", "docker-cpu", "docker-gpu")


def docker(*args: str, cwd: Path) -> str:
    result = subprocess.run(["docker", *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"docker {' '.join(args)}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def empty_image(docker_engine: None) -> str:
    """A local image with nothing in it, to stand in for base images under `bake --check`."""
    tag = f"infra-render-test-empty:{os.getpid()}"
    subprocess.run(f"tar -cf - --files-from /dev/null | docker import - {tag}", shell=True, check=True,
                   capture_output=True, timeout=60)
    yield tag
    subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, timeout=60)


def make_project(root: Path, case: str, base: str | None = None) -> Path:
    shutil.copy(REPO / "infra.yaml", root / "infra.yaml")
    shutil.copytree(REPO / "images", root / "images")
    spec = yaml.safe_load((root / "infra.yaml").read_text())
    if case == "baked":
        spec["native_env"]["torch"] = "baked"
        spec["registry"] = "127.0.0.1:5000/speech"
        spec["secrets"]["ca_bundle"] = "config/ca-bundle.pem"
        (root / "config").mkdir()
        (root / "config" / "ca-bundle.pem").write_text("not a real bundle\n")
    if case == "serve":
        spec["serve"] = {"enabled": True, "port": 9123}
    if base is not None:
        spec["bases"]["check"] = {"image": base}
        for mode in spec["modes"].values():
            mode["base"] = "check"
    (root / "infra.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return root


def render(project: Path, run_cli, mode: str) -> Path:
    result = run_cli("render", "--mode", mode, cwd=project)
    assert result.code == 0, result.stderr
    return project / ".infra" / "out" / mode


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", ["default", "baked", "serve"])
def test_compose_bake_and_stack_accept_the_rendered_files(case: str, mode: str, tmp_path: Path, run_cli) -> None:
    project = make_project(tmp_path, case)
    out = render(project, run_cli, mode)

    config = json.loads(docker("compose", "-f", str(out / "compose.yaml"), "config", "--format", "json", cwd=tmp_path))
    serving = case == "serve" and mode != "native"
    stages = set(config["services"]) - ({"serve"} if serving else set())
    assert ("serve" in config["services"]) == serving
    if serving:
        published = config["services"]["serve"]["ports"]
        assert published == [{"mode": "ingress", "host_ip": "0.0.0.0", "target": 9123, "published": "9123",
                              "protocol": "tcp"}]
        spec_mount = next(v for v in config["services"]["serve"]["volumes"] if v["target"] == "/data/infra.yaml")
        assert spec_mount["source"] == str(project / "infra.yaml")
    assert stages == ({"demux", "mux"} if mode == "native" else {"demux", "vad", "asr", "diarize", "subtitles", "mux"})
    jobs = next(v for v in config["services"]["demux"]["volumes"] if v["target"] == "/data/jobs")
    assert jobs["source"] == str(project / "jobs"), "relative paths resolve against the project"
    with_setup = docker("compose", "-f", str(out / "compose.yaml"), "--profile", "setup", "config", "--services",
                        cwd=tmp_path)
    assert "setup-dirs" in with_setup.split()

    printed = json.loads(docker("buildx", "bake", "-f", str(out / "docker-bake.json"), "--print", cwd=project)
                         .split("\n#")[0])
    assert set(printed["target"]) == set(json.loads((out / "docker-bake.json").read_text())["target"])

    stack = yaml.safe_load(docker("stack", "config", "-c", str(out / "stack.yaml"), cwd=tmp_path))
    assert set(stack["services"]) == stages | ({"serve"} if serving else set())
    assert stack["services"]["demux"]["volumes"][0]["source"] == "/srv/speech/in"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", ["default", "baked"])
def test_buildkit_parses_and_lints_every_dockerfile(case: str, mode: str, tmp_path: Path, run_cli,
                                                   empty_image: str) -> None:
    project = make_project(tmp_path, case, base=empty_image)
    out = render(project, run_cli, mode)
    bake = json.loads((out / "docker-bake.json").read_text())
    parents = sorted({p for t in bake["target"].values() for p, src in t.get("contexts", {}).items()
                      if src.startswith("target:")})
    args = ["buildx", "bake", "-f", str(out / "docker-bake.json"), "--check",
            f"--allow=fs.read={REPO / 'stages'}", f"--allow=fs.read={REPO / 'infra'}"]
    for parent in parents:
        args += ["--set", f"*.contexts.{parent}=docker-image://{empty_image}"]
    output = docker(*args, cwd=project)
    assert output.count("Check complete, no warnings found.") == len(bake["target"]), output[-3000:]
