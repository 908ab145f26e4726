"""Is a mode ready to run? Its files rendered, its images built and current, the native env loadable in each.

Shared by `infra up`, `infra deploy` and the container runner of `infra job run`,
so all three refuse the same things with the same words.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from infra.build.plan import HASH_LABEL, plan_images, targets_for_mode
from infra.engine import Engine, EngineAPI
from infra.errors import OperationError
from infra.spec import Stack


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


def stale_images(stack: Stack, mode: str, rendered: Rendered, engine: EngineAPI | None = None,
                 needed: list[str] | None = None) -> list[str]:
    """Images of the mode that are missing or older than the spec (their content hash differs).

    With a registry in the spec, an image that the registry holds by content hash is not stale: those
    that will run (``needed``, by default the services' images) are pulled by digest and tagged here,
    the others (parents) are not needed on this machine at all."""
    engine = engine or Engine()
    targets = targets_for_mode(stack, mode, rendered.out)
    known = engine.inspect_images([t.ref for t in targets.values()])
    plan = plan_images(targets, lambda ref: known[ref].labels.get(HASH_LABEL) if known.get(ref) else None)
    stale = [n for n in plan.order if not plan.images[n].up_to_date]
    registry = stack.spec.registry
    if not stale or not registry:
        return stale
    from infra.build.remote import RemoteStore

    store = RemoteStore({n: stack.image_ref(n, mode, registry) for n in stale})   # type: ignore[arg-type]
    found = store.lookup({n: plan.images[n].content_hash for n in stale})
    for name in sorted(set(found) & set(needed if needed is not None else service_images(stack, mode))):
        engine.pull(found[name].ref)
        engine.tag(found[name].ref, plan.images[name].target.ref)
    return [n for n in stale if n not in found]


def check_native_env(stack: Stack, mode: str, images: list[str], engine: EngineAPI | None = None) -> None:
    """Under the mounted policy: the env exists, every service image of ``mode`` can load it and, in a GPU
    mode, every GPU stage's image finds the CUDA libraries its packages load (infra/stack/libclosure.py)."""
    from infra.stack.libclosure import check_gpu_libraries
    from infra.stack.nativeenv import check_mount, inspect_env

    if stack.spec.native_env.torch != "mounted" or not images:
        return
    engine = engine or Engine()
    env = inspect_env(stack.workdir / stack.spec.native_env.path)
    check_mount(engine, env, [stack.image_ref(n, mode) for n in images],  # type: ignore[arg-type]
                stack.workdir / ".infra" / "cache" / "image-facts")
    check_gpu_libraries(stack, mode, images, engine, env)


def prepare_workspace(stack: Stack) -> str | None:
    """The data folders the services mount, owned by the images' user; a warning when that is not possible."""
    from infra.models.bootstrap import make_workspace
    from infra.render.paths import UID
    from infra.workspace import Workspace

    check = make_workspace(Workspace(stack.workdir), UID, UID)
    if check.status == "fail":
        raise OperationError(check.detail, hint=check.hint)
    return check.detail if check.status == "warn" else None


