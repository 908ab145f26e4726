"""`infra lock`: resolve exactly what every image's apt and pip lines install, and write infra.lock.

For each OS base the chosen modes start from: make sure the base exists (the offline one is
made by ``ensure_bases``), ask apt in one throw-away container of it what every image's apt
line adds over its parent (infra/build/lockapt.py), then ask the host's pip, image by image,
parents first, what every pip line adds for the base's Python and platform
(infra/build/lockpip.py). Each entry gets the fingerprint of what it was resolved from
(infra/spec/lockmatch.py). Entries of other modes' bases are kept; those of images or bases
the spec no longer has are dropped. The file is written in one rename, and only when it changed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from graphlib import TopologicalSorter
from pathlib import Path

from infra.build.base import ensure_bases
from infra.build.cabundle import find_ca_bundle
from infra.build.lockapt import AptAnswer, added_pins, ask_apt
from infra.build.lockpip import PipTarget, pip_environment, resolve
from infra.engine import Engine, EngineAPI
from infra.engine.capture import Captured, run_captured
from infra.errors import BadInputError, ConfigError
from infra.jobproto import write_text_atomic
from infra.spec import Stack
from infra.spec.lock import BaseLock, ImageLock, Lock, PipPin, dump_lock, lock_path, read_lock
from infra.spec.lockmatch import image_inputs, locked_packages
from infra.spec.modes import Mode

ROOT = "0:0"          # apt in the throw-away container runs as root


@dataclass(frozen=True)
class BaseSummary:
    base: str
    ref: str
    images: int
    apt: int          # packages pinned by apt, over all images of the base
    pip: int
    seconds: float


@dataclass
class LockResult:
    path: Path
    written: bool                                   # False: the file already held exactly this lock
    bases: list[BaseSummary] = field(default_factory=list)
    seconds: float = 0.0


def lock_stack(stack: Stack, modes: list[Mode] | None = None, engine: EngineAPI | None = None,
               run: Callable[[str, list[str]], Captured] | None = None) -> Iterator[str | LockResult]:
    """Resolve the images of ``modes`` (every mode of the spec by default) and write the lock; yields progress
    lines, then the LockResult."""
    start = time.monotonic()
    if stack.embedded:
        raise BadInputError("`infra lock` writes the lock beside the spec, and this is the built-in one",
                            hint="run it in a project with its own infra.yaml (or pass --file)")
    chosen = stack.check_modes(list(modes) if modes else None)
    engine = engine or Engine()
    run = run or partial(run_captured, user=ROOT)
    path = lock_path(stack.spec_path)
    for event in ensure_bases(stack, chosen, engine):
        if isinstance(event, str):
            yield event
    ca = find_ca_bundle(stack)
    env = pip_environment(_pip_config(stack))
    by_base: dict[str, Mode] = {}
    for mode in chosen:
        by_base.setdefault(stack.spec.modes[mode].base, mode)
    try:
        old = read_lock(path, path.name)
    except ConfigError:
        old = None
        yield f"{path.name} cannot be read; writing a new one"
    entries = _kept_entries(stack, old, set(by_base))
    summaries = []
    for base, mode in by_base.items():
        began = time.monotonic()
        names = _images_of_base(stack, [m for m in chosen if stack.spec.modes[m].base == base])
        ref = stack.base_ref(mode)
        yield f"{base}: asking apt in {ref} about {len(names)} image(s)"
        answer = _apt(stack, ref, names, run)
        # the base's own Python decides which wheels load; the spec's names it when the base cannot say
        facts = answer.facts
        target = PipTarget(python=facts.python or stack.spec.python, machine=facts.machine or "x86_64",
                           glibc=facts.glibc or (2, 17))
        apt_pins = added_pins(names, {n: stack.images[n].parent for n in names}, answer.installs)
        pip_pins: dict[str, dict[str, PipPin]] = {}
        for name in names:
            pip = locked_packages(stack, name)[1]
            if not pip:
                pip_pins[name] = {}
                continue
            yield f"{base}: resolving the pip packages of {name} for Python {target.python} ({target.machine})"
            held = _ancestor_pins(stack, name, pip_pins)
            pip_pins[name] = resolve(pip, held, target, env=env, cert=ca.path if ca else None,
                                     where=f"{stack.spec.images_dir}/{name}/image.yaml")
        images = {name: ImageLock(inputs=image_inputs(stack, mode, name), apt=apt_pins[name], pip=pip_pins[name])
                  for name in names}
        previous = entries.get(base)
        kept = previous.images if previous is not None and previous.ref == ref else {}
        entries[base] = BaseLock(ref=ref, images=dict(sorted({**kept, **images}.items())))
        summaries.append(BaseSummary(base, ref, len(names), sum(len(p) for p in apt_pins.values()),
                                     sum(len(p) for p in pip_pins.values()), time.monotonic() - began))
    lock = Lock(bases=dict(sorted(entries.items())))
    text = dump_lock(lock, path.name, stack.spec_path.name, stack.spec.images_dir)
    written = _read(path) != text
    if written:
        write_text_atomic(path, text)
    yield LockResult(path, written, summaries, time.monotonic() - start)


def _apt(stack: Stack, ref: str, names: list[str], run: Callable[[str, list[str]], Captured]) -> AptAnswer:
    """apt's answer for every image of ``names`` with its own apt line (the apt lines of its chain)."""
    simulate = {}
    for name in names:
        if not locked_packages(stack, name)[0]:
            continue
        packages: list[str] = []
        for image in reversed(_chain(stack, name)):
            packages += [p for p in locked_packages(stack, image)[0] if p not in packages]
        simulate[name] = packages
    where = {n: f"{stack.spec.images_dir}/{n}/image.yaml" for n in names}
    if not simulate:
        return AptAnswer(ask_apt(ref, {}, run, where).facts, {})
    return ask_apt(ref, simulate, run, where)


def _chain(stack: Stack, name: str) -> list[str]:
    chain = [name]
    while (parent := stack.images[chain[-1]].parent) is not None:
        chain.append(parent)
    return chain


def _ancestor_pins(stack: Stack, name: str, pins: dict[str, dict[str, PipPin]]) -> dict[str, str]:
    held: dict[str, str] = {}
    for ancestor in reversed(_chain(stack, name)[1:]):
        held.update({n: p.version for n, p in pins.get(ancestor, {}).items()})
    return held


def _images_of_base(stack: Stack, modes: list[Mode]) -> list[str]:
    """The images built on one base in any of ``modes``, parents first, ties by name."""
    names = {n for mode in modes for n in stack.images_for_mode(mode)}
    graph = {n: ({stack.images[n].parent} & names if stack.images[n].parent else set()) for n in sorted(names)}
    sorter = TopologicalSorter(graph)
    sorter.prepare()
    order: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        order += ready
        sorter.done(*ready)
    return order


def _kept_entries(stack: Stack, old: Lock | None, resolving: set[str]) -> dict[str, BaseLock]:
    """The old lock's entries that stay: bases the spec still has, images it still has."""
    if old is None:
        return {}
    kept = {}
    for base, entry in old.bases.items():
        if base not in stack.spec.bases:
            continue
        images = {n: e for n, e in entry.images.items() if n in stack.images}
        if images or base in resolving:
            kept[base] = BaseLock(ref=entry.ref, images=images)
    return kept


def _pip_config(stack: Stack) -> Path | None:
    value = stack.spec.secrets.pip_config
    if not value:
        return None
    path = Path(value) if Path(value).is_absolute() else stack.workdir / value
    if not path.is_file():
        raise BadInputError(f"secrets.pip_config: '{value}' not found", hint="point it (or INFRA_PIP_CONFIG) at a file")
    return path


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (FileNotFoundError, UnicodeDecodeError):
        return None

