"""What the compose file, the swarm stack and the bake file say, read back as data."""

from __future__ import annotations

import json
import posixpath

import pytest
import yaml

from tests.render_cases import CASES, MODES, render

ML_STAGES = {"vad", "asr", "diarize"}
ALL_STAGES = {"demux", "vad", "asr", "diarize", "subtitles", "mux"}


def load(case: str, mode: str) -> tuple[object, dict[str, str]]:
    stack = CASES[case]()
    return stack, render(stack, mode)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("mode", MODES)
def test_compose_services(case: str, mode: str) -> None:
    stack, files = load(case, mode)
    compose = yaml.safe_load(files["compose.yaml"])
    services = compose["services"]
    stages = {n for n, s in services.items() if "profiles" not in s and n != "serve"}   # serve: test_render_serve
    assert stages == ({"demux", "mux"} if mode == "native" else ALL_STAGES)
    assert services["setup-dirs"]["profiles"] == ["setup"]
    assert not any("build" in s for s in services.values())
    for name in stages:
        svc = services[name]
        assert svc["image"] == stack.image_ref(stack.spec.stages[name].image, mode)
        assert svc["command"] == ["python3", "-m", "stages.worker", name]
        assert svc["healthcheck"]["test"] == ["CMD", "python3", "-m", "stages.worker", "--health", name]
        assert svc["labels"]["io.infra.project"] == "speech"
        for upstream, cond in svc.get("depends_on", {}).items():
            assert upstream in stages and cond == {"condition": "service_started"}
        gpu = svc.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices")
        if mode == "docker-gpu" and name in ML_STAGES:
            assert gpu == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]
        else:
            assert gpu is None
        mounts = {m["target"]: m for m in svc["volumes"]}
        assert mounts["/data/jobs"]["source"] == "../../../jobs" and not mounts["/data/jobs"]["read_only"]
        assert mounts["/data/in"]["read_only"] and mounts["/data/config"]["read_only"]
        site = mounts.get("/opt/infra/native-site")
        if case == "fleet":   # the environment image, mounted as an image
            assert site == {"type": "image", "source": stack.image_ref("native-env", mode).rsplit(":", 1)[0]
                            + ":py3.11-" + site["source"].rsplit("-", 1)[1], "target": "/opt/infra/native-site",
                            "read_only": True, "image": {"subpath": "opt/infra-env/site-packages"}}
        elif case != "baked":   # default, and default with a lock
            assert site == {"type": "bind", "source": "../../../.venv-ml/lib/python3.11/site-packages",
                            "target": "/opt/infra/native-site", "read_only": True, "bind": {"create_host_path": False}}
        else:
            assert site is None
            assert svc["secrets"] == ["ca_bundle"] and svc["environment"]["SSL_CERT_FILE"] == "/run/secrets/ca_bundle"
    if mode != "native":
        assert set(services["subtitles"]["depends_on"]) == {"asr", "diarize"}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("mode", MODES)
def test_swarm_stack_has_what_stack_deploy_accepts(case: str, mode: str) -> None:
    stack, files = load(case, mode)
    text = files["stack.yaml"]
    services = yaml.safe_load(text)["services"]
    for forbidden in ("build:", "depends_on", "devices:", "profiles", "create_host_path", "pull_policy"):
        assert forbidden not in text
    for name, svc in services.items():
        if name in ("serve", "native-env"):      # tests/unit/test_render_serve.py; the fleet case below
            continue
        assert svc["image"] == stack.image_ref(stack.spec.stages[name].image, mode)
        generic = svc["deploy"].get("resources", {}).get("reservations", {}).get("generic_resources")
        if mode == "docker-gpu" and name in ML_STAGES:
            assert generic == [{"discrete_resource_spec": {"kind": "NVIDIA-GPU", "value": 1}}]
        else:
            assert generic is None
        assert (svc["deploy"].get("placement", {}).get("constraints")
                == (["node.labels.infra.gpu == true"] if mode == "docker-gpu" and name in ML_STAGES else None))
        assert svc["hostname"] == "{{.Node.Hostname}}-{{.Task.Slot}}"
        assert svc["environment"]["INFRA_NODE"] == "{{.Node.Hostname}}"
        assert svc["deploy"]["replicas"] == "${INFRA_REPLICAS_" + name.upper() + ":-1}"
        data = [m for m in svc["volumes"] if m["target"] != "/opt/infra/native-site"]
        assert data and all(m["source"].startswith("${INFRA_") for m in data)
    if case == "fleet":
        assert set(services) - {"serve"} == ({"demux", "mux"} if mode == "native" else ALL_STAGES) | {"native-env"}
        assert services["native-env"]["deploy"]["mode"] == "global"
        folder = services["native-env"]["environment"]["INFRA_ENV_FOLDER"]
        assert folder.startswith("${INFRA_ENV_FOLDER:-py3.11-")
        for name, svc in services.items():
            if name != "native-env":
                site = next(m for m in svc["volumes"] if m["target"] == "/opt/infra/native-site")
                assert site == {"type": "volume", "source": "native-env", "target": "/opt/infra/native-site",
                                "read_only": True, "volume": {"subpath": folder}}
        if mode != "native":
            assert services["asr"]["deploy"]["resources"]["reservations"]["memory"] == str(3 << 30)
        assert yaml.safe_load(text)["volumes"] == {"native-env": {}}
    elif case != "baked":   # default, and default with a lock
        assert "No `registry` is set in infra.yaml" in text
        assert "INFRA_NATIVE_SITE" in text
    else:
        assert services["demux"]["image"].startswith("registry.example.com/speech/")
        assert "INFRA_NATIVE_SITE" not in text


@pytest.mark.parametrize("mode", MODES)
def test_bake_targets_wire_parents_and_stage_code(mode: str) -> None:
    stack, files = load("default", mode)
    bake = json.loads(files["docker-bake.json"])
    names = stack.images_for_mode(mode)
    assert bake["group"] == {"default": {"targets": names}, mode: {"targets": names}}
    assert set(bake["target"]) == set(names)
    for name, target in bake["target"].items():
        parent = stack.images[name].parent
        assert target["context"] == f"images/{name}"
        assert posixpath.normpath(posixpath.join(target["context"], target["dockerfile"])) == \
            f".infra/out/{mode}/dockerfiles/{name}.Dockerfile"
        assert target["tags"] == [stack.image_ref(name, mode)]
        contexts = target.get("contexts", {})
        assert contexts.get(parent) == (f"target:{parent}" if parent else None)
        dockerfile = files[f"dockerfiles/{name}.Dockerfile"]
        assert ("stages" in contexts) == ("COPY --from=stages" in dockerfile)
        assert f"FROM {parent}\n" in dockerfile if parent else f"FROM {stack.base_ref(mode)}\n" in dockerfile


def test_bake_passes_torch_index_and_ca_secret_when_baked() -> None:
    _, files = load("baked", "docker-cpu")
    targets = json.loads(files["docker-bake.json"])["target"]
    assert targets["base-ml"]["args"] == {"TORCH_INDEX_URL": "https://download.pytorch.org/whl/cpu"}
    assert "args" not in targets["asr"]
    for name, target in targets.items():
        installs = "install" in files[f"dockerfiles/{name}.Dockerfile"]
        assert target.get("secret") == (["id=ca_bundle,src=config/ca-bundle.pem"] if installs else None), name
    assert "secret" not in targets["subtitles"]


def test_a_spec_without_stages_renders_images_and_empty_stacks() -> None:
    import dataclasses

    stack = CASES["default"]()
    stack = dataclasses.replace(stack, spec=stack.spec.model_copy(update={"stages": {}}))
    files = render(stack, "docker-cpu")
    assert yaml.safe_load(files["compose.yaml"])["services"] == {}
    assert yaml.safe_load(files["stack.yaml"])["services"] == {}
    assert not any("COPY --from=stages" in text for rel, text in files.items()
                   if rel.startswith("dockerfiles/") and rel != "dockerfiles/serve.Dockerfile")   # serve: all of infra
