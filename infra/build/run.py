"""The whole `infra build`: check the request, make the bases, render, plan, build, summarise, push."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from infra.build.base import ensure_bases
from infra.build.cabundle import CaBundle, certificate_hint, find_ca_bundle
from infra.build.plan import HASH_LABEL, plan_images, targets_for_mode
from infra.build.registry import preflight, push_images
from infra.build.report import BuildSummary, ImageReport, critical_path, load_previous, write_summary
from infra.build.scheduler import BuildOptions, Finished, build_images
from infra.engine import Engine, EngineAPI
from infra.errors import BadInputError
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


def build_stack(stack: Stack, request: BuildRequestSpec, engine: EngineAPI | None = None) -> Iterator[object]:
    """Yields progress (str), build events, push results, and finally the BuildSummary."""
    engine = engine or Engine()
    mode = request.mode
    names = stack.images_for_mode(mode)
    if request.jobs < 1:
        raise BadInputError(f"--jobs: must be at least 1, got {request.jobs}")
    for name in request.only:
        if name not in names:
            raise BadInputError(f"--only: unknown image '{name}' in {mode} (images: {', '.join(names)})")
    registry = request.registry or stack.spec.registry
    if request.push and not registry:
        raise BadInputError("--push needs a registry", hint="pass --registry HOST/NAMESPACE or set 'registry' in infra.yaml")
    ca = find_ca_bundle(stack)
    secrets = _build_secrets(stack, ca)
    wheelhouse = stack.spec.native_env.wheelhouse
    if stack.spec.native_env.torch == "baked" and wheelhouse and not (stack.workdir / wheelhouse).is_dir():
        raise BadInputError(f"native_env.wheelhouse: folder '{wheelhouse}' not found",
                            hint="point it at a folder of wheels, or remove it to install torch from the index")
    if request.builder:
        engine.check_builder(request.builder)
    if request.push:
        preflight(registry, engine.registry_logged_in(registry))

    known = engine.inspect_images([stack.base_ref(mode), *(stack.image_ref(n, mode) for n in names)])  # one docker call
    if ca is not None:
        yield f"CA bundle {ca.path} (from {ca.source}), passed to the build as a secret"
    for event in ensure_bases(stack, [mode], engine, known=known):
        yield event if isinstance(event, str) else f"base {event.ref}: {event.status}"

    layout = default_layout(stack, mode)
    out = Path(os.path.normpath(stack.workdir.resolve() / layout.from_project))
    written = write_files(out, render_mode(stack, mode, layout))
    if written.written:
        yield f"rendered {len(written.written)} file(s) into {layout.out}"

    targets = targets_for_mode(stack, mode, out)
    plan = plan_images(targets, lambda ref: known[ref].labels.get(HASH_LABEL) if known.get(ref) else None)
    summary_dir = stack.workdir / "out"
    previous = load_previous(summary_dir, mode)
    options = BuildOptions(jobs=request.jobs, no_cache=request.no_cache, builder=request.builder, secrets=secrets)
    start = time.monotonic()
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
    if request.push and not summary.failed:
        refs = {r.name: (r.ref, stack.image_ref(r.name, mode, registry)) for r in ordered}
        for pushed in push_images(engine, refs):
            summary.pushed[pushed.name] = f"{pushed.remote}@{pushed.digest}"
            yield pushed
    write_summary(summary, summary_dir)
    yield summary


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
