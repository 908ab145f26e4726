"""Build a mode's images in dependency order, in parallel, skipping what is up to date.

`build_images` is a generator of events (started, step, finished); the CLI
decides how to show them. Independent images build at the same time; an image
starts as soon as its parent is done. A failed image blocks its descendants and
nothing else.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from graphlib import TopologicalSorter
from pathlib import Path

from infra.build.plan import HASH_LABEL, PARENT_LABEL, Plan
from infra.build.remote import RemoteImage, RemoteStore, cache_options
from infra.build.reproducible import image_manifest_digest
from infra.build.report import ImageReport
from infra.engine import Engine, EngineAPI, ImageInfo
from infra.engine.build import BuildRequest, Step, StepLog
from infra.errors import EngineError, EngineUnavailableError


@dataclass(frozen=True)
class Started:
    name: str


@dataclass(frozen=True)
class StepEvent:
    name: str
    step: str
    cached: bool
    done: bool


@dataclass(frozen=True)
class Finished:
    report: ImageReport


Event = Started | StepEvent | Finished


@dataclass(frozen=True)
class BuildOptions:
    jobs: int = 2
    no_cache: bool = False
    builder: str | None = None
    secrets: tuple[str, ...] = ()
    args: Mapping[str, str] = field(default_factory=dict)
    store: RemoteStore | None = None      # the registry: layer cache, parents that are only there
    cache: str = "off"                    # off, read or write: the registry's layer cache (infra.build.remote)
    archives: Path | None = None          # reproducible builds: OCI archives with rewritten timestamps go here


def build_images(plan: Plan, engine: EngineAPI | None, options: BuildOptions, only: set[str] | None = None,
                 known: Mapping[str, ImageInfo | None] | None = None) -> Iterator[Event]:
    """Build the stale images of ``plan`` (or of ``only`` and what they need); yield events as they happen.

    ``engine`` is the Docker engine unless given; ``known`` holds images inspected when the plan was
    made, so up-to-date ones cost no docker call."""
    engine = engine or Engine()
    known = known or {}
    wanted = _with_ancestors(plan, only) if only else set(plan.images)
    graph = {n: {p.target.parent} & wanted if p.target.parent else set() for n, p in plan.images.items() if n in wanted}
    sorter = TopologicalSorter(graph)
    sorter.prepare()
    events: queue.SimpleQueue[Event] = queue.SimpleQueue()
    unusable: set[str] = set()          # failed or blocked: their children are blocked
    in_registry: dict[str, RemoteImage] = {}   # not here, but in the registry: children build FROM it there
    manifests: dict[str, str] = {}      # reproducible builds: each image's manifest, its children's parent label
    running: dict[Future[ImageReport], str] = {}
    with ThreadPoolExecutor(max_workers=max(1, options.jobs), thread_name_prefix="build") as pool:
        while sorter.is_active():
            for name in sorter.get_ready():
                planned = plan.images[name]
                parent = planned.target.parent
                if parent in unusable:
                    unusable.add(name)
                    yield Finished(ImageReport(name, planned.target.ref, "blocked", planned.content_hash,
                                               error=f"parent {parent} did not build"))
                    sorter.done(name)
                elif planned.up_to_date and not options.no_cache:
                    yield Finished(_up_to_date(engine, name, plan, known.get(planned.target.ref)))
                    sorter.done(name)
                elif name in plan.remote and not options.no_cache:
                    in_registry[name] = plan.remote[name]
                    yield Finished(ImageReport(name, planned.target.ref, "in registry", planned.content_hash,
                                               digest=plan.remote[name].digest))
                    sorter.done(name)
                else:
                    yield Started(name)
                    parent = planned.target.parent or ""
                    running[pool.submit(_build_one, engine, plan, name, options, events, in_registry.get(parent),
                                        manifests.get(parent))] = name
            if not running:
                continue
            done, _ = wait(running, timeout=0.2, return_when=FIRST_COMPLETED)
            while not events.empty():
                yield events.get()
            for future in done:
                name = running.pop(future)
                report = future.result()
                if report.manifest_digest:
                    manifests[name] = report.manifest_digest
                if report.status == "failed":
                    unusable.add(name)
                yield Finished(report)
                sorter.done(name)
        while not events.empty():
            yield events.get()


def _with_ancestors(plan: Plan, only: set[str]) -> set[str]:
    wanted: set[str] = set()
    for name in only:
        while name and name not in wanted:
            wanted.add(name)
            name = plan.images[name].target.parent or ""
    return wanted


def _up_to_date(engine: EngineAPI, name: str, plan: Plan, inspected: ImageInfo | None) -> ImageReport:
    planned = plan.images[name]
    inspected = inspected or engine.inspect_image(planned.target.ref)
    return ImageReport(name, planned.target.ref, "up to date", planned.content_hash,
                       size_bytes=inspected.size, image_id=inspected.id)


def _build_one(engine: EngineAPI, plan: Plan, name: str, options: BuildOptions,
               events: queue.SimpleQueue[Event], remote_parent: RemoteImage | None = None,
               parent_manifest: str | None = None) -> ImageReport:
    planned = plan.images[name]
    target = planned.target
    contexts = {key: str(path) for key, path in target.local_contexts.items()}
    labels = {**target.labels, HASH_LABEL: planned.content_hash}
    if remote_parent is not None:           # only in the registry: BuildKit reads it from there, by digest
        contexts[remote_parent.name] = f"docker-image://{remote_parent.ref}"
        labels[PARENT_LABEL] = remote_parent.digest
    elif target.parent:
        parent_ref = plan.images[target.parent].target.ref
        contexts[target.parent] = f"docker-image://{parent_ref}"
        # the image id names the index, whose provenance attestation differs on every build: a reproducible
        # child names its parent's image manifest instead
        labels[PARENT_LABEL] = parent_manifest or engine.inspect_image(parent_ref).id
    cache_from, cache_to = cache_options(options.store, name, "off" if options.no_cache else options.cache)
    archive = options.archives / f"{name}.oci.tar" if options.archives else None
    request = BuildRequest(context=target.context, dockerfile=target.dockerfile, tag=target.ref, contexts=contexts,
                           args={**options.args, **target.args}, labels=labels, secrets=list(options.secrets),
                           no_cache=options.no_cache, builder=options.builder, cache_from=tuple(cache_from),
                           cache_to=cache_to[0] if cache_to else None, oci_archive=archive)

    def on_step(step: Step) -> None:
        if not step.internal:
            events.put(StepEvent(name, step.name, step.cached, step.completed is not None))

    start = time.monotonic()
    try:
        log = engine.build(request, on_step)
        manifest = ""
        if archive is not None:
            manifest = image_manifest_digest(archive) if archive.is_file() else ""
            engine.load_archive(archive)
            archive.unlink(missing_ok=True)
    except EngineUnavailableError:
        raise
    except EngineError as exc:
        return ImageReport(name, target.ref, "failed", planned.content_hash, time.monotonic() - start,
                           error=exc.message, log_tail=exc.stderr_tail.splitlines())
    seconds = time.monotonic() - start
    inspected = engine.inspect_image(target.ref)
    report = _report(name, target.ref, planned.content_hash, seconds, log, inspected.size, inspected.id)
    report.manifest_digest = manifest
    return report


def _report(name: str, ref: str, content_hash: str, seconds: float, log: StepLog, size: int, image_id: str) -> ImageReport:
    steps = log.dockerfile_steps
    executed = [s for s in steps if not s.cached]
    slowest = max(executed, key=lambda s: s.seconds, default=None)
    return ImageReport(name, ref, "built", content_hash, seconds,
                       steps_executed=len(executed), steps_cached=len(steps) - len(executed),
                       slowest_step=slowest.name if slowest else "", slowest_seconds=slowest.seconds if slowest else 0.0,
                       size_bytes=size, image_id=image_id)
