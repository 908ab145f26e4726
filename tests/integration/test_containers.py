"""Stage images started with testcontainers and the native env mounted: torch loads from the mount, the
mount is read-only, the user is not root. And the compatibility check refusing real images."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from infra.spec import load_stack
from infra.engine import Engine
from infra.errors import BadInputError
from infra.stack.nativeenv import check_mount, inspect_env
from infra.stack.readiness import service_images
from tests.conftest import REPO

pytestmark = pytest.mark.docker
READY = "torch-ready"
STACK = load_stack(REPO / "infra.yaml")


@pytest.fixture(scope="module")
def stage_images(offline_base, native_env, ca_bundle_module) -> list[str]:
    """The docker-cpu stage images, built (BuildKit's cache makes this quick after the other tests)."""
    env = {"INFRA_CA_BUNDLE": ca_bundle_module} if ca_bundle_module else {}
    import os

    result = subprocess.run([sys.executable, "-m", "infra", "-f", str(REPO / "infra.yaml"), "build", "--mode",
                             "docker-cpu"], cwd=REPO, capture_output=True, text=True, timeout=1800,
                            env={**os.environ, **env})
    assert result.returncode == 0, result.stderr[-3000:]
    return [STACK.image_ref(name, "docker-cpu") for name in service_images(STACK, "docker-cpu")]


@pytest.fixture(scope="module")
def ca_bundle_module():
    from tests.conftest import _HOST_CA

    return _HOST_CA


@pytest.mark.parametrize("image", ["ffmpeg", "pyannote-vad", "asr", "diarization", "subtitles"])
def test_stage_image_loads_torch_from_the_read_only_mount(image: str, stage_images, native_env: Path) -> None:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy

    env = inspect_env(native_env)
    ref = STACK.image_ref(image, "docker-cpu")
    assert ref in stage_images
    check_mount(Engine(), env, [ref])          # the check that `infra up` makes passes for every stage image
    command = ["python3", "-c", f"import time, torch; print({READY!r}, torch.__version__, flush=True); time.sleep(300)"]
    container = (DockerContainer(ref)
                 .with_volume_mapping(str(env.site_packages), "/opt/infra/native-site", "ro")
                 .with_command(command)
                 .waiting_for(LogMessageWaitStrategy(READY).with_startup_timeout(120)))
    with container:
        version = container.exec(["python3", "-c", "import torch; print(torch.__version__, torch.__file__)"])
        assert version.exit_code == 0, version.output
        torch_version, torch_file = version.output.decode().split()
        assert torch_version == env.torch
        assert torch_file.startswith("/opt/infra/native-site/torch/")
        write = container.exec(["python3", "-c", "open('/opt/infra/native-site/probe', 'w')"])
        assert write.exit_code != 0 and b"Read-only file system" in write.output
        uid = container.exec(["id", "-u"])
        assert uid.output.decode().strip() == "10001"


@pytest.fixture(scope="module")
def trixie_base(docker_engine: None, tmp_path_factory) -> str:
    """A second small image with another Python: Debian trixie's 3.13, made with debootstrap once per machine."""
    from infra.build.base import BaseResult, ensure_bases

    project = tmp_path_factory.mktemp("trixie")
    (project / "images").mkdir()
    (project / "infra.yaml").write_text(
        "project: speech\npython: '3.13'\n"
        "bases:\n  trixie:\n    debootstrap: {suite: trixie, packages: [python3]}\n"
        "modes:\n  docker-cpu: {base: trixie}\n")
    stack = load_stack(project / "infra.yaml")
    [result] = [e for e in ensure_bases(stack, ["docker-cpu"]) if isinstance(e, BaseResult)]
    return result.ref


def test_refuses_an_image_of_another_python(trixie_base: str, native_env: Path, tmp_path: Path) -> None:
    env = inspect_env(native_env)
    with pytest.raises(BadInputError) as info:
        check_mount(Engine(), env, [trixie_base], cache_dir=tmp_path / "facts")
    assert f"{trixie_base} cannot load the native environment" in info.value.message
    assert f"Python 3.13 in the image, {env.python_minor} in the environment" in info.value.message
    assert list((tmp_path / "facts").glob("*.json")), "the probe's facts are cached by image id"


def test_refuses_a_package_installed_in_both_at_different_versions(stage_images, tmp_path: Path) -> None:
    """An environment whose tqdm (a faster-whisper dependency, so in the asr image) is another version."""
    shown = subprocess.run(["docker", "run", "--rm", STACK.image_ref("asr", "docker-cpu"), "python3", "-c",
                            "import importlib.metadata as m; print(m.version('tqdm'))"],
                           capture_output=True, text=True, check=True).stdout.strip()
    other = "4.66.0" if shown != "4.66.0" else "4.65.0"
    venv = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3.*/site-packages"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site),
                    f"tqdm=={other}"], check=True, capture_output=True, timeout=300)
    env = inspect_env(venv)
    assert env.distributions["tqdm"] == other
    with pytest.raises(BadInputError) as info:
        check_mount(Engine(), env, [STACK.image_ref("asr", "docker-cpu")])
    assert f"installed in both at different versions: tqdm {shown} (image) vs {other} (environment)" \
        in info.value.message
    assert "torch: baked" in (info.value.hint or "")
