"""The CUDA environment and the GPU library check against the real engine, without a GPU: the docker-gpu stage
images built from the shipped spec, a real CUDA 12 environment made by `infra env create --target cuda`, and
today's default mix (torch 2.13.0 from PyPI, a CUDA 13 build, beside ctranslate2 4.8.5, which opens CUDA 12's
libcublas). Each environment is made once and kept in a cache folder outside the checkout (see ``cache_dir``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from infra.errors import BadInputError
from infra.spec import load_stack
from infra.stack.elfscan import HOST_PROVIDED
from infra.stack.libclosure import check_gpu_libraries
from infra.stack.nativeenv import inspect_env, ml_requirements
from infra.stack.readiness import check_native_env, render_to_disk, service_images
from tests.conftest import REPO

pytestmark = pytest.mark.docker
MODE = "docker-gpu"
COMPLETE = "infra-test-complete"       # written last into an environment the tests made


def infra(*args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "infra", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def cache_dir() -> Path:
    """Where the big environments live between runs: $INFRA_TEST_CACHE, else /var/cache/infra when writable,
    else ~/.cache/infra. Delete an environment's folder there to have it made again."""
    chosen = os.environ.get("INFRA_TEST_CACHE")
    if chosen:
        folder = Path(chosen)
    else:
        folder = Path("/var/cache/infra")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if not os.access(folder, os.W_OK):
                raise PermissionError(folder)
        except OSError:
            folder = Path.home() / ".cache" / "infra"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def cuda_env() -> Path:
    """The CUDA environment: `infra env create --target cuda` (torch 2.9.1, CUDA 12.8, cuDNN 9, and the `ml`
    extra; 7.6 GB). Made here it took 3 min 12 s with the wheels already on disk; on a fresh machine pip
    downloads about 4 GB from PyPI first (about 7 minutes at this machine's 600 MB a minute), once: later runs
    find it in the cache folder (its lock, infra-env.lock.json, says it is complete)."""
    path = cache_dir() / "venv-cuda"
    lock = path / "infra-env.lock.json"
    if not lock.is_file() or json.loads(lock.read_text()).get("target") != "cuda":
        shutil.rmtree(path, ignore_errors=True)
        result = infra("-f", str(REPO / "infra.yaml"), "env", "create", "--target", "cuda", "--path", str(path),
                       cwd=REPO, timeout=3600)
        assert result.returncode == 0, result.stderr[-3000:]
    return path


@pytest.fixture(scope="session")
def mix_env() -> Path:
    """Today's default mix, as `pip install torch==2.13.0` then the `ml` extra gives it on a machine without a
    local CPU wheel: PyPI's torch 2.13.0 (cuda-toolkit 13, nvidia-cudnn-cu13) and ctranslate2 4.8.5 (5.6 GB).
    About 4.5 GB from PyPI on a fresh machine (about 8 minutes here), once; kept in the cache folder."""
    path = cache_dir() / "venv-cuda13-mix"
    if not (path / COMPLETE).is_file():
        shutil.rmtree(path, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=300)
        pip = [str(path / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        torch = "torch==2.13.0,!=2.13.0+cpu"                 # PyPI's build, not a CPU wheel from find-links
        for step in ([torch], [*ml_requirements(), torch]):
            result = subprocess.run([*pip, *step], capture_output=True, text=True, timeout=3600)
            assert result.returncode == 0, result.stderr[-3000:]
        (path / COMPLETE).write_text("torch 2.13.0 from PyPI with the ml extra\n")
    return path


def project_with(folder: Path, env: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    text = (REPO / "infra.yaml").read_text()
    (folder / "infra.yaml").write_text(text.replace("path: .venv-ml", f"path: {env}", 1))
    if not (folder / "images").exists():
        shutil.copytree(REPO / "images", folder / "images")
    return folder


@pytest.fixture(scope="module")
def gpu_project(tmp_path_factory, offline_base, cuda_env: Path) -> Path:
    """The shipped spec with native_env.path at the CUDA environment, its docker-gpu images built (they are the
    docker-cpu images under other tags: BuildKit's cache makes this quick after the other tests)."""
    from tests.conftest import _HOST_CA

    project = project_with(tmp_path_factory.mktemp("gpu"), cuda_env)
    env = {**os.environ, **({"INFRA_CA_BUNDLE": _HOST_CA} if _HOST_CA else {})}
    result = subprocess.run([sys.executable, "-m", "infra", "build", "--mode", MODE], cwd=project, env=env,
                            capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    return project


def test_the_cuda_environment_agrees_and_is_locked(cuda_env: Path) -> None:
    shown = infra("env", "show", "--json", "--path", str(cuda_env), cwd=REPO)
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["torch"] == "2.9.1" and data["torch_cuda"] == "12.8"
    assert data["cuda"]["disagreement"] is None
    assert data["cuda"]["provided"] == {"cuda": [12], "cudnn": [9]}
    assert data["cuda"]["packages"]["ctranslate2"]["cuda"] == [12]
    assert "nvidia/cublas/lib" in data["cuda"]["library_dirs"] and "nvidia/cudnn/lib" in data["cuda"]["library_dirs"]
    lock = json.loads((cuda_env / "infra-env.lock.json").read_text())
    assert lock["target"] == "cuda" and "torch==2.9.1" in lock["freeze"]
    assert any(line.startswith("nvidia-cublas-cu12==12.") for line in lock["freeze"])
    assert not any("cu13" in line for line in lock["freeze"])
    text = infra("env", "show", "--path", str(cuda_env), cwd=REPO).stdout
    assert "CUDA: ctranslate2 CUDA 12, torch CUDA 12 cuDNN 9; provided: CUDA 12, cuDNN 9" in text


def test_every_gpu_stage_image_finds_its_libraries_with_the_cuda_environment(gpu_project: Path) -> None:
    stack = load_stack(gpu_project / "infra.yaml")
    check_native_env(stack, MODE, service_images(stack, MODE))          # what `infra up` and the runner check
    answers = check_gpu_libraries(stack, MODE)
    assert {i: a["stages"] for i, a in answers.items()} == {"asr": ["asr"], "diarization": ["diarize"],
                                                             "pyannote-vad": ["vad"]}
    compose = yaml.safe_load(render_to_disk(stack, MODE).compose_file.read_text())["services"]
    for image, answer in answers.items():
        assert answer["missing"] == []
        assert answer["objects"] > 40, "torch, ctranslate2 and the CUDA libraries they load were all read"
        assert all(HOST_PROVIDED.match(name) for name in answer["host"]) and "libcuda.so.1" in answer["host"]
        assert ":".join(answer["library_path"]) == compose[answer["stages"][0]]["environment"]["LD_LIBRARY_PATH"]
        assert answer["packages"]["torch"]["location"] == "/opt/infra/native-site/torch"
        assert answer["packages"]["torch"]["cuda"] == [12] and answer["packages"]["ctranslate2"]["cuda"] == [12]
    # the asr image carries its own ctranslate2; it finds libcublas.so.12 only through the rendered path
    assert answers["asr"]["packages"]["ctranslate2"]["location"].startswith("/opt/venv/")
    assert "LD_LIBRARY_PATH" not in compose["demux"]["environment"]


def test_doctor_reports_the_check(gpu_project: Path) -> None:
    result = infra("doctor", "--json", cwd=gpu_project)
    [line] = [c for c in json.loads(result.stdout) if c["name"] == "gpu libraries"]
    assert line["status"] == "ok", line
    assert line["detail"].startswith("docker-gpu: asr, diarize, vad resolve every library they load")
    assert "libcuda.so.1" in line["detail"]


def test_the_default_mix_is_refused_with_the_library_the_wheel_and_the_fix(gpu_project: Path, mix_env: Path,
                                                                           tmp_path: Path) -> None:
    """torch 2.13.0 (CUDA 13) with ctranslate2 4.8.5 (CUDA 12): before anything starts, one line names
    libcublas.so.12, ctranslate2, the wheel and the fix; `infra doctor` fails with the same words."""
    project = project_with(tmp_path / "mix", mix_env)
    stack = load_stack(project / "infra.yaml")
    assert inspect_env(mix_env).torch_cuda == "13.0"
    with pytest.raises(BadInputError) as caught:
        check_native_env(stack, MODE, service_images(stack, MODE))
    message = caught.value.message
    assert "\n" not in message and caught.value.exit_code == 2
    assert message.startswith("asr (speech-asr:latest-gpu) cannot load libcublas.so.12")
    assert "which ctranslate2 opens at run time" in message
    assert "the environment mixes CUDA majors: ctranslate2 4.8.5 needs CUDA 12; torch 2.13.0 needs CUDA 13" in message
    assert message.endswith("it comes from nvidia-cublas-cu12; fix: `infra env create --target cuda` "
                            "(torch 2.9.1 with the CUDA 12 libraries)")
    doctor = infra("doctor", "--json", cwd=project)
    assert doctor.returncode == 1
    [line] = [c for c in json.loads(doctor.stdout) if c["name"] == "gpu libraries"]
    assert line["status"] == "fail" and line["detail"] == f"docker-gpu: {message}"


def test_the_cpu_environment_is_refused_for_docker_gpu(gpu_project: Path, native_env: Path, tmp_path: Path) -> None:
    """The tests' default environment (CPU torch) has no CUDA libraries: ctranslate2's libcublas.so.12 is missing
    in every GPU stage image; doctor only warns, since a CPU environment is not meant for docker-gpu."""
    project = project_with(tmp_path / "cpu", native_env)
    stack = load_stack(project / "infra.yaml")
    with pytest.raises(BadInputError, match=r"^asr \(speech-asr:latest-gpu\) cannot load libcublas.so.12, which "
                                            r"ctranslate2 opens at run time: .* it comes from nvidia-cublas-cu12; "
                                            r"fix: `infra env create --target cuda`"):
        check_gpu_libraries(stack, MODE)
    doctor = infra("doctor", "--json", cwd=project)
    [line] = [c for c in json.loads(doctor.stdout) if c["name"] == "gpu libraries"]
    assert line["status"] == "warn" and "libcublas.so.12" in line["detail"] and line["hint"]


@pytest.mark.parametrize(("version", "message", "hint"), [
    ("2.13.0", "error: torch 2.13.0 is a CUDA 13 build and ctranslate2 4.8.5 needs CUDA 12: one environment "
               "cannot give both", "--torch-version 2.9.1 (CUDA 12)"),
    ("2.0.99", "error: torch 2.0.99 has no CUDA build on the index", "--torch-version 2.9.1"),
    ("2.13.0+cpu", "error: --torch-version '2.13.0+cpu': expected a torch release such as 2.9.1", ""),
])
def test_env_create_refuses_a_torch_that_cannot_agree_before_writing_anything(version: str, message: str, hint: str,
                                                                              tmp_path: Path) -> None:
    target = tmp_path / "env"
    result = infra("-f", str(REPO / "infra.yaml"), "env", "create", "--target", "cuda", "--torch-version", version,
                   "--path", str(target), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(message), result.stderr
    assert hint in result.stderr and "Traceback" not in result.stderr
    assert not target.exists(), "a refused environment leaves nothing behind"
