"""Does the lock still describe the spec? One image's entry, checked against what the image lists now.

An entry matches when its ``inputs`` equal the fingerprint of the image as the spec has it:
the base its mode starts from, the Python, the parent's fingerprint and its own apt and pip
lines. An image added since the lock was made, or one whose packages (or whose parent's or
base's) changed, is refused with one line that says to run `infra lock` (exit 2).
"""

from __future__ import annotations

from infra.errors import BadInputError
from infra.spec.load import Stack
from infra.spec.lock import ImageLock, fingerprint, lock_path
from infra.spec.modes import Mode


def locked_packages(stack: Stack, name: str) -> tuple[list[str], list[str]]:
    """The apt and pip lines a lock resolves for image ``name``: its apt list, and the pip packages images
    install under every torch policy (``torch`` and ``torch_pip`` come from the mode's torch index and are
    not locked)."""
    image = stack.images[name]
    return list(image.apt), list(image.pip)


def image_inputs(stack: Stack, mode: Mode, name: str) -> str:
    """The fingerprint image ``name`` has in ``mode`` (its base, Python, parent chain and package lines)."""
    chain = [name]
    while (parent := stack.images[chain[-1]].parent) is not None:
        chain.append(parent)
    value: str | None = None
    base_ref = stack.base_ref(mode)
    for image in reversed(chain):
        apt, pip = locked_packages(stack, image)
        value = fingerprint(base_ref, stack.spec.python, value, apt, pip)
    assert value is not None
    return value


def locked_image(stack: Stack, mode: Mode, name: str) -> ImageLock | None:
    """The lock's entry for image ``name`` in ``mode``; None without a lock; BadInputError when the lock does
    not match the spec."""
    lock = stack.lock
    if lock is None:
        return None
    shown = lock_path(stack.spec_path).name
    base = stack.spec.modes[mode].base
    entries = lock.bases.get(base)
    entry = entries.images.get(name) if entries is not None else None
    if entry is None:
        raise BadInputError(f"{shown} has no entry for image '{name}' on base '{base}' ({mode}): "
                            f"the lock is older than the spec; run `infra lock` to refresh it")
    if entry.inputs != image_inputs(stack, mode, name):
        raise BadInputError(f"{shown} does not match {stack.spec.images_dir}/{name}/image.yaml (its packages, its "
                            f"parent's or its base changed since the lock was made); run `infra lock` to refresh it")
    return entry
