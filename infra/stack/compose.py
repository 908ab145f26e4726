"""The running stack on one machine: `infra up`, `down`, `ps` and `logs` through compose v2.

`up` refuses docker-gpu on an engine that cannot give containers an NVIDIA
GPU (infra/hardware/enginegpu.py), renders the mode, makes sure every image the
services use is built and current (building them with --build), checks that
each image can load the native environment it will mount, hands the workspace
to the images' user, and starts the services with compose, waiting until they
are healthy. A failure or Ctrl-C on the way takes the project down again, so
nothing is left half-started.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from infra.engine import Engine, EngineAPI
from infra.errors import BadInputError, OperationError
from infra.spec import Stack
from infra.stack.envimage import ensure_local_env_image
from infra.stack.readiness import check_native_env, prepare_workspace, render_to_disk, service_images, stale_images
from infra.stack.serve import ready_for_serve, serve_image

UP_TIMEOUT_S = 120


def stack_up(stack: Stack, mode: str, build: bool = False, scales: dict[str, int] | None = None,
             engine: EngineAPI | None = None) -> Iterator[object]:
    """Yields progress (str and build events); the last item is the list of ServiceState."""
    from infra.engine.compose import Compose

    engine = engine or Engine()
    if mode == "native":
        raise BadInputError("native mode runs the ML stages in the native environment, not as the stack's workers: "
                            "a job submitted to them would wait for vad and asr forever",
                            hint="use `infra up --mode docker-cpu` (or docker-gpu); natively, `infra run` or "
                                 "`infra job run` runs a job")
    if mode == "docker-gpu":
        from infra.hardware.enginegpu import require_gpu_engine

        require_gpu_engine(engine)          # before anything renders, builds or starts
    services = set(_compose_services(stack, mode))
    for name in scales or {}:
        if name not in services:
            raise BadInputError(f"--scale: no service '{name}' in {mode} (services: {', '.join(sorted(services))})")
    rendered = render_to_disk(stack, mode)
    serving = serve_image(stack, mode)
    if serving:
        ready_for_serve(stack)           # a token first, before anything is built
    stale = stale_images(stack, mode, rendered, engine, service_images(stack, mode) + ([serving] if serving else []))
    if stale and not build:
        raise BadInputError(f"images not built or out of date for {mode}: {', '.join(stale)}",
                            hint=f"`infra build --mode {mode}`, or `infra up --mode {mode} --build`")
    if stale:
        from infra.build.run import BuildRequestSpec, build_stack
        from infra.build.report import BuildSummary

        for event in build_stack(stack, BuildRequestSpec(mode=mode, jobs=os.cpu_count() or 2), engine):
            if isinstance(event, BuildSummary) and event.failed:
                failed = [r.name for r in event.images if r.status in ("failed", "blocked")]
                raise OperationError(f"build failed for {', '.join(failed)}; nothing was started",
                                     hint=f"`infra build --mode {mode}` shows the build's log")
            yield event
    check_native_env(stack, mode, service_images(stack, mode), engine)
    yield from ensure_local_env_image(stack, mode, engine)       # type: ignore[arg-type]
    warning = prepare_workspace(stack)
    if warning:
        yield f"warning: {warning}"
    compose = Compose(engine, rendered.compose_file)
    try:
        compose.up(scales=scales, wait_timeout=UP_TIMEOUT_S)
    except BaseException:
        compose.down()          # Ctrl-C or a failed start: leave nothing half-started
        raise
    yield compose.ps()


def _compose_services(stack: Stack, mode: str) -> list[str]:
    from infra.render.compose import compose_stages

    return compose_stages(stack, mode)  # type: ignore[arg-type]


def stack_down(stack: Stack, mode: str, volumes: bool = False, engine: EngineAPI | None = None) -> int:
    """Stop and remove the mode's services and anything else carrying the project's label."""
    from infra.engine.compose import Compose, remove_labelled_containers

    engine = engine or Engine()
    rendered = render_to_disk(stack, mode)
    Compose(engine, rendered.compose_file).down(volumes=volumes)
    return remove_labelled_containers(engine, stack.spec.project)


def stack_ps(stack: Stack, mode: str, engine: EngineAPI | None = None) -> list:
    from infra.engine.compose import Compose

    return Compose(engine or Engine(), render_to_disk(stack, mode).compose_file).ps()


def stack_logs(stack: Stack, mode: str, services: list[str], follow: bool, tail: str | None,
               engine: EngineAPI | None = None) -> Iterator[str]:
    from infra.engine.compose import Compose

    known = set(_compose_services(stack, mode)) | ({"serve"} if serve_image(stack, mode) else set())
    for name in services:
        if name not in known:
            raise BadInputError(f"no service '{name}' in {mode} (services: {', '.join(sorted(known))})")
    yield from Compose(engine or Engine(), render_to_disk(stack, mode).compose_file).logs(services, follow, tail)
