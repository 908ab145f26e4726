"""`infra deploy --target swarm`'s refusals, each before anything starts, against the in-memory engine and a
made-up list of nodes (the multi-node swarm itself: tests/integration/test_swarm_nodes.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from infra.engine.swarm import NodeInfo
from infra.errors import BadInputError
from infra.spec import Stack, load_stack
from infra.stack import swarm as deploy
from tests.fake_stack import make_native_env, spec_engine


def node(name: str, memory_gib: float = 8, **labels: str) -> NodeInfo:
    return NodeInfo(id=name, hostname=name, state="ready", availability="active", manager=name == "n1",
                    labels=labels, memory=int(memory_gib * 2**30))


def edit(project: Path, **changes: object) -> Stack:
    spec = yaml.safe_load((project / "infra.yaml").read_text())
    for dotted, value in changes.items():
        *parents, key = dotted.split("__")
        target = spec
        for part in parents:
            target = target[part]
        target[key] = value
    (project / "infra.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    stack = load_stack(project / "infra.yaml")
    make_native_env(stack)
    return stack


def refusal(stack: Stack, mode: str, nodes: list[NodeInfo], monkeypatch, **options: object) -> str:
    import infra.engine.swarm as swarm_engine

    monkeypatch.setattr(swarm_engine, "swarm_nodes", lambda engine: nodes)
    engine = spec_engine(stack, mode)
    engine.swarm = ("active", True)
    with pytest.raises(BadInputError) as caught:
        list(deploy.deploy_swarm(stack, mode, engine, **options))  # type: ignore[arg-type]
    assert not [c for c in engine.calls if c[0] in ("run_python", "build", "push")], "nothing ran first"
    return str(caught.value)


def test_a_gpu_stage_needs_a_node_labelled_with_a_gpu(project: Path, monkeypatch) -> None:
    stack = edit(project)
    message = refusal(stack, "docker-gpu", [node("n1"), node("n2")], monkeypatch)
    assert message.startswith("GPU stage(s) vad, asr, diarize and no node of the swarm is labelled infra.gpu=true")


def test_a_stage_that_needs_more_memory_than_any_node_has(project: Path, monkeypatch) -> None:
    stack = edit(project, stages__asr__memory="12G")
    message = refusal(stack, "docker-cpu", [node("n1", 8), node("n2", 4)], monkeypatch)
    assert message == "stage asr needs 12G of memory and the largest node has 8.0 GiB"


def test_a_loopback_registry_is_refused_once_the_swarm_has_more_nodes(project: Path, monkeypatch) -> None:
    stack = edit(project, registry="127.0.0.1:5000/speech")
    message = refusal(stack, "docker-cpu", [node("n1"), node("n2")], monkeypatch)
    assert message.startswith("registry 127.0.0.1:5000 is a loopback address: the other 1 node(s)")


def test_several_nodes_and_no_registry(project: Path, monkeypatch) -> None:
    stack = edit(project)
    message = refusal(stack, "docker-cpu", [node("n1"), node("n2")], monkeypatch)
    assert message.startswith("a swarm of 2 nodes pulls images from a registry, and infra.yaml sets none")


def test_a_folder_env_on_several_nodes(project: Path, monkeypatch) -> None:
    stack = edit(project, registry="registry.example.com/speech")
    engine_images = spec_engine(stack, "docker-cpu")
    monkeypatch.setattr(type(engine_images), "remote_image_exists", lambda self, ref: True)
    message = refusal(stack, "docker-cpu", [node("n1"), node("n2")], monkeypatch)
    assert message.startswith("native_env.delivery is 'folder': each of the 2 nodes would need the environment")


def test_an_unknown_stage_to_scale(project: Path, monkeypatch) -> None:
    stack = edit(project)
    message = refusal(stack, "docker-cpu", [node("n1")], monkeypatch, scale={"nosuch": 2})
    assert message == "--scale: nosuch is not a stage of mode docker-cpu"


def test_drained_and_down_nodes_do_not_count(project: Path, monkeypatch) -> None:
    from dataclasses import replace

    stack = edit(project)
    labelled = replace(node("n2", **{"infra.gpu": "true"}), availability="drain")
    message = refusal(stack, "docker-gpu", [node("n1"), labelled], monkeypatch)
    assert "no node of the swarm is labelled infra.gpu=true" in message


def test_a_deploy_that_times_out_on_failed_pulls_names_the_nodes_and_what_to_check(monkeypatch) -> None:
    import infra.engine.swarm as swarm_engine
    from infra.engine.swarm import TaskInfo
    from infra.errors import OperationError

    pulled = "No such image: 10.0.0.1:5000/fleet/fleet-native-env@sha256:4621"
    tasks = [TaskInfo("native-env", None, "n1", "running", "running", "", "env"),
             TaskInfo("native-env", None, "n2", "rejected", "shutdown", pulled, "env"),
             TaskInfo("native-env", None, "n3", "rejected", "shutdown", pulled, "env")]
    monkeypatch.setattr(swarm_engine, "stack_tasks", lambda engine, name: tasks)
    lines = []
    with pytest.raises(OperationError) as caught:
        for line in deploy.wait_for(None, "fleet", {"native-env": 3}, timeout_s=0):  # type: ignore[arg-type]
            lines.append(line)
    assert lines == [f"note: native-env on n2: {pulled}", f"note: native-env on n3: {pulled}"]
    assert caught.value.message == "stack fleet: not running after 0 s (native-env 1/3)"
    assert caught.value.hint.startswith("n2, n3 could not pull the image")
    assert "disk space" in caught.value.hint

    tasks[1:] = [TaskInfo("native-env", None, "", "pending", "running", "no suitable node", "env")]
    with pytest.raises(OperationError) as caught:
        list(deploy.wait_for(None, "fleet", {"native-env": 3}, timeout_s=0))  # type: ignore[arg-type]
    assert caught.value.hint == "`infra ps --target swarm` shows each task and its node"
