"""Render every file of a mode: Dockerfiles, compose.yaml, docker-bake.json, stack.yaml (the user's compose/
overlays merged into the last two).

``render_mode`` is pure: a Stack, a mode and a Layout in, a mapping of
relative file names to text out. Writing is ``infra.render.write``'s job.
"""

from __future__ import annotations

from pathlib import Path

from infra.spec import Stack
from infra.spec.models import MODES, Mode
from infra.errors import ConfigError
from infra.render import paths
from infra.render.bake import render_bake
from infra.render.compose import render_compose
from infra.render.dockerfile import render_dockerfile
from infra.render.environment import DOCKERFILE_TEMPLATE, MACROS_TEMPLATE
from infra.render.overlay import apply_overlays
from infra.render.swarm import render_swarm_stack


def check_mode(stack: Stack, mode: str) -> Mode:
    """``mode`` as a Mode, or BadInputError: unknown, not in the spec, or images that cannot be built in it.

    Loading the spec already rejects these; the checks are repeated here for
    stacks built in code, so render never produces a file a build would reject.
    """
    mode = stack.check_mode(mode)
    problems = []
    folder = stack.spec.images_dir
    reserved = paths.RESERVED_NAMES | {"default", *MODES}
    for name in stack.images_for_mode(mode):  # type: ignore[arg-type]
        image = stack.images[name]
        where = f"{folder}/{name}/image.yaml"
        if name in reserved:
            problems.append(f"{where}: the image name '{name}' is reserved in rendered files "
                            f"(reserved: {', '.join(sorted(reserved))}); rename the folder")
        if image.parent is not None and mode not in stack.images[image.parent].modes:
            problems.append(f"{where}: parent: '{image.parent}' is not built in {mode}")
        if image.gpu_only and not stack.spec.modes[mode].gpu:  # type: ignore[index]
            problems.append(f"{where}: gpu_only: cannot be built in {mode}, which has no GPU")
        if image.template in (DOCKERFILE_TEMPLATE, MACROS_TEMPLATE):
            problems.append(f"{where}: template: '{image.template}' would hide the shared template of that name; "
                            f"rename it (it can still extend \"{DOCKERFILE_TEMPLATE}\")")
    if problems:
        raise ConfigError(problems)
    return mode  # type: ignore[return-value]


def default_layout(stack: Stack, mode: Mode, out: Path | None = None) -> paths.Layout:
    """The layout for ``out`` (default: the spec's output_dir/<mode> under the project), with the NVIDIA
    library folders that the native environment holds (none when it does not exist)."""
    from dataclasses import replace

    from infra.resources import data_root, package_root

    project = stack.workdir.resolve()
    target = (out if out is not None else Path(stack.spec.output_dir) / mode)
    target = target if target.is_absolute() else project / target
    layout = paths.layout_for(project, Path(_normalise(target)), stack.images_dir.resolve(),
                              (data_root() / "stages").resolve(), package_root())
    if stack.spec.native_env.torch != "mounted":
        return layout
    # the GPU services' library path comes from what the native environment holds now
    return replace(layout, native_libs=paths.nvidia_library_dirs(project / paths.native_site_source(stack)))


def render_mode(stack: Stack, mode: str, layout: paths.Layout) -> dict[str, str]:
    """Every file of ``mode``: relative name -> text. Raises BadInputError/ConfigError, renders nothing partial."""
    checked = check_mode(stack, mode)
    files: dict[str, str] = {}
    dockerfiles = {name: render_dockerfile(stack, checked, name) for name in stack.images_for_mode(checked)}
    for name, text in dockerfiles.items():
        files[layout.dockerfile(name)] = text
    files[paths.BAKE_FILE] = render_bake(stack, checked, layout, dockerfiles)
    compose = render_compose(stack, checked, layout)
    swarm = render_swarm_stack(stack, checked, layout)
    # the user's compose/ overlays, merged over both (unchanged without any)
    files[paths.COMPOSE_FILE], files[paths.SWARM_FILE] = apply_overlays(stack, checked, layout, compose, swarm)
    return dict(sorted(files.items()))


def _normalise(path: Path) -> str:
    import os

    return os.path.normpath(path)
