"""Can the engine give containers an NVIDIA GPU? `docker info` as the in-memory engine answers it (runc alone, the
nvidia runtime, NVIDIA CDI devices), what `infra hw detect` shows of it, the recommendation, and `infra up --mode
docker-gpu` refusing an engine without any of them before anything is rendered, built or started."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from infra.cli.hw_cmd import hardware_rows
from infra.engine.fake import FakeEngine
from infra.errors import BadInputError
from infra.hardware import enginegpu
from infra.hardware.detect import detect_docker
from infra.hardware.recommend import recommend
from infra.spec import Stack, load_stack
from infra.stack.compose import stack_up
from tests.fake_stack import COMPATIBLE, make_native_env, spec_engine
from tests.hardware_data import gpu, snapshot

NVIDIA_RUNTIME = {"Runtimes": {"nvidia": {"path": "nvidia-container-runtime"}, "runc": {"path": "runc"}}}
CDI_GPUS = {"DiscoveredDevices": [{"Source": "cdi", "ID": "nvidia.com/gpu=0"},
                                  {"Source": "cdi", "ID": "nvidia.com/gpu=all"},
                                  {"Source": "cdi", "ID": "vendor.example/fpga=0"}]}
CDI_OFF = {"CDISpecDirs": []}


@pytest.fixture
def no_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    """This host's PATH has no nvidia-container-runtime-hook (as here), whatever the machine running the tests has."""
    monkeypatch.setattr(enginegpu, "nvidia_hook", lambda: None)


def docker_row(info_fields: dict[str, Any]) -> tuple[Any, str]:
    docker = detect_docker(FakeEngine(info_fields=info_fields))
    rows = dict(hardware_rows(snapshot().model_copy(update={"docker": docker})))
    assert rows["docker"] == "engine 28.5.0, buildx 0.29.1, compose 2.40.3"
    return docker, rows["docker gpu"]


def test_an_engine_with_runc_alone_cannot_give_containers_the_gpu(no_hook: None) -> None:
    docker, row = docker_row({})
    assert (docker.runtimes, docker.nvidia_runtime, docker.cdi_devices) == \
        (["io.containerd.runc.v2", "runc"], False, [])
    assert docker.cdi_spec_dirs == ["/etc/cdi", "/var/run/cdi"] and not enginegpu.gpu_access(docker)
    assert row == ("no: no nvidia runtime (runtimes: io.containerd.runc.v2, runc), no NVIDIA CDI devices "
                   "(CDI spec folders: /etc/cdi, /var/run/cdi), no nvidia-container-runtime-hook on PATH")
    assert docker_row(CDI_OFF)[1].endswith("no NVIDIA CDI devices (CDI is off), "
                                           "no nvidia-container-runtime-hook on PATH")


def test_the_nvidia_runtime_or_nvidia_cdi_devices_are_enough(no_hook: None) -> None:
    docker, row = docker_row(NVIDIA_RUNTIME)
    assert docker.nvidia_runtime and enginegpu.gpu_access(docker)
    assert row.startswith("yes: nvidia runtime, no NVIDIA CDI devices")

    docker, row = docker_row(CDI_GPUS)
    assert not docker.nvidia_runtime and enginegpu.gpu_access(docker)
    assert docker.cdi_devices == ["nvidia.com/gpu=0", "nvidia.com/gpu=all", "vendor.example/fpga=0"]
    assert row.startswith("yes: no nvidia runtime (runtimes: io.containerd.runc.v2, runc), "
                          "NVIDIA CDI devices nvidia.com/gpu=0, nvidia.com/gpu=all,")

    docker, _ = docker_row({"DiscoveredDevices": [{"Source": "cdi", "ID": "vendor.example/fpga=0"}]})
    assert not enginegpu.gpu_access(docker)                   # a CDI device, but no NVIDIA one


def test_the_toolkit_hook_on_path_is_the_third_way(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(enginegpu, "nvidia_hook", lambda: "/usr/bin/nvidia-container-runtime-hook")
    docker, row = docker_row({})
    assert enginegpu.gpu_access(docker) and row.endswith("nvidia-container-runtime-hook at "
                                                         "/usr/bin/nvidia-container-runtime-hook")


def test_an_engine_that_does_not_answer_is_said_so() -> None:
    docker = detect_docker(FakeEngine(available=False))
    assert docker.engine is None and "no Docker engine answers" in (docker.error or "")
    assert dict(hardware_rows(snapshot().model_copy(update={"docker": docker})))["docker"].startswith("unavailable: ")


def test_the_recommendation_takes_docker_gpu_only_where_containers_get_the_gpu(no_hook: None) -> None:
    card = [gpu(25.77, "8.9")]
    for fields, mode in (({}, "native"), (NVIDIA_RUNTIME, "docker-gpu"), (CDI_GPUS, "docker-gpu")):
        docker = detect_docker(FakeEngine(info_fields=fields))
        assert recommend(snapshot(gpus=card).model_copy(update={"docker": docker})).mode == mode, fields
    asked = recommend(snapshot(gpus=card), mode="docker-gpu")
    assert any("containers will not see the GPU" in w for w in asked.warnings)


@pytest.fixture
def stack(project: Path) -> Stack:
    stack = load_stack(project / "infra.yaml")
    make_native_env(stack)
    return stack


def test_up_refuses_docker_gpu_on_an_engine_without_gpu_access_before_anything(stack: Stack, no_hook: None) -> None:
    engine = spec_engine(stack, "docker-gpu", default_python_output=COMPATIBLE)
    with pytest.raises(BadInputError) as caught:
        list(stack_up(stack, "docker-gpu", build=True, engine=engine))
    assert caught.value.exit_code == 2 and "\n" not in caught.value.message
    assert caught.value.message == (
        "docker-gpu needs an engine that can give containers an NVIDIA GPU; Docker Engine 28.5.0 cannot (no nvidia "
        "runtime (runtimes: io.containerd.runc.v2, runc), no NVIDIA CDI devices (CDI spec folders: /etc/cdi, "
        "/var/run/cdi), no nvidia-container-runtime-hook on PATH)")
    assert "nvidia-ctk runtime configure --runtime=docker" in (caught.value.hint or "")
    assert engine.calls == [("raw_info",)]                       # nothing inspected, built, probed or run

    with pytest.raises(BadInputError, match="^images not built"):    # with the runtime: on to the next check
        list(stack_up(stack, "docker-gpu", engine=spec_engine(stack, "docker-gpu", current=False,
                                                                info_fields=NVIDIA_RUNTIME)))


def test_a_python_without_the_engine_adapter_still_gets_docker_info(no_hook: None) -> None:
    """scripts/gpu-check.sh may run in a Python without python-on-whales: `docker info` (the CLI's JSON) still
    answers, and what needs the adapter is left unknown instead of ending the detection."""
    class NoAdapter(FakeEngine):
        def buildx_version(self) -> str:
            raise ImportError("No module named 'python_on_whales'")

    docker = detect_docker(NoAdapter(info_fields=NVIDIA_RUNTIME))
    assert (docker.engine, docker.buildx, docker.compose, docker.nvidia_runtime) == ("28.5.0", None, "2.40.3", True)
