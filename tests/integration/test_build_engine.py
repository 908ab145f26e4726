"""The DAG builder against the real engine, on small images made for the test."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from infra.build.scheduler import BuildOptions, Finished, Started, StepEvent, build_images
from infra.engine import Engine
from infra.build.plan import HASH_LABEL, PARENT_LABEL, BuildTarget, plan_images

pytestmark = pytest.mark.docker


@pytest.fixture
def tags():
    made: list[str] = []
    yield made
    if made:
        subprocess.run(["docker", "image", "rm", "-f", *made], capture_output=True)


def target(tmp: Path, name: str, dockerfile: str, ref: str, parent: str | None = None, base: str | None = None,
           files: dict[str, str] | None = None) -> BuildTarget:
    context = tmp / name
    context.mkdir()
    (context / "Dockerfile").write_text(dockerfile)
    for rel, text in (files or {}).items():
        (context / rel).write_text(text)
    return BuildTarget(name=name, ref=ref, dockerfile=context / "Dockerfile", context=context, parent=parent, base=base)


def run(plan, **options):
    events = list(build_images(plan, Engine(), BuildOptions(**options)))
    return events, {e.report.name: e.report for e in events if isinstance(e, Finished)}


def test_failure_blocks_only_descendants_and_leaves_no_tag(tmp_path: Path, offline_base: str, tags) -> None:
    run_id = uuid.uuid4().hex[:8]
    refs = {n: f"infra-test-{run_id}-{n}:latest" for n in "abcd"}
    tags.extend(refs.values())
    targets = {
        "a": target(tmp_path, "a", f"FROM {offline_base}\nRUN echo a > /a\n", refs["a"], base=offline_base),
        "b": target(tmp_path, "b", "FROM a\nRUN echo about to fail && exit 3\n", refs["b"], parent="a"),
        "c": target(tmp_path, "c", "FROM b\nRUN echo c\n", refs["c"], parent="b"),
        "d": target(tmp_path, "d", f"FROM {offline_base}\nCOPY f /f\n", refs["d"], base=offline_base,
                    files={"f": run_id}),
    }
    engine = Engine()
    plan = plan_images(targets, lambda ref: engine.label_of(ref, HASH_LABEL))
    events, reports = run(plan, jobs=2)
    assert {n: r.status for n, r in reports.items()} == {"a": "built", "b": "failed", "c": "blocked", "d": "built"}
    assert any("about to fail" in line for line in reports["b"].log_tail), reports["b"].log_tail
    assert not engine.image_exists(refs["b"]) and not engine.image_exists(refs["c"])
    assert engine.inspect_image(refs["a"]).labels[HASH_LABEL] == plan.images["a"].content_hash
    assert any(isinstance(e, Started) and e.name == "a" for e in events)
    assert any(isinstance(e, StepEvent) and e.name == "a" for e in events)
    started = [e.name for e in events if isinstance(e, Started)]
    assert started.index("a") < started.index("b")


def test_second_run_is_up_to_date_and_a_change_rebuilds_only_what_depends_on_it(
        tmp_path: Path, offline_base: str, tags) -> None:
    run_id = uuid.uuid4().hex[:8]
    refs = {n: f"infra-test-{run_id}-{n}:latest" for n in ("root", "leaf", "other")}
    tags.extend(refs.values())
    targets = {
        "root": target(tmp_path, "root", f"FROM {offline_base}\nRUN echo root > /root.txt\n", refs["root"],
                       base=offline_base),
        "leaf": target(tmp_path, "leaf", "FROM root\nRUN echo slow-ish\nCOPY code.txt /code.txt\n", refs["leaf"],
                       parent="root", files={"code.txt": f"v1 {run_id}", ".dockerignore": "*.log\n"}),
        "other": target(tmp_path, "other", "FROM root\nRUN echo other\n", refs["other"], parent="root"),
    }
    engine = Engine()

    def plan():
        return plan_images(targets, lambda ref: engine.label_of(ref, HASH_LABEL))

    _, first = run(plan())
    assert {r.status for r in first.values()} == {"built"}
    assert engine.inspect_image(refs["leaf"]).labels[PARENT_LABEL] == first["root"].image_id

    second_plan = plan()
    assert all(p.up_to_date for p in second_plan.images.values())
    _, second = run(second_plan)
    assert {r.status for r in second.values()} == {"up to date"}

    (tmp_path / "leaf" / "debug.log").write_text("ignored by .dockerignore")
    assert all(p.up_to_date for p in plan().images.values())

    (tmp_path / "leaf" / "code.txt").write_text(f"v2 {run_id}")
    _, third = run(plan())
    assert {n: r.status for n, r in third.items()} == {"root": "up to date", "leaf": "built", "other": "up to date"}
    assert (third["leaf"].steps_executed, third["leaf"].steps_cached) == (1, 1), third["leaf"]
    assert "COPY code.txt" in third["leaf"].slowest_step
