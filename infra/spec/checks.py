"""Checks that span the spec's files: references, cycles, modes, files on disk."""

from __future__ import annotations

import difflib
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

from infra.spec.models import ImageSpec, ProjectSpec

# The Python that each Debian suite ships, for bases made with debootstrap.
SUITE_PYTHON = {"bullseye": "3.9", "bookworm": "3.11", "trixie": "3.13", "forky": "3.13"}


def _unknown(kind: str, name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    tail = f"; did you mean '{close[0]}'?" if close else ""
    return f"unknown {kind} '{name}' (known: {', '.join(sorted(known)) or 'none'}){tail}"


def check_stack(spec: ProjectSpec, images: dict[str, ImageSpec], spec_file: str,
                image_files: dict[str, str], root: Path) -> list[str]:
    problems: list[str] = []
    problems += _check_modes(spec, spec_file)
    problems += _check_images(spec, images, image_files, root)
    problems += _check_stages(spec, images, spec_file)
    problems += _check_serve(spec, images, spec_file)
    return problems


def _check_serve(spec: ProjectSpec, images: dict[str, ImageSpec], spec_file: str) -> list[str]:
    """The image `infra serve` runs in, when the stack runs it: one that carries infra."""
    name = spec.serve.image
    if not spec.serve.enabled:
        return []
    if "serve" in spec.stages:
        return [f"{spec_file}: stages.serve: the name is taken by the service 'serve' (serve.enabled); "
                "rename the stage"]
    if name not in images:
        return [f"{spec_file}: serve.image: {_unknown('image', name, list(images))}"]
    if not images[name].infra:
        return [f"{spec_file}: serve.image: '{name}' does not carry infra (set 'infra: true' in its image.yaml)"]
    return []


def _check_modes(spec: ProjectSpec, spec_file: str) -> list[str]:
    problems = []
    for mode, mode_spec in spec.modes.items():
        if mode_spec.base not in spec.bases:
            problems.append(f"{spec_file}: modes.{mode}.base: {_unknown('base', mode_spec.base, list(spec.bases))}")
        if mode_spec.gpu and mode != "docker-gpu":
            problems.append(f"{spec_file}: modes.{mode}.gpu: only docker-gpu hands the GPU to containers")
    for name, base in spec.bases.items():
        if base.debootstrap is not None:
            shipped = SUITE_PYTHON.get(base.debootstrap.suite)
            if shipped is not None and shipped != spec.python:
                problems.append(f"{spec_file}: bases.{name}.debootstrap.suite: Debian {base.debootstrap.suite} ships "
                                f"Python {shipped}, but python is {spec.python}")
    return problems


def _check_images(spec: ProjectSpec, images: dict[str, ImageSpec], files: dict[str, str], root: Path) -> list[str]:
    problems = []
    for name, image in sorted(images.items()):
        where = files[name]
        folder = root / spec.images_dir / name
        if image.parent is not None:
            if image.parent == name:
                problems.append(f"{where}: parent: an image cannot be its own parent")
            elif image.parent not in images:
                problems.append(f"{where}: parent: {_unknown('image', image.parent, [n for n in images if n != name])}")
            else:
                parent = images[image.parent]
                for i, mode in enumerate(image.modes):
                    if mode not in parent.modes:
                        problems.append(f"{where}: modes[{i}]: '{mode}' needs parent '{image.parent}' in that mode, "
                                        f"but it is built only for {', '.join(parent.modes)}")
        for i, mode in enumerate(image.modes):
            if mode not in spec.modes:
                problems.append(f"{where}: modes[{i}]: mode '{mode}' is not defined in infra.yaml "
                                f"(defined: {', '.join(spec.modes)})")
            elif image.gpu_only and not spec.modes[mode].gpu:
                problems.append(f"{where}: modes[{i}]: a gpu_only image cannot be built in {mode}, which has no GPU")
        for i, rel in enumerate(image.files):
            if not (folder / rel).is_file():
                problems.append(f"{where}: files[{i}]: '{rel}' not found in {spec.images_dir}/{name}/")
        if image.template is not None and not (folder / image.template).is_file():
            problems.append(f"{where}: template: '{image.template}' not found in {spec.images_dir}/{name}/")

    graph = {n: {i.parent} for n, i in images.items() if i.parent in images and i.parent != n}
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as exc:
        cycle = exc.args[1]
        first = cycle[0]
        chain = " -> ".join(reversed(cycle))
        problems.append(f"{files[first]}: parent: dependency cycle {chain}")
    return problems


def _check_stages(spec: ProjectSpec, images: dict[str, ImageSpec], spec_file: str) -> list[str]:
    problems = []
    for name, stage in spec.stages.items():
        if stage.image not in images:
            problems.append(f"{spec_file}: stages.{name}.image: {_unknown('image', stage.image, list(images))}")
        else:
            image = images[stage.image]
            for mode in spec.modes:
                if mode != "native" and mode not in image.modes:
                    problems.append(f"{spec_file}: stages.{name}.image: '{stage.image}' is not built in mode {mode} "
                                    f"(its modes: {', '.join(image.modes)})")
        for i, before in enumerate(stage.after):
            if before == name:
                problems.append(f"{spec_file}: stages.{name}.after[{i}]: a stage cannot wait for itself")
            elif before not in spec.stages:
                problems.append(f"{spec_file}: stages.{name}.after[{i}]: "
                                f"{_unknown('stage', before, [s for s in spec.stages if s != name])}")
    graph = {n: {a for a in s.after if a in spec.stages and a != n} for n, s in spec.stages.items()}
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as exc:
        cycle = exc.args[1]
        problems.append(f"{spec_file}: stages.{cycle[0]}.after: dependency cycle {' -> '.join(reversed(cycle))}")
    return problems
