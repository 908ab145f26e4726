"""The build scheduler against the in-memory engine: order, failures, skips, parallelism, --only.

Targets are tiny Dockerfiles in a temporary folder (no daemon); the fake "builds" an image by storing it
with the request's labels, so its content-hash label makes it up to date for the next plan.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest

from infra.build.plan import HASH_LABEL, BuildTarget, Plan, plan_images
from infra.build.report import BuildSummary, ImageReport
from infra.build.run import BuildRequestSpec, build_stack
from infra.build.scheduler import BuildOptions, Finished, Started, StepEvent, build_images
from infra.engine import Engine, EngineAPI
from infra.engine.fake import FakeEngine
from infra.errors import EngineUnavailableError
from infra.spec import load_stack

#   base ─┬─ ml ─┬─ asr ── subs
#         │      └─ diar
#         └─ ffmpeg
PARENTS = {"base": None, "ml": "base", "asr": "ml", "diar": "ml", "subs": "asr", "ffmpeg": "base"}


def make_targets(root: Path) -> dict[str, BuildTarget]:
    targets = {}
    for name, parent in PARENTS.items():
        context = root / name
        if not context.is_dir():                     # made once; a test may change a file afterwards
            context.mkdir(parents=True)
            (context / "marker").write_text(f"{name}\n")
        dockerfile = context / "Dockerfile"
        dockerfile.write_text(f"FROM {parent or 'scratch'}\nCOPY marker /{name}\nRUN true\n")
        targets[name] = BuildTarget(name=name, ref=f"t-{name}:latest", dockerfile=dockerfile, context=context,
                                    parent=parent, base="scratch" if parent is None else None)
    return targets


def plan_for(root: Path, engine: FakeEngine) -> Plan:
    return plan_images(make_targets(root), lambda ref: engine.label_of(ref, HASH_LABEL))


def run(plan: Plan, engine: FakeEngine, only: set[str] | None = None, **options: object) -> dict[str, ImageReport]:
    events = list(build_images(plan, engine, BuildOptions(**options), only))  # type: ignore[arg-type]
    return {e.report.name: e.report for e in events if isinstance(e, Finished)}


def test_every_image_builds_after_its_parent(tmp_path: Path) -> None:
    engine = FakeEngine(build_seconds=0.02)
    reports = run(plan_for(tmp_path, engine), engine, jobs=3)
    assert {n: r.status for n, r in reports.items()} == dict.fromkeys(PARENTS, "built")
    records = {b.ref: b for b in engine.builds}
    for name, parent in PARENTS.items():
        if parent:
            assert records[f"t-{name}:latest"].started >= records[f"t-{parent}:latest"].finished  # type: ignore[operator]
    # the child records the parent it was built on, and the steps of its Dockerfile were counted
    asr = engine.images["t-asr:latest"]
    assert asr.labels["io.infra.parent-digest"] == engine.images["t-ml:latest"].id
    assert reports["asr"].steps_executed == 2 and reports["asr"].image_id == asr.id


def test_a_failed_image_blocks_only_its_descendants(tmp_path: Path) -> None:
    engine = FakeEngine(fail_builds={"asr"})
    plan = plan_for(tmp_path, engine)
    events = list(build_images(plan, engine, BuildOptions(jobs=2)))
    reports = {e.report.name: e.report for e in events if isinstance(e, Finished)}
    assert {n: r.status for n, r in reports.items()} == {
        "base": "built", "ml": "built", "asr": "failed", "subs": "blocked", "diar": "built", "ffmpeg": "built"}
    assert "did not complete successfully" in reports["asr"].error and reports["asr"].log_tail
    assert reports["subs"].error == "parent asr did not build"
    assert "t-subs:latest" not in [b.ref for b in engine.builds]       # never attempted
    assert "t-subs:latest" not in engine.images and "t-asr:latest" not in engine.images
    started = [e.name for e in events if isinstance(e, Started)]
    assert "subs" not in started and {"diar", "ffmpeg"} <= set(started)
    assert any(isinstance(e, StepEvent) and e.name == "diar" and e.done for e in events)


def test_up_to_date_images_are_skipped_without_a_build(tmp_path: Path) -> None:
    engine = FakeEngine()
    run(plan_for(tmp_path, engine), engine)
    assert len(engine.builds) == len(PARENTS)

    again = plan_for(tmp_path, engine)
    assert all(p.up_to_date for p in again.images.values())
    reports = run(again, engine)
    assert {r.status for r in reports.values()} == {"up to date"}
    assert len(engine.builds) == len(PARENTS)                          # nothing built a second time
    assert reports["asr"].image_id == engine.images["t-asr:latest"].id

    (tmp_path / "ml" / "marker").write_text("changed\n")              # ml and what grows from it are stale
    reports = run(plan_for(tmp_path, engine), engine)
    assert {n for n, r in reports.items() if r.status == "built"} == {"ml", "asr", "diar", "subs"}
    assert {n for n, r in reports.items() if r.status == "up to date"} == {"base", "ffmpeg"}


def test_no_cache_builds_even_what_is_up_to_date(tmp_path: Path) -> None:
    engine = FakeEngine()
    run(plan_for(tmp_path, engine), engine)
    reports = run(plan_for(tmp_path, engine), engine, no_cache=True)
    assert {r.status for r in reports.values()} == {"built"}
    assert len(engine.builds) == 2 * len(PARENTS)
    assert all(b.request.no_cache for b in engine.builds[len(PARENTS):])


@pytest.mark.parametrize("jobs, expected", [(1, 1), (2, 2)])
def test_jobs_bounds_the_builds_running_at_once(tmp_path: Path, jobs: int, expected: int) -> None:
    # ml's three children and base's two are independent: room for more than two at once
    engine = FakeEngine(build_seconds=0.15)
    run(plan_for(tmp_path, engine), engine, jobs=jobs)
    assert len(engine.builds) == len(PARENTS)
    assert engine.max_concurrent_builds == expected
    assert max(b.concurrent for b in engine.builds) == expected


def test_only_builds_the_image_and_its_ancestors(tmp_path: Path) -> None:
    engine = FakeEngine()
    reports = run(plan_for(tmp_path, engine), engine, only={"asr"})
    assert set(reports) == {"base", "ml", "asr"}
    assert engine.built() == ["t-base:latest", "t-ml:latest", "t-asr:latest"]

    reports = run(plan_for(tmp_path, engine), engine, only={"subs", "ffmpeg"})
    assert {n: r.status for n, r in reports.items()} == {
        "base": "up to date", "ml": "up to date", "asr": "up to date", "subs": "built", "ffmpeg": "built"}


def test_an_engine_that_stops_answering_stops_the_build(tmp_path: Path) -> None:
    engine = FakeEngine()
    plan = plan_for(tmp_path, engine)
    engine.available = False
    with pytest.raises(EngineUnavailableError, match="no Docker engine answers"):
        run(plan, engine)


def test_fake_and_real_engine_offer_what_the_protocol_lists() -> None:
    """Both engines have every method of EngineAPI, with the same parameters."""
    members = [n for n, v in vars(EngineAPI).items() if inspect.isfunction(v) and not n.startswith("_")]
    assert {"build", "inspect_images", "run_to_log", "run_python", "push"} <= set(members)
    for name in members:
        wanted = list(inspect.signature(getattr(EngineAPI, name)).parameters)
        for engine in (Engine, FakeEngine):
            params = list(inspect.signature(getattr(engine, name)).parameters)
            if isinstance(inspect.getattr_static(engine, name), staticmethod):
                params = ["self", *params]
            assert params == wanted, f"{engine.__name__}.{name}{params} differs from EngineAPI's {wanted}"


def spec_engine(project: Path, **options: object) -> FakeEngine:
    """A fake engine holding the offline base of the real spec's docker-cpu mode, as `infra base` leaves it."""
    stack = load_stack(project / "infra.yaml")
    return FakeEngine({stack.base_ref("docker-cpu"): {"io.infra.base": "bookworm"}}, **options)  # type: ignore[arg-type]


def test_build_stack_summary_names_the_failed_and_the_blocked(project: Path) -> None:
    stack = load_stack(project / "infra.yaml")
    engine = spec_engine(project, fail_builds={"base-ml"})
    events = list(build_stack(stack, BuildRequestSpec(mode="docker-cpu", jobs=2), engine))
    summary = events[-1]
    assert isinstance(summary, BuildSummary) and summary.failed
    assert {r.name: r.status for r in summary.images} == {
        "base": "built", "base-ml": "failed", "asr": "blocked", "diarization": "blocked", "pyannote-vad": "blocked",
        "ffmpeg": "built", "subtitles": "built", "serve": "built"}
    assert not [b for b in engine.builds if b.ref == stack.image_ref("asr", "docker-cpu")]
    assert '"status": "blocked"' in (project / "out" / "build-summary.json").read_text()


def test_infra_build_exits_1_and_shows_failed_and_blocked(project: Path, run_cli, monkeypatch) -> None:
    """The CLI with the fake in place of the Docker engine it would make."""
    engine = spec_engine(project, fail_builds={"base-ml"})
    monkeypatch.setattr("infra.build.run.Engine", lambda: engine)
    result = run_cli("build", "--mode", "docker-cpu", "--json", cwd=project)
    assert result.code == 1, result.stderr
    statuses = {i["name"]: i["status"] for i in json.loads(result.stdout)["images"]}
    assert statuses["base-ml"] == "failed" and statuses["asr"] == "blocked" and statuses["ffmpeg"] == "built"

    engine.fail_builds.clear()                     # fixed: what failed or was blocked builds, the rest is current
    result = run_cli("build", "--mode", "docker-cpu", "--json", cwd=project)
    assert result.code == 0, result.stderr
    statuses = {i["name"]: i["status"] for i in json.loads(result.stdout)["images"]}
    assert statuses == {"base": "up to date", "base-ml": "built", "asr": "built", "diarization": "built",
                        "pyannote-vad": "built", "ffmpeg": "up to date", "subtitles": "up to date",
                        "serve": "up to date"}
