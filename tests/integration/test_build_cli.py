"""`infra build` end to end on the real engine: the docker-cpu stack, up-to-date reruns, push, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.docker
FAKE_TOKEN = "hf_infra_test_token_never_in_an_image"


def infra(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: int = 1500):
    return subprocess.run([sys.executable, "-m", "infra", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def docker_out(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True, timeout=120).stdout


@pytest.fixture(scope="module")
def built_stack(tmp_path_factory, offline_base) -> tuple[Path, dict, dict]:
    """The default docker-cpu stack built from the shipped spec (BuildKit's cache makes reruns cheap), twice."""
    import shutil

    from tests.conftest import _HOST_CA

    project = tmp_path_factory.mktemp("stack")
    shutil.copy(REPO / "infra.yaml", project / "infra.yaml")
    shutil.copytree(REPO / "images", project / "images")
    env = {"HF_TOKEN": FAKE_TOKEN}
    if _HOST_CA:
        env["INFRA_CA_BUNDLE"] = _HOST_CA
    first = infra("build", "--mode", "docker-cpu", "--json", cwd=project, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    second = infra("build", "--mode", "docker-cpu", "--json", cwd=project, env=env)
    assert second.returncode == 0, second.stderr[-3000:]
    return project, json.loads(first.stdout), json.loads(second.stdout)


def test_whole_stack_builds_then_is_up_to_date(built_stack) -> None:
    project, first, second = built_stack
    names = {"base", "base-ml", "ffmpeg", "subtitles", "asr", "diarization", "pyannote-vad", "serve"}
    assert {i["name"] for i in first["images"]} == names
    assert all(i["status"] in ("built", "up to date") for i in first["images"])
    assert {i["status"] for i in second["images"]} == {"up to date"}
    assert all(i["image_id"].startswith("sha256:") and i["size_bytes"] > 0 for i in second["images"])
    summary = json.loads((project / "out" / "build-summary.json").read_text())
    assert summary["mode"] == "docker-cpu" and len(summary["images"]) == len(names)
    assert (project / "out" / "build-summary.previous.json").is_file()
    assert (project / ".infra" / "out" / "docker-cpu" / "dockerfiles" / "asr.Dockerfile").is_file()


def test_images_carry_labels_no_torch_and_a_non_root_user(built_stack) -> None:
    labels = json.loads(docker_out("image", "inspect", "speech-asr:latest-cpu", "--format", "{{json .Config.Labels}}"))
    assert labels["io.infra.mode"] == "docker-cpu"
    assert labels["io.infra.torch-policy"] == "mounted"
    assert len(labels["io.infra.content-hash"]) == 64
    parent_id = docker_out("image", "inspect", "speech-base-ml:latest-cpu", "--format", "{{.Id}}").strip()
    assert labels["io.infra.parent-digest"] == parent_id
    probe = ("import importlib.util as u, os; "
             "print(u.find_spec('torch') is None, u.find_spec('faster_whisper') is not None, os.getuid())")
    out = docker_out("run", "--rm", "speech-asr:latest-cpu", "python3", "-c", probe).split()
    assert out == ["True", "True", "10001"]


def test_no_secret_reaches_an_image_or_the_summary(built_stack) -> None:
    project, _, _ = built_stack
    for name in ("base", "base-ml", "ffmpeg", "subtitles", "asr", "diarization", "pyannote-vad", "serve"):
        ref = f"speech-{name}:latest-cpu"
        seen = docker_out("image", "inspect", ref) + docker_out("history", "--no-trunc", ref)
        assert FAKE_TOKEN not in seen and "BEGIN CERTIFICATE" not in seen
        listing = docker_out("run", "--rm", "--entrypoint", "sh", ref, "-c", "ls /run/secrets 2>/dev/null; true")
        assert listing.strip() == ""
    assert FAKE_TOKEN not in (project / "out" / "build-summary.json").read_text()


def test_push_from_the_cli_matches_the_registry(built_stack, registry, docker_config) -> None:
    project, _, _ = built_stack
    subprocess.run(["docker", "login", registry.host, "-u", registry.user, "--password-stdin"],
                   input=registry.password, text=True, check=True, capture_output=True)
    result = infra("build", "--mode", "native", "--push", "--registry", f"{registry.host}/ci", "--json", cwd=project)
    assert result.returncode == 0, result.stderr[-3000:]
    pushed = json.loads(result.stdout)["pushed"]
    assert set(pushed) == {"base", "ffmpeg"}
    for name, ref in pushed.items():
        digest = ref.split("@", 1)[1]
        status, headers, _ = registry.get(f"/v2/ci/speech-{name}/manifests/latest-native",
                                          accept="application/vnd.oci.image.index.v1+json, "
                                                 "application/vnd.docker.distribution.manifest.v2+json, "
                                                 "application/vnd.oci.image.manifest.v1+json")
        assert status == 200 and headers["Docker-Content-Digest"] == digest


@pytest.mark.parametrize(("args", "code", "message"), [
    (["--only", "whisper"], 2, "error: --only: unknown image 'whisper' in docker-cpu"),
    (["--jobs", "0"], 2, "error: --jobs: must be at least 1, got 0"),
    (["--push"], 2, "error: --push needs a registry"),
    (["--builder", "no-such-builder"], 2, "error: --builder: no buildx builder named 'no-such-builder'"),
    (["--mode", "docker-tpu"], 2, "error: --mode 'docker-tpu' is not a mode"),
])
def test_bad_build_requests(args, code, message, project: Path) -> None:
    result = infra("build", "--mode", "docker-cpu", *args, cwd=project)
    assert result.returncode == code, result.stderr
    assert result.stderr.startswith(message), result.stderr
    assert "Traceback" not in result.stderr
    assert not (project / ".infra").exists(), "nothing rendered for a refused request"


def test_unreachable_registry_and_missing_credentials_refuse_before_building(project: Path, registry,
                                                                             docker_config) -> None:
    from tests.integration.conftest import free_port

    unreachable = infra("build", "--mode", "native", "--push", "--registry", f"127.0.0.1:{free_port()}/x", cwd=project)
    assert unreachable.returncode == 1
    assert "is unreachable" in unreachable.stderr.splitlines()[0]
    no_login = infra("build", "--mode", "native", "--push", "--registry", f"{registry.host}/x", cwd=project)
    assert no_login.returncode == 2
    assert no_login.stderr.splitlines()[0] == f"error: registry {registry.host} needs credentials and this machine has none for it"
    assert f"docker login {registry.host}" in no_login.stderr
    assert not (project / ".infra").exists()


def test_engine_down_is_one_line(project: Path, tmp_path: Path) -> None:
    result = infra("build", "--mode", "native", cwd=project, env={"DOCKER_HOST": f"unix://{tmp_path}/none.sock"})
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and "no Docker engine answers" in result.stderr.splitlines()[0]
    assert "Traceback" not in result.stderr


def test_a_failing_image_blocks_its_children_and_still_writes_the_summary(tmp_path: Path, offline_base,
                                                                          ca_bundle) -> None:
    base = (REPO / "infra.yaml").read_text()
    bases = base[base.index("bases:"):base.index("modes:")]
    (tmp_path / "infra.yaml").write_text("project: speech\n" + bases + "modes:\n  docker-cpu:\n    base: bookworm\n")
    images = {"failtest-root": "modes: [docker-cpu]\n",
              "failtest-broken": "parent: failtest-root\nmodes: [docker-cpu]\napt: [no-such-package-infra-test]\n",
              "failtest-child": "parent: failtest-broken\nmodes: [docker-cpu]\n",
              "failtest-sibling": "parent: failtest-root\nmodes: [docker-cpu]\nlabels: {team: speech}\n"}
    for name, text in images.items():
        (tmp_path / "images" / name).mkdir(parents=True)
        (tmp_path / "images" / name / "image.yaml").write_text(text)
    env = {"INFRA_CA_BUNDLE": ca_bundle} if ca_bundle else {}
    try:
        result = infra("build", "--mode", "docker-cpu", cwd=tmp_path, env=env, timeout=600)
        assert result.returncode == 1, result.stderr[-2000:]
        summary = json.loads((tmp_path / "out" / "build-summary.json").read_text())
        status = {i["name"]: i["status"] for i in summary["images"]}
        assert status["failtest-root"] in ("built", "up to date")
        assert status["failtest-broken"] == "failed" and status["failtest-child"] == "blocked"
        assert status["failtest-sibling"] in ("built", "up to date")
        assert "error: failtest-broken:" in result.stderr
        assert "no-such-package-infra-test" in result.stderr, "the failed build's log tail is shown"
        assert "Traceback" not in result.stderr
        missing = subprocess.run(["docker", "image", "inspect", "speech-failtest-broken:latest-cpu"], capture_output=True)
        assert missing.returncode != 0, "a failed build leaves no image under the real tag"
    finally:
        subprocess.run(["docker", "image", "rm", "-f", *(f"speech-{n}:latest-cpu" for n in images)], capture_output=True)
