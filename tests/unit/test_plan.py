"""Content hashes, .dockerignore rules, rawjson step parsing, the critical path."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from infra.build.report import ImageReport
from infra.build.report import BuildSummary, critical_path, load_previous, write_summary
from infra.engine.build import StepLog
from infra.build.plan import BuildTarget, DockerIgnore, content_hash, context_files, plan_images


def test_dockerignore_rules() -> None:
    rules = DockerIgnore(["# comment", "*.log", "build/", "**/__cache__", "docs/**/*.md", "!docs/keep.md", "/tmp*"])
    assert rules.excluded("x.log") and not rules.excluded("sub/x.log")
    assert rules.excluded("build/a/b.txt")
    assert rules.excluded("a/b/__cache__/f") and rules.excluded("__cache__")
    assert rules.excluded("docs/a/b.md") and rules.excluded("docs/x.md")
    assert not rules.excluded("docs/keep.md")
    assert rules.excluded("tmpfile") and not rules.excluded("src/tmpfile")
    assert not rules.excluded("main.py")


def make_target(tmp: Path, name: str = "img", parent: str | None = None) -> BuildTarget:
    ctx = tmp / name
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text("FROM scratch\n")
    (ctx / "app.py").write_text("print(1)\n")
    (ctx / ".dockerignore").write_text("*.tmp\n")
    return BuildTarget(name=name, ref=f"{name}:latest", dockerfile=ctx / "Dockerfile", context=ctx, parent=parent)


def test_content_hash_follows_what_reaches_the_build(tmp_path: Path) -> None:
    target = make_target(tmp_path)
    first = content_hash(target, None)
    assert content_hash(target, None) == first
    (target.context / "scratch.tmp").write_text("ignored")
    assert content_hash(target, None) == first
    assert "scratch.tmp" not in context_files(target.context)
    (target.context / "app.py").write_text("print(2)\n")
    second = content_hash(target, None)
    assert second != first
    (target.context / "app.py").chmod(0o755)
    assert content_hash(target, None) != second, "the executable bit reaches the image"
    assert content_hash(target, "parent-a") != content_hash(target, "parent-b")
    with_arg = BuildTarget(**{**target.__dict__, "args": {"PIP_INDEX_URL": "https://example.invalid/simple"}})
    assert content_hash(with_arg, None) != content_hash(target, None)


def test_plan_marks_children_of_a_changed_parent_stale(tmp_path: Path) -> None:
    targets = {"root": make_target(tmp_path, "root"), "leaf": make_target(tmp_path, "leaf", parent="root")}
    first = plan_images(targets, lambda ref: None)
    labels = {p.target.ref: p.content_hash for p in first.images.values()}
    assert first.order == ["root", "leaf"]
    assert all(p.up_to_date for p in plan_images(targets, labels.get).images.values())
    (tmp_path / "root" / "app.py").write_text("changed\n")
    again = plan_images(targets, labels.get)
    assert not again.images["root"].up_to_date and not again.images["leaf"].up_to_date


def rawjson(vertexes=None, logs=None) -> str:
    return json.dumps({"vertexes": vertexes or [], "logs": logs or []})


def test_steplog_folds_vertex_updates_and_keeps_the_log_tail() -> None:
    log = StepLog()
    log.feed(rawjson([{"digest": "d1", "name": "[internal] load build definition from Dockerfile"}]))
    log.feed(rawjson([{"digest": "d2", "name": "[1/3] FROM docker.io/library/base:1"}]))
    log.feed(rawjson([{"digest": "d3", "name": "[2/3] RUN apt-get install -y ffmpeg",
                       "started": "2026-11-28T10:00:00.100000000Z"}]))
    data = base64.b64encode(b"Setting up ffmpeg\nDone\n").decode()
    log.feed(rawjson(logs=[{"vertex": "d3", "stream": 1, "data": data}]))
    log.feed(rawjson([{"digest": "d3", "name": "[2/3] RUN apt-get install -y ffmpeg",
                       "started": "2026-11-28T10:00:00.100000000Z", "completed": "2026-11-28T10:00:12.600000123Z"}]))
    log.feed(rawjson([{"digest": "d4", "name": "[3/3] COPY app /app", "started": "2026-11-28T10:00:13Z",
                       "completed": "2026-11-28T10:00:13Z", "cached": True}]))
    log.feed("not json: a plain line from buildx")
    steps = log.dockerfile_steps
    assert [s.name for s in steps] == ["[2/3] RUN apt-get install -y ffmpeg", "[3/3] COPY app /app"]
    assert abs(steps[0].seconds - 12.5) < 1e-3 and not steps[0].cached and steps[1].cached
    assert log.tail == ["Setting up ffmpeg", "Done"]
    assert log.failure_tail()[-1] == "not json: a plain line from buildx"


def report(name: str, seconds: float, status: str = "built") -> ImageReport:
    return ImageReport(name=name, ref=f"{name}:latest", status=status, content_hash="h", seconds=seconds)


def test_critical_path_is_the_slowest_chain() -> None:
    reports = [report("base", 10), report("ml", 30), report("asr", 5), report("ffmpeg", 40)]
    parents = {"base": None, "ml": "base", "asr": "ml", "ffmpeg": "base"}
    assert critical_path(reports, parents) == (["base", "ffmpeg"], 50)
    reports[1].seconds = 60
    assert critical_path(reports, parents) == (["base", "ml", "asr"], 75)


def test_summary_keeps_the_previous_one(tmp_path: Path) -> None:
    first = BuildSummary("docker-cpu", 12.0, [report("base", 10)])
    write_summary(first, tmp_path)
    assert load_previous(tmp_path, "docker-cpu")["base"]["seconds"] == 10
    assert load_previous(tmp_path, "docker-gpu") == {}
    write_summary(BuildSummary("docker-cpu", 1.0, [report("base", 0, "up to date")]), tmp_path)
    previous = json.loads((tmp_path / "build-summary.previous.json").read_text())
    assert previous["images"][0]["seconds"] == 10
    (tmp_path / "build-summary.json").write_text("{broken")
    assert load_previous(tmp_path, "docker-cpu") == {}


def test_a_stage_module_change_touches_only_the_image_that_copies_it(tmp_path: Path) -> None:
    stages = tmp_path / "stages"
    stages.mkdir()
    for name in ("__init__.py", "_jobio.py", "asr.py", "mux.py"):
        (stages / name).write_text(f"# {name}\n")
    shared = ("__init__.py", "_*.py", "worker.py*")
    targets = {}
    for name, module in (("asr", "asr.py*"), ("ffmpeg", "mux.py*")):
        base = make_target(tmp_path, name)
        targets[name] = BuildTarget(**{**base.__dict__, "local_contexts": {"stages": stages},
                                       "context_globs": {"stages": (*shared, module)}})
    before = {n: content_hash(t, None) for n, t in targets.items()}
    (stages / "asr.py").write_text("# changed\n")
    after = {n: content_hash(t, None) for n, t in targets.items()}
    assert after["asr"] != before["asr"] and after["ffmpeg"] == before["ffmpeg"]
    (stages / "_jobio.py").write_text("# shared change\n")
    assert all(content_hash(t, None) != after[n] for n, t in targets.items())


def test_steplog_reports_every_step_of_a_message() -> None:
    """A cached build sends several vertexes in one message; each one is a step event."""
    log = StepLog()
    changed = log.feed(rawjson([
        {"digest": "d1", "name": "[1/3] FROM docker.io/library/base:1", "started": "2026-11-28T10:00:00Z",
         "completed": "2026-11-28T10:00:00Z"},
        {"digest": "d2", "name": "[2/3] RUN echo a", "started": "2026-11-28T10:00:00Z",
         "completed": "2026-11-28T10:00:00Z", "cached": True},
        {"digest": "d3", "name": "exporting to image", "started": "2026-11-28T10:00:00Z"},
    ]))
    assert [s.name for s in changed] == ["[1/3] FROM docker.io/library/base:1", "[2/3] RUN echo a",
                                         "exporting to image"]
    assert [s.name for s in changed if not s.internal] == ["[2/3] RUN echo a"]
