"""The registry as the hub, on the real engine and a real registry: a fresh runner builds nothing that exists,
a one-image change rebuilds one image from the registry's layer cache, `infra up`/`run` pull by digest,
and two reproducible builds from empty engines agree on every image manifest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.integration.conftest import forget_images
from tests.integration.fresh_engine import FreshEngine, fresh_engine  # noqa: F401

pytestmark = pytest.mark.docker
ONLY = ["--mode", "docker-cpu", "--only", "subtitles"]     # base and subtitles: small, no network needed to build


def infra(*args: str, cwd: Path, env: dict[str, str] | None = None):
    return subprocess.run([sys.executable, "-m", "infra", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=900, env={**os.environ, **(env or {})})


def statuses(result: subprocess.CompletedProcess) -> dict[str, dict]:
    images = json.loads(result.stdout)["images"] if result.stdout.strip().startswith("{") else []
    failed = [(i["name"], i["error"], i["log_tail"][-10:]) for i in images if i["status"] in ("failed", "blocked")]
    assert result.returncode == 0, (result.stderr[-3000:], failed)
    return {i["name"]: i for i in images}


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, registry, offline_base) -> Iterator[tuple[Path, str, dict[str, str]]]:
    """A project of its own (so no image of it exists yet) whose spec names the registry, in a git repository,
    logged in to the registry. Its images go at the end: no later run has this project."""
    import shutil

    project = tmp_path_factory.mktemp("hub")
    where = f"{registry.host}/hub"
    text = (REPO / "infra.yaml").read_text().replace("project: speech", f"project: hub{os.getpid()}")
    (project / "infra.yaml").write_text(text.replace("registry: null", f"registry: {where}"))
    shutil.copytree(REPO / "images", project / "images")
    for cmd in (["init", "-q"], ["add", "-A"], ["-c", "user.email=ci@example.org", "-c", "user.name=ci",
                                                 "commit", "-q", "-m", "spec"]):
        subprocess.run(["git", *cmd], cwd=project, check=True, capture_output=True)
    config = tmp_path_factory.mktemp("docker-config")
    env = {"DOCKER_CONFIG": str(config)}
    subprocess.run(["docker", "login", registry.host, "-u", registry.user, "--password-stdin"],
                   input=registry.password, text=True, check=True, capture_output=True, env={**os.environ, **env})
    yield project, where, env
    forget_images(lambda ref: ref.split("/")[-1].startswith(f"hub{os.getpid()}-"))


def test_a_fresh_runner_builds_nothing_the_registry_has_and_rebuilds_one_changed_image(
        hub, registry, fresh_engine: FreshEngine) -> None:
    project, where, env = hub
    first = statuses(infra("build", *ONLY, "--push", "--json", cwd=project, env=env))
    assert {n: i["status"] for n, i in first.items()} == {"base": "built", "subtitles": "built"}

    again = infra("build", *ONLY, "--push", "--json", cwd=project,
                  env={**env, **fresh_engine.env})
    found = statuses(again)
    assert {n: i["status"] for n, i in found.items()} == {"base": "in registry", "subtitles": "in registry"}
    assert fresh_engine.images() == [], "nothing is pulled"
    pushed = json.loads(again.stdout)["pushed"]
    for name in ("base", "subtitles"):
        assert pushed[name].endswith("@" + found[name]["digest"])
        tag = f"content-{found[name]['content_hash']}"
        status, headers, _ = registry.get(f"/v2/hub/{_repo(project, name)}/manifests/{tag}",
                                          accept="application/vnd.oci.image.index.v1+json")
        assert status == 200 and headers["Docker-Content-Digest"] == found[name]["digest"]

    spec = project / "images" / "subtitles" / "image.yaml"
    spec.write_text(spec.read_text() + "env:\n  SUBTITLES_CHANGE: \"2\"\n")
    changed = statuses(infra("build", *ONLY, "--push", "--json", cwd=project,
                             env={**env, **fresh_engine.env}))
    assert changed["base"]["status"] == "in registry"
    assert changed["subtitles"]["status"] == "built"
    assert changed["subtitles"]["steps_cached"] >= 1, "the registry's layer cache gives the unchanged steps"
    assert changed["subtitles"]["content_hash"] != found["subtitles"]["content_hash"]
    assert [i for i in fresh_engine.images() if "subtitles" in i]


def test_up_and_run_pull_by_digest_what_they_run_and_only_that(hub, fresh_engine: FreshEngine,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """After the scenario above the registry holds base and subtitles by content hash: on an empty engine the
    readiness check pulls subtitles (which would run) by digest, and needs base nowhere."""
    from infra.engine import Engine
    from infra.spec import load_stack
    from infra.stack.readiness import render_to_disk, stale_images

    project, where, env = hub
    fresh_engine.wipe()
    for key, value in {**env, **fresh_engine.env}.items():
        monkeypatch.setenv(key, value)
    stack = load_stack(project / "infra.yaml")
    stale = stale_images(stack, "docker-cpu", render_to_disk(stack, "docker-cpu"), Engine(), needed=["subtitles"])
    assert "subtitles" not in stale and "base" not in stale
    assert {"asr", "ffmpeg"} <= set(stale), "never pushed: still to build"
    local = stack.image_ref("subtitles", "docker-cpu")
    assert fresh_engine.images() == [local]
    label = fresh_engine.docker("image", "inspect", local, "--format", '{{index .Config.Labels "io.infra.content-hash"}}')
    assert len(label.strip()) == 64


def test_two_reproducible_builds_on_empty_engines_give_the_same_image_manifests(
        hub, fresh_engine: FreshEngine) -> None:
    project, where, env = hub
    runs = []
    for _ in range(2):
        fresh_engine.wipe()
        result = infra("build", *ONLY, "--reproducible", "--no-cache", "--json", cwd=project,
                       env={**env, **fresh_engine.env})
        runs.append(statuses(result))
    for name in ("base", "subtitles"):
        assert runs[0][name]["status"] == runs[1][name]["status"] == "built"
        assert runs[0][name]["manifest_digest"].startswith("sha256:")
        assert runs[0][name]["manifest_digest"] == runs[1][name]["manifest_digest"], name


def _repo(project: Path, name: str) -> str:
    text = (project / "infra.yaml").read_text()
    prefix = next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("project:"))
    return f"{prefix}-{name}"


def test_a_registry_that_is_down_or_refuses_is_one_line_before_any_build(hub, registry,
                                                                         tmp_path: Path) -> None:
    project, _, env = hub
    down = infra("build", *ONLY, "--registry", "127.0.0.1:1/hub", cwd=project, env=env)
    assert down.returncode == 1 and "registry 127.0.0.1:1 is unreachable" in down.stderr
    assert "Traceback" not in down.stderr
    nobody = tmp_path / "nobody"
    nobody.mkdir()
    refused = infra("build", *ONLY, "--registry", f"{registry.host}/hub", cwd=project,
                    env={"DOCKER_CONFIG": str(nobody)})
    assert refused.returncode == 2 and "needs credentials" in refused.stderr
    assert registry.password not in refused.stderr + refused.stdout
