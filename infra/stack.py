"""The running stack: `infra up`, `down`, `ps`, `logs`, and `deploy --target swarm`.

`up` renders the mode, makes sure every image the services use is built and
current (building them with --build), checks that each image can load the
native environment it will mount, hands the workspace to the images' user,
and starts the services with compose, waiting until they are healthy. A
failure or Ctrl-C on the way takes the project down again, so nothing is left
half-started.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from infra.config import Stack
from infra.engine import Engine
from infra.errors import BadInputError, OperationError
from infra.plan import HASH_LABEL, plan_images, targets_for_mode

UP_TIMEOUT_S = 120


@dataclass(frozen=True)
class Rendered:
    mode: str
    out: Path

    @property
    def compose_file(self) -> Path:
        from infra.render import paths

        return self.out / paths.COMPOSE_FILE

    @property
    def stack_file(self) -> Path:
        from infra.render import paths

        return self.out / paths.SWARM_FILE


def render_to_disk(stack: Stack, mode: str) -> Rendered:
    from infra.render import default_layout, render_mode
    from infra.render.write import write_files

    layout = default_layout(stack, mode)  # type: ignore[arg-type]
    out = Path(os.path.normpath(stack.workdir.resolve() / layout.from_project))
    write_files(out, render_mode(stack, mode, layout))
    return Rendered(mode, out)


def service_images(stack: Stack, mode: str) -> list[str]:
    """Images that the mode's services run (the stages whose image is built in the mode)."""
    from infra.render.compose import compose_stages

    return sorted({stack.spec.stages[s].image for s in compose_stages(stack, mode)})  # type: ignore[arg-type]


def stale_images(stack: Stack, mode: str, rendered: Rendered, engine: Engine) -> list[str]:
    """Images of the mode that are missing or older than the spec (their content hash differs)."""
    targets = targets_for_mode(stack, mode, rendered.out)
    known = engine.inspect_images([t.ref for t in targets.values()])
    plan = plan_images(targets, lambda ref: known[ref].labels.get(HASH_LABEL) if known.get(ref) else None)
    return [n for n in plan.order if not plan.images[n].up_to_date]


def check_native_env(stack: Stack, images: list[str], engine: Engine) -> None:
    """Under the mounted policy: the env exists and every service image can load it."""
    from infra.nativeenv import check_mount, inspect_env

    if stack.spec.native_env.torch != "mounted" or not images:
        return
    env = inspect_env(stack.workdir / stack.spec.native_env.path)
    check_mount(engine, env, [stack.image_ref(n) for n in images], stack.workdir / ".infra" / "cache" / "image-facts")


def prepare_workspace(stack: Stack) -> str | None:
    """The data folders the services mount, owned by the images' user; a warning when that is not possible."""
    from infra.bootstrap import make_workspace
    from infra.render.paths import UID
    from infra.workspace import Workspace

    check = make_workspace(Workspace(stack.workdir), UID, UID)
    if check.status == "fail":
        raise OperationError(check.detail, hint=check.hint)
    return check.detail if check.status == "warn" else None


def stack_up(stack: Stack, mode: str, build: bool = False, scales: dict[str, int] | None = None,
             engine: Engine | None = None) -> Iterator[object]:
    """Yields progress (str and build events); the last item is the list of ServiceState."""
    from infra.engine.compose import Compose

    engine = engine or Engine()
    if mode == "native" and not service_images(stack, mode):
        raise BadInputError("native mode runs no services", hint="use docker-cpu or docker-gpu with `infra up`")
    services = set(_compose_services(stack, mode))
    for name in scales or {}:
        if name not in services:
            raise BadInputError(f"--scale: no service '{name}' in {mode} (services: {', '.join(sorted(services))})")
    rendered = render_to_disk(stack, mode)
    stale = stale_images(stack, mode, rendered, engine)
    if stale and not build:
        raise BadInputError(f"images not built or out of date for {mode}: {', '.join(stale)}",
                            hint=f"`infra build --mode {mode}`, or `infra up --mode {mode} --build`")
    if stale:
        from infra.build import BuildRequestSpec, build_stack
        from infra.buildreport import BuildSummary

        for event in build_stack(stack, BuildRequestSpec(mode=mode, jobs=os.cpu_count() or 2), engine):
            if isinstance(event, BuildSummary) and event.failed:
                failed = [r.name for r in event.images if r.status in ("failed", "blocked")]
                raise OperationError(f"build failed for {', '.join(failed)}; nothing was started",
                                     hint=f"`infra build --mode {mode}` shows the build's log")
            yield event
    check_native_env(stack, service_images(stack, mode), engine)
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


def stack_down(stack: Stack, mode: str, volumes: bool = False, engine: Engine | None = None) -> int:
    """Stop and remove the mode's services and anything else carrying the project's label."""
    from infra.engine.compose import Compose, remove_labelled_containers

    engine = engine or Engine()
    rendered = render_to_disk(stack, mode)
    Compose(engine, rendered.compose_file).down(volumes=volumes)
    return remove_labelled_containers(engine, stack.spec.project)


def stack_ps(stack: Stack, mode: str, engine: Engine | None = None) -> list:
    from infra.engine.compose import Compose

    return Compose(engine or Engine(), render_to_disk(stack, mode).compose_file).ps()


def stack_logs(stack: Stack, mode: str, services: list[str], follow: bool, tail: str | None,
               engine: Engine | None = None) -> Iterator[str]:
    from infra.engine.compose import Compose

    known = set(_compose_services(stack, mode))
    for name in services:
        if name not in known:
            raise BadInputError(f"no service '{name}' in {mode} (services: {', '.join(sorted(known))})")
    yield from Compose(engine or Engine(), render_to_disk(stack, mode).compose_file).logs(services, follow, tail)


# --- swarm -----------------------------------------------------------------------------------------


def swarm_stack_name(stack: Stack, mode: str) -> str:
    return f"{stack.spec.project}-{mode}"


def deploy_swarm(stack: Stack, mode: str, engine: Engine | None = None) -> Iterator[str]:
    """Deploy the mode's swarm stack file after checking the swarm, the images and the torch policy."""
    from infra.engine.compose import stack_deploy, swarm_nodes, swarm_state

    engine = engine or Engine()
    state, manager = swarm_state(engine)
    if state != "active":
        raise BadInputError(f"this engine is not part of a swarm (state: {state})",
                            hint="`docker swarm init` makes this machine a one-node swarm")
    if not manager:
        raise BadInputError("this node is not a swarm manager; deploy from a manager node")
    rendered = render_to_disk(stack, mode)
    images = [stack.image_ref(n, stack.spec.registry) for n in service_images(stack, mode)]
    nodes = swarm_nodes(engine)
    if stack.spec.registry is None:
        if nodes > 1:
            raise BadInputError(f"a swarm of {nodes} nodes pulls images from a registry, and infra.yaml sets none",
                                hint="set 'registry' in infra.yaml and `infra build --push`")
        missing = [ref for ref, info in engine.inspect_images(images).items() if info is None]
        if missing:
            raise BadInputError(f"images not built: {', '.join(missing)}", hint=f"`infra build --mode {mode}`")
    else:
        missing = [ref for ref in images if not engine.remote_image_exists(ref)]
        if missing:
            raise BadInputError(f"not in the registry the nodes pull from: {', '.join(missing)}",
                                hint=f"`infra build --mode {mode} --push`")
    if stack.spec.native_env.torch == "mounted":
        env_path = (stack.workdir / stack.spec.native_env.path).resolve()
        yield (f"note: torch is mounted from {env_path}; every node that runs an ML stage needs the same "
               f"environment at that path (or set native_env.torch: baked)")
        if nodes > 1:
            yield f"note: {nodes} nodes in the swarm: make sure each has {env_path}"
        check_native_env(stack, service_images(stack, mode), engine)
    prepare_workspace(stack)
    name = swarm_stack_name(stack, mode)
    stack_deploy(engine, name, rendered.stack_file, swarm_variables(stack))
    yield f"deployed stack {name} from {rendered.stack_file}"


def swarm_variables(stack: Stack) -> dict[str, str]:
    """Where this node keeps what the stack file mounts (the file leaves them to variables)."""
    from infra.render.swarm import DATA_VARIABLE, NATIVE_SITE_VARIABLE

    site = (stack.workdir / stack.spec.native_env.path / "lib" / f"python{stack.spec.python}" / "site-packages")
    return {DATA_VARIABLE: str(stack.workdir.resolve()), NATIVE_SITE_VARIABLE: str(site.resolve())}


def remove_swarm(stack: Stack, mode: str, engine: Engine | None = None) -> str:
    from infra.engine.compose import stack_remove, swarm_state

    engine = engine or Engine()
    state, _ = swarm_state(engine)
    if state != "active":
        raise BadInputError(f"this engine is not part of a swarm (state: {state})")
    name = swarm_stack_name(stack, mode)
    stack_remove(engine, name)
    return name
