"""The CUDA environment's facts and refusals without pip or an engine: the CUDA majors read from an environment's
files (shared objects that gcc builds, torch/version.py, the NVIDIA wheels' folders), the torch builds pip's
metadata describes, which wheel ships a missing library, and where GPU stages get their library path."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.jobs.containers import ContainerRunner
from infra.jobs.runners import NativeRunner, StageCall
from infra.render import default_layout
from infra.render.paths import library_path, nvidia_library_dirs
from infra.spec import load_stack
from infra.stack import cudaenv, libclosure
from infra.stack.nativeenv import inspect_env
from tests.unit.test_elfscan import build


# requires_dist of real torch wheels on PyPI, as pip's report gives them (cut to what matters)
TORCH_291 = ["filelock", 'nvidia-cuda-nvrtc-cu12==12.8.93; platform_system == "Linux"',
             'nvidia-cudnn-cu12==9.10.2.21; platform_system == "Linux"']
TORCH_2130 = ["filelock", 'cuda-toolkit[cublas,cudart,cufft]==13.0.3; platform_system == "Linux"',
              'nvidia-cudnn-cu13==9.20.0.48; platform_system == "Linux"']
TORCH_2120 = ['cuda-toolkit[cudart,cufft]==13.0.2; platform_system == "Linux"', "nvidia-cublas<=13.1.1.3,>=13.1.0.3"]


def entry(version: str, requires: list[str]) -> dict:
    return {"metadata": {"name": "torch", "version": version, "requires_dist": requires}}


def test_the_cuda_major_of_a_torch_build_comes_from_the_wheels_it_requires() -> None:
    assert cudaenv._torch_major(entry("2.9.1", TORCH_291)) == 12
    assert cudaenv._torch_major(entry("2.13.0", TORCH_2130)) == 13
    assert cudaenv._torch_major(entry("2.12.0", TORCH_2120)) == 13
    assert cudaenv._torch_major(entry("2.13.0+cpu", [])) is None
    assert cudaenv._torch_major(entry("2.13.0", ["filelock", "sympy>=1.13"])) is None   # a build without CUDA
    assert cudaenv._torch_major(None) is None
    assert cudaenv.torch_requirement("2.9.1") == "torch==2.9.1,!=2.9.1+cpu"


@pytest.mark.parametrize(("name", "version", "major"), [
    ("nvidia-cublas-cu12", "12.8.4.1", 12), ("nvidia-cudnn-cu13", "9.20.0.48", 13), ("nvidia-cublas", "13.1.1.3", 13),
    ("cuda-toolkit", "13.0.3", 13), ("nvidia-ml-py", "13.580.82", None), ("numpy", "2.4.6", None),
])
def test_the_cuda_major_of_an_nvidia_wheel(name: str, version: str, major: int | None) -> None:
    assert cudaenv.wheel_cuda_major(name, version) == major


def make_env(root: Path, torch_cuda: str | None, ctranslate2_links: str | None, provided: list[str]) -> Path:
    """A virtualenv whose torch says ``torch_cuda``, whose ctranslate2 opens ``ctranslate2_links`` and whose
    NVIDIA folders hold ``provided`` (real shared objects, built here)."""
    site = root / "lib" / "python3.11" / "site-packages"
    (site / "torch").mkdir(parents=True)
    (root / "pyvenv.cfg").write_text("home = /usr/bin\nversion_info = 3.11.7.final.0\n")
    (site / "torch" / "version.py").write_text(f"cuda = {torch_cuda!r}\n" if torch_cuda else "cuda = None\n")
    torch_version = "2.13.0" if torch_cuda and torch_cuda.startswith("13") else "2.9.1"
    meta = site / f"torch-{torch_version}.dist-info"
    meta.mkdir()
    cudnn = "cu13==9.20.0.48" if torch_version == "2.13.0" else "cu12==9.10.2.21"
    requires = f"Requires-Dist: nvidia-cudnn-{cudnn}; platform_system == 'Linux'\n" if torch_cuda else ""
    (meta / "METADATA").write_text("Name: torch\n" + requires)
    (site / "ctranslate2-4.8.5.dist-info").mkdir()
    build(site / "ctranslate2", "_ext.so")
    build(site / "ctranslate2.libs", "libctranslate2-a7a60d30.so.4.8.5",
          strings=[ctranslate2_links] if ctranslate2_links else [])
    for lib in provided:
        folder = site / "nvidia" / ("cu13" if lib.endswith(".13") else lib.split(".")[0].removeprefix("lib")) / "lib"
        build(folder, lib)
    return root


def test_an_environment_whose_parts_agree(tmp_path: Path) -> None:
    env = inspect_env(make_env(tmp_path / "env", "12.8", "libcublas.so.12", ["libcublas.so.12", "libcudnn.so.9"]))
    facts = cudaenv.env_facts(env)
    assert facts.needs["torch"] == {"version": "2.9.1", "cuda": [12], "cudnn": [9]}
    assert facts.needs["ctranslate2"]["cuda"] == [12]
    assert facts.provided_cuda == [12] and facts.provided_cudnn == [9]
    assert facts.library_dirs == ("nvidia/cublas/lib", "nvidia/cudnn/lib")
    assert cudaenv.disagreement(facts) is None
    assert cudaenv.describe(facts) == ("CUDA: ctranslate2 CUDA 12, torch CUDA 12 cuDNN 9; "
                                       "provided: CUDA 12, cuDNN 9 in 2 folders")


def test_the_default_mix_disagrees_and_says_which_and_the_fix(tmp_path: Path) -> None:
    """torch 2.13.0 from PyPI (CUDA 13) beside ctranslate2 4.8.5 (CUDA 12): today's default mix."""
    env = inspect_env(make_env(tmp_path / "env", "13.0", "libcublas.so.12", ["libcublas.so.13", "libcudnn.so.9"]))
    facts = cudaenv.env_facts(env)
    assert cudaenv.disagreement(facts) == "ctranslate2 4.8.5 needs CUDA 12; torch 2.13.0 needs CUDA 13"
    assert "DISAGREE" in cudaenv.describe(facts)
    assert cudaenv.fix_for(facts) == ("`infra env create --target cuda` builds one with torch 2.9.1 (CUDA 12) "
                                      "and the CUDA 12 libraries")


def test_a_cpu_environment_has_nothing_to_disagree_with(tmp_path: Path) -> None:
    env = inspect_env(make_env(tmp_path / "env", None, "libcublas.so.12", []))
    facts = cudaenv.env_facts(env)
    assert cudaenv.disagreement(facts) is None and facts.library_dirs == ()
    assert cudaenv.describe(facts) == "CUDA: none (a CPU environment; on a GPU ctranslate2 CUDA 12)"


@pytest.mark.parametrize(("library", "major", "wheel"), [
    ("libcublas.so.12", None, "nvidia-cublas-cu12"), ("libcublasLt.so.13", None, "nvidia-cublas 13.*"),
    ("libcudnn_graph.so.9", 12, "nvidia-cudnn-cu12"), ("libcudnn.so.9", 13, "nvidia-cudnn-cu13"),
    ("libcufft.so.11", 12, "nvidia-cufft-cu12"), ("libnvrtc-builtins.so.12.8", None, "nvidia-cuda-nvrtc-cu12"),
    ("libz.so.1", 12, "no NVIDIA wheel: a system library the image lacks"),
])
def test_which_wheel_ships_a_library(library: str, major: int | None, wheel: str) -> None:
    assert libclosure.provider(library, major) == wheel


def test_the_refusal_is_one_line_with_the_library_the_package_the_wheel_and_the_fix(tmp_path: Path) -> None:
    root = tmp_path / "env"
    (root / "lib" / "python3.11" / "site-packages").mkdir(parents=True)
    (root / "pyvenv.cfg").write_text("version_info = 3.11.7.final.0\n")
    result = {"missing": [{"library": "libcublas.so.12", "how": "dlopen", "alternatives": ["libcublas.so.12"],
                           "needed_by": "/opt/venv/lib/python3.11/site-packages/ctranslate2/../ctranslate2.libs/"
                                        "libctranslate2-a7a60d30.so.4.8.5"}]}
    error = libclosure.refusal(["asr"], "speech-asr:latest-gpu", inspect_env(root), result, 12)
    assert error.exit_code == 2 and "\n" not in error.message
    assert error.message == (
        f"asr (speech-asr:latest-gpu) cannot load libcublas.so.12, which ctranslate2 opens at run time: neither the "
        f"image nor the native environment {root} has it on the library path; it comes from nvidia-cublas-cu12; "
        f"fix: `infra env create --target cuda` (torch 2.9.1 with the CUDA 12 libraries)")
    assert libclosure.owner("/opt/infra/native-site/nvidia/cudnn/lib/libcudnn.so.9") == "nvidia/cudnn"
    assert libclosure.owner("/opt/infra/native-site/torch/lib/libtorch_cuda.so") == "torch"


def nvidia_folders(site: Path, names: list[str]) -> None:
    for name in names:
        (site / "nvidia" / name / "lib").mkdir(parents=True)
    (site / "nvidia" / "__init__.py").write_text("")


def test_gpu_stages_get_the_env_nvidia_folders_on_the_path_everywhere_else_none(project: Path) -> None:
    """compose and the container runner give the same LD_LIBRARY_PATH, from the env, to GPU stages only."""
    import yaml

    stack = load_stack(project / "infra.yaml")
    root = project / stack.spec.native_env.path
    site = root / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    (root / "pyvenv.cfg").write_text("version_info = 3.11.7.final.0\n")
    nvidia_folders(site, ["cudnn", "cublas"])
    (site / "nvidia" / "cuda_runtime").mkdir()                   # no lib/ folder: not on the path
    assert nvidia_library_dirs(site) == ("nvidia/cublas/lib", "nvidia/cudnn/lib")
    expected = "/opt/infra/native-site/nvidia/cublas/lib:/opt/infra/native-site/nvidia/cudnn/lib"
    from infra.render import render_mode

    for mode in ("docker-gpu", "docker-cpu"):
        layout = default_layout(stack, mode)  # type: ignore[arg-type]
        files = render_mode(stack, mode, layout)
        for name in ("compose.yaml", "stack.yaml"):
            services = yaml.safe_load(files[name])["services"]
            paths = {s: services[s]["environment"].get("LD_LIBRARY_PATH") for s in stack.spec.stages}
            gpu = mode == "docker-gpu"
            assert paths == {s: expected if gpu and stack.spec.stages[s].gpu else None for s in stack.spec.stages}
        runner = ContainerRunner(stack, mode, {"id": "1", "dir": "jobs/1", "stages": []})
        assert runner.library_path("asr") == (expected if mode == "docker-gpu" else "")
        assert runner.library_path("demux") == ""


def test_the_native_runner_puts_the_folders_first_for_a_stage_on_cuda(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "env" / "lib" / "python3.11" / "site-packages"
    nvidia_folders(site, ["cublas"])
    monkeypatch.setenv("LD_LIBRARY_PATH", "/usr/local/lib")
    runner = NativeRunner(tmp_path / "env")
    call = StageCall("asr", ("python3", "-m", "stages.asr"), tmp_path, tmp_path / "asr.log", "asr", "cuda")
    assert runner.environment(call)["LD_LIBRARY_PATH"] == f"{site}/nvidia/cublas/lib:/usr/local/lib"
    on_cpu = StageCall("asr", ("python3", "-m", "stages.asr"), tmp_path, tmp_path / "asr.log", "asr", "cpu")
    assert runner.environment(on_cpu)["LD_LIBRARY_PATH"] == "/usr/local/lib"
    assert library_path("/x", ()) == ""


def test_the_check_runs_in_each_gpu_stage_image_with_the_mount_and_path_compose_sets(project: Path) -> None:
    """Against the in-memory engine: one probe container per GPU stage image, the env mounted read-only where
    compose mounts it and LD_LIBRARY_PATH as compose sets it; answers cached; a missing library refuses."""
    import json

    import yaml

    from infra.errors import BadInputError
    from infra.render.paths import NATIVE_SITE
    from infra.stack.readiness import check_native_env, render_to_disk, service_images
    from tests.fake_stack import COMPATIBLE, make_native_env, spec_engine

    stack = load_stack(project / "infra.yaml")
    site = make_native_env(stack) / "lib" / "python3.11" / "site-packages"
    nvidia_folders(site, ["cublas"])
    passing = {"missing": [], "host": ["libcuda.so.1"], "optional": {}, "objects": 50, "packages": {}}
    engine = spec_engine(stack, "docker-gpu", default_python_output=COMPATIBLE, run_output=json.dumps(passing) + "\n")
    check_native_env(stack, "docker-gpu", service_images(stack, "docker-gpu"), engine)
    compose = yaml.safe_load(render_to_disk(stack, "docker-gpu").compose_file.read_text())["services"]
    assert sorted(r.ref for r in engine.runs) == sorted(stack.image_ref(i, "docker-gpu")
                                                        for i in ("asr", "diarization", "pyannote-vad"))
    for run in engine.runs:
        stage = {"speech-asr:latest-gpu": "asr", "speech-diarization:latest-gpu": "diarize",
                 "speech-pyannote-vad:latest-gpu": "vad"}[run.ref]
        assert run.env == {"LD_LIBRARY_PATH": compose[stage]["environment"]["LD_LIBRARY_PATH"]}
        assert run.mounts == [(str(site.resolve()), NATIVE_SITE, True)]
        assert run.command[:2] == ["python3", "-c"] and "def closure(" in run.command[2]
    engine.runs.clear()
    check_native_env(stack, "docker-gpu", service_images(stack, "docker-gpu"), engine)
    assert engine.runs == [], "answers are cached by image, environment and library path"
    check_native_env(stack, "docker-cpu", service_images(stack, "docker-cpu"),
                     spec_engine(stack, "docker-cpu", default_python_output=COMPATIBLE))

    nvidia_folders(site, ["cudnn"])                  # another environment: asked again, and this time it misses
    missing = {**passing, "missing": [{"library": "libcudnn.so.9", "how": "needed", "alternatives": ["libcudnn.so.9"],
                                       "needed_by": f"{NATIVE_SITE}/torch/lib/libtorch_cuda.so"}]}
    engine = spec_engine(stack, "docker-gpu", default_python_output=COMPATIBLE, run_output=json.dumps(missing))
    with pytest.raises(BadInputError, match=r"^asr \(speech-asr:latest-gpu\) cannot load libcudnn.so.9, which torch "
                                            r"links: .* it comes from nvidia-cudnn-cu<CUDA major>"):
        check_native_env(stack, "docker-gpu", service_images(stack, "docker-gpu"), engine)
