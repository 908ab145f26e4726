"""The whole `infra build`: check the request, make the bases, render, plan, build, summarise, push."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from infra.build.base import ensure_bases
from infra.build.cabundle import CaBundle, certificate_hint, find_ca_bundle
from infra.build.plan import HASH_LABEL, Plan, plan_images, targets_for_mode
from infra.build.registry import fetch_base, preflight, push_base, push_images
from infra.build.reproducible import source_date_epoch
from infra.build.sbom import attach_sbom
from infra.build.remote import CACHE_MODES, RemoteStore
from infra.build.report import BuildSummary, ImageReport, critical_path, load_previous, write_summary
from infra.build.scheduler import BuildOptions, Finished, build_images
from infra.engine import Engine, EngineAPI
from infra.errors import BadInputError
from infra.oci.client import RegistryClient
from infra.render import default_layout, paths, render_mode
from infra.render.write import write_files
from infra.spec import Stack

@dataclass(frozen=True)
class BuildRequestSpec:
    mode: str
    only: tuple[str, ...] = ()
    jobs: int = 2
    no_cache: bool = False
    push: bool = False
    registry: str | None = None
    builder: str | None = None
    cache: str | None = None          # the registry's layer cache: off, read, write (default: write when pushing)
    local: bool = False               # leave the registry out: no remote skip, no layer cache
    reproducible: bool = False        # SOURCE_DATE_EPOCH from the spec's last commit, rewritten timestamps


def build_stack(stack: Stack, request: BuildRequestSpec, engine: EngineAPI | None = None,
                client: RegistryClient | None = None) -> Iterator[object]:
    """Yields progress (str), build events, push results, and finally the BuildSummary."""
    engine = engine or Engine()
    mode = request.mode
    names = stack.images_for_mode(mode)
    if request.jobs < 1:
        raise BadInputError(f"--jobs: must be at least 1, got {request.jobs}")
    for name in request.only:
        if name not in names:
            raise BadInputError(f"--only: unknown image '{name}' in {mode} (images: {', '.join(names)})")
    if request.push and request.local:
        raise BadInputError("--push and --local contradict each other (--local leaves the registry out)")
    registry = None if request.local else (request.registry or stack.spec.registry)
    if request.push and not registry:
        raise BadInputError("--push needs a registry", hint="pass --registry HOST/NAMESPACE or set 'registry' in infra.yaml")
    cache = _cache_mode(request, registry)
    epoch = source_date_epoch(stack) if request.reproducible else None
    ca = find_ca_bundle(stack)
    secrets = _build_secrets(stack, ca)
    wheelhouse = stack.spec.native_env.wheelhouse
    if stack.spec.native_env.torch == "baked" and wheelhouse and not (stack.workdir / wheelhouse).is_dir():
        raise BadInputError(f"native_env.wheelhouse: folder '{wheelhouse}' not found",
                            hint="point it at a folder of wheels, or remove it to install torch from the index")
    if request.builder:
        engine.check_builder(request.builder)
    if registry:
        preflight(registry, engine.registry_logged_in(registry))

    start = time.monotonic()
    base_ref = stack.base_ref(mode)
    known = engine.inspect_images([base_ref, *(stack.image_ref(n, mode) for n in names)])  # one docker call
    if ca is not None:
        yield f"CA bundle {ca.path} (from {ca.source}), passed to the build as a secret"

    layout = default_layout(stack, mode)
    out = Path(os.path.normpath(stack.workdir.resolve() / layout.from_project))
    written = write_files(out, render_mode(stack, mode, layout))
    if written.written:
        yield f"rendered {len(written.written)} file(s) into {layout.out}"

    targets = targets_for_mode(stack, mode, out)
    plan = plan_images(targets, lambda ref: known[ref].labels.get(HASH_LABEL) if known.get(ref) else None)
    store = RemoteStore({n: stack.image_ref(n, mode, registry) for n in names}, client) if registry else None
    if store is not None and not request.no_cache:
        asked = {n: p.content_hash for n, p in plan.images.items() if request.push or not p.up_to_date}
        found = store.lookup(asked) if asked else {}
        plan.remote = {n: r for n, r in found.items() if not plan.images[n].up_to_date}
        yield f"registry {store.host}: {len(found)} of {len(asked)} image(s) asked for found by content hash"
    offline_base = stack.spec.bases[stack.spec.modes[mode].base].debootstrap is not None
    if _builds_a_root(plan, request):
        if store is not None and offline_base and known.get(base_ref) is None:
            yield from fetch_base(engine, store.client, f"{registry}/{base_ref}", base_ref, known)
        for event in ensure_bases(stack, [mode], engine, known=known):
            yield event if isinstance(event, str) else f"base {event.ref}: {event.status}"

    summary_dir = stack.workdir / "out"
    previous = load_previous(summary_dir, mode)
    with tempfile.TemporaryDirectory(prefix="infra-oci-") as archives:
        options = BuildOptions(jobs=request.jobs, no_cache=request.no_cache, builder=request.builder, secrets=secrets,
                               store=store, cache=cache, archives=Path(archives) if epoch else None,
                               args={"SOURCE_DATE_EPOCH": epoch} if epoch else {})
        reports: dict[str, ImageReport] = {}
        for event in build_images(plan, engine, options, set(request.only) or None, known):
            if isinstance(event, Finished):
                reports[event.report.name] = event.report
                if event.report.status == "failed":
                    event.report.hint = certificate_hint([event.report.error, *event.report.log_tail], ca) or ""
            yield event
    ordered = [reports[n] for n in plan.order if n in reports]
    chain, chain_seconds = critical_path([r for r in ordered if r.status == "built"],
                                         {n: p.target.parent for n, p in plan.images.items()})
    summary = BuildSummary(mode, time.monotonic() - start, ordered, chain, chain_seconds, previous=previous)
    if request.push and not summary.failed and store is not None:
        yield from publish(engine, store, ordered, summary)
        if offline_base and (known.get(base_ref) is not None or engine.image_exists(base_ref)):
            yield from push_base(engine, store.client, f"{registry}/{base_ref}", base_ref)
    summary.wall_seconds = time.monotonic() - start
    write_summary(summary, summary_dir)
    yield summary


def _cache_mode(request: BuildRequestSpec, registry: str | None) -> str:
    cache = request.cache or ("write" if request.push else "read" if registry else "off")
    if cache not in CACHE_MODES:
        raise BadInputError(f"--cache: '{cache}' is not one of {', '.join(CACHE_MODES)}")
    if cache != "off" and not registry:
        raise BadInputError(f"--cache {cache} needs a registry to keep the cache in",
                            hint="pass --registry HOST/NAMESPACE or set 'registry' in infra.yaml")
    return cache


def _builds_a_root(plan: Plan, request: BuildRequestSpec) -> bool:
    """Whether an image that starts FROM the base will be built (else the base is not needed here at all)."""
    return any(p.target.parent is None and (request.no_cache or (not p.up_to_date and n not in plan.remote))
               for n, p in plan.images.items())


def publish(engine: EngineAPI, store: RemoteStore, reports: list[ImageReport], summary: BuildSummary) -> Iterator[object]:
    """Push what was built here; for what the registry already holds, a registry-side tag at most."""
    local = {r.name: (r.ref, store.refs[r.name]) for r in reports if r.status != "in registry"}
    for pushed in push_images(engine, local):
        store.publish(pushed.name, _hash_of(reports, pushed.name), pushed.digest)
        summary.pushed[pushed.name] = f"{pushed.remote}@{pushed.digest}"
        yield pushed
        sbom = attach_sbom(engine, pushed.remote, pushed.digest, store.client)
        yield f"{pushed.name}: SBOM attached ({sbom.debs} Debian packages, {sbom.dists} Python distributions)"
    for report in reports:
        if report.status == "in registry":
            tagged = store.publish(report.name, report.content_hash, report.digest)
            summary.pushed[report.name] = f"{store.refs[report.name]}@{report.digest}"
            yield (f"{report.name}: in registry, tagged {store.refs[report.name]}" if tagged
                   else f"{report.name}: in registry as {store.refs[report.name]} already")


def _hash_of(reports: list[ImageReport], name: str) -> str:
    return next(r.content_hash for r in reports if r.name == name)


def _build_secrets(stack: Stack, ca: CaBundle | None) -> tuple[str, ...]:
    """BuildKit secrets for the build: the CA bundle, the pip config and the Hugging Face token, by reference only."""
    secrets = [f"id={paths.CA_SECRET},src={ca.path}"] if ca is not None else []
    value = stack.spec.secrets.pip_config
    if value:
        path = Path(value) if Path(value).is_absolute() else stack.workdir / value
        if not path.is_file():
            raise BadInputError(f"secrets.pip_config: '{value}' not found", hint="point it (or INFRA_PIP_CONFIG) at a file")
        secrets.append(f"id={paths.PIP_CONF_SECRET},src={path}")
    if os.environ.get(stack.spec.secrets.hf_token_env):
        secrets.append(f"id={paths.HF_SECRET},env={stack.spec.secrets.hf_token_env}")
    return tuple(secrets)
