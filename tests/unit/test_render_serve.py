"""The service 'serve' in the stack (serve.enabled): the spec's checks, the rendered compose and swarm services, what
`infra up` makes sure of first (infra/stack/serve.py), and the service's view of the host's hardware."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest
import yaml

from infra.errors import BadInputError, ConfigError, OperationError
from infra.hardware import cache
from infra.serve.service import JobService
from infra.spec import load_stack
from tests.hardware_data import snapshot
from tests.render_cases import CASES, render


def serving(project: Path, extra: str = "serve:\n  enabled: true\n") -> Path:
    (project / "infra.yaml").write_text((project / "infra.yaml").read_text() + extra)
    return project


@pytest.mark.parametrize("mode", ["docker-cpu", "docker-gpu"])
def test_compose_runs_infra_serve_beside_the_workers(mode: str) -> None:
    services = yaml.safe_load(render(CASES["serve"](), mode)["compose.yaml"])["services"]
    serve = services["serve"]
    assert serve["image"] == f"speech-serve:latest-{mode.removeprefix('docker-')}"
    assert serve["command"] == ["python3", "-m", "infra", "serve", "--host", "0.0.0.0", "--port", "9123",
                                "--max-upload", "16G", "--stack-mode", mode]
    assert serve["working_dir"] == "/data"
    assert serve["ports"] == [{"target": 9123, "published": "9123", "host_ip": "192.0.2.10", "protocol": "tcp"}]
    assert serve["healthcheck"]["test"][:3] == ["CMD", "python3", "-c"]
    assert "http://127.0.0.1:9123/healthz" in serve["healthcheck"]["test"][3]
    assert serve["environment"] == {"INFRA_CACHE": "/data/cache", "INFRA_MODE": mode,
                                    "INFRA_SERVE_TOKEN": "${INFRA_SERVE_TOKEN:-}"}
    assert serve["labels"]["io.infra.service"] == "serve" and "io.infra.stage" not in serve["labels"]
    assert serve["cap_drop"] == ["ALL"] and serve["security_opt"] == ["no-new-privileges:true"]
    assert "depends_on" not in serve and "deploy" not in serve and "secrets" not in serve     # no GPU, no CA
    mounts = {m["target"]: (m["source"], m["read_only"], m["bind"]["create_host_path"]) for m in serve["volumes"]}
    assert mounts == {
        "/data/in": ("../../../in", True, True), "/data/in/uploads": ("../../../in/uploads", False, True),
        "/data/out": ("../../../out", False, True), "/data/jobs": ("../../../jobs", False, True),
        "/data/config": ("../../../config", True, True),
        "/data/cache": ("../../../shared-model-and-cache", False, True),
        "/data/infra.yaml": ("../../../infra.yaml", True, False), "/data/images": ("../../../images", True, False)}
    assert "/opt/infra/native-site" not in mounts
    workers = [s for name, s in services.items() if name not in ("serve", "setup-dirs")]
    assert workers and not any("ports" in s for s in workers)


def test_swarm_publishes_on_every_node_and_mounts_under_the_data_folder() -> None:
    text = render(CASES["serve"](), "docker-cpu")["stack.yaml"]
    serve = yaml.safe_load(text)["services"]["serve"]
    assert serve["ports"] == [{"target": 9123, "published": 9123, "protocol": "tcp", "mode": "ingress"}]
    sources = {m["target"]: m["source"] for m in serve["volumes"]}
    assert sources["/data/infra.yaml"] == "${INFRA_DATA:-/srv/speech}/infra.yaml"
    assert sources["/data/in/uploads"] == "${INFRA_DATA:-/srv/speech}/in/uploads"
    assert "for serve: infra.yaml and its images folder" in text


def test_no_service_serve_unless_enabled_and_none_in_native() -> None:
    for case, mode in (("default", "docker-cpu"), ("locked", "docker-gpu"), ("serve", "native")):
        files = render(CASES[case](), mode)
        assert "serve" not in yaml.safe_load(files["compose.yaml"])["services"], (case, mode)
        assert "serve" not in (yaml.safe_load(files["stack.yaml"])["services"] or {}), (case, mode)


def test_the_built_in_spec_is_mounted_from_where_infra_has_it(tmp_path: Path) -> None:
    stack = load_stack(None, cwd=tmp_path)
    assert stack.embedded
    stack = dataclasses.replace(stack, spec=stack.spec.model_copy(
        update={"serve": stack.spec.serve.model_copy(update={"enabled": True})}))
    serve = yaml.safe_load(render(stack, "docker-cpu")["compose.yaml"])["services"]["serve"]
    sources = {m["target"]: m["source"] for m in serve["volumes"]}
    assert sources["/data/infra.yaml"] == str(stack.spec_path) and sources["/data/images"] == str(stack.images_dir)


@pytest.mark.parametrize(("extra", "problem"), [
    ("serve:\n  enabled: true\n  image: nope\n", "infra.yaml: serve.image: unknown image 'nope'"),
    ("serve:\n  enabled: true\n  image: asr\n", "serve.image: 'asr' does not carry infra (set 'infra: true'"),
    ("serve:\n  address: everywhere\n", "serve.address: 'everywhere' is not an IP address"),
    ("serve:\n  port: 70000\n", "serve.port"),
    ("serve:\n  max_upload: lots\n", "serve.max_upload: 'lots' is not a size"),
    ("serve:\n  enabeld: true\n", "serve: unknown key 'enabeld' (did you mean 'enabled'?)"),
])
def test_the_spec_checks_serve(project: Path, extra: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_stack(serving(project, extra) / "infra.yaml")
    assert any(problem in line for line in caught.value.problems), caught.value.problems


def test_a_stage_cannot_take_the_service_s_name(project: Path) -> None:
    text = (project / "infra.yaml").read_text().replace("  mux:\n", "  serve:\n")
    (project / "infra.yaml").write_text(text + "serve:\n  enabled: true\n")
    with pytest.raises(ConfigError, match="stages.serve: the name is taken by the service 'serve'"):
        load_stack(project / "infra.yaml")


def test_up_needs_a_token_the_service_can_read(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from infra.stack.serve import ready_for_serve, serve_image

    stack = load_stack(serving(project) / "infra.yaml")
    assert serve_image(stack, "docker-cpu") == "serve" and serve_image(stack, "native") is None
    monkeypatch.delenv("INFRA_SERVE_TOKEN", raising=False)
    recorded: list[object] = []
    monkeypatch.setattr(cache, "stack_hardware", lambda s: recorded.append(s))
    with pytest.raises(BadInputError, match="needs a token, and there is none") as caught:
        ready_for_serve(stack)
    assert caught.value.hint == "set INFRA_SERVE_TOKEN in the environment or in config/secrets.json (the service " \
                                "reads config/)"
    assert not (project / "in" / "uploads").exists() and not recorded
    elsewhere = serving(project, "secrets:\n  file: secrets.env\n")
    (elsewhere / "secrets.env").write_text("INFRA_SERVE_TOKEN=from-a-file-outside-config\n")
    with pytest.raises(BadInputError, match="the token is in secrets.env, which the service 'serve' cannot read"):
        ready_for_serve(load_stack(elsewhere / "infra.yaml"))
    monkeypatch.setenv("INFRA_SERVE_TOKEN", "from-the-environment")
    ready_for_serve(stack)
    assert (project / "in" / "uploads").is_dir() and recorded == [stack]


def test_the_stack_s_service_takes_the_host_s_hardware_as_recorded(project: Path) -> None:
    """Another host name in the fingerprint and an age past any TTL: the service still takes what `infra up`
    recorded; with nothing recorded it refuses in one line."""
    stack = load_stack(project / "infra.yaml")
    service = JobService(stack, stack_mode="docker-gpu")
    try:
        with pytest.raises(OperationError, match="no hardware snapshot of the host in"):
            service._hardware()
        host = snapshot(gpu_class="cuda").model_copy(update={"detected_at": time.time() - 30 * 24 * 3600})
        cache.write_cache(service.ws.hardware_cache, host, cache.fingerprint().model_copy(update={"host": "the-host"}))
        state = service._hardware()
        assert state.snapshot == host and state.source == "cache"
        assert service.workers_up()                # the stack's service always hands films to the workers
        data = json.loads(service.ws.hardware_cache.read_text())
        data["hardware"] = {"broken": True}
        service.ws.hardware_cache.write_text(json.dumps(data))
        with pytest.raises(OperationError, match="cannot be used: corrupt"):
            service._hardware()
    finally:
        service.close()
