"""Offline base images: a Debian root made with debootstrap, imported into Docker.

For machines that cannot pull from a registry (air-gapped sites, this project's
CI): the spec's `bases.<name>.debootstrap` says which suite and packages; the
result is tagged `Stack.base_ref(mode)`, a tag that changes with the recipe, so
an existing image is reused and a changed recipe makes a new one.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from infra.spec import Stack
from infra.spec.models import Mode
from infra.engine import Engine
from infra.engine.client import ImageInfo
from infra.errors import BadInputError, OperationError

DEFAULT_MIRROR = "http://deb.debian.org/debian"
LOG_TAIL = 40


@dataclass(frozen=True)
class BaseResult:
    name: str
    ref: str
    status: str            # "built", "up to date", "registry"
    seconds: float = 0.0
    size_bytes: int = 0


def host_mirror() -> str:
    """The Debian archive this machine's own apt uses (on Debian), else Debian's own archive."""
    try:
        os_release = Path("/etc/os-release").read_text()
    except OSError:
        os_release = ""
    if not re.search(r"^ID=\"?debian\"?$", os_release, re.M):
        return DEFAULT_MIRROR
    for source in (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")):
        try:
            text = source.read_text()
        except OSError:
            continue
        match = re.search(r"^URIs:\s*(\S+)", text, re.M) or re.search(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)", text, re.M)
        if match and "security" not in match.group(1):
            return match.group(1)
    return DEFAULT_MIRROR


def ensure_bases(stack: Stack, modes: list[Mode], engine: Engine | None = None, force: bool = False,
                 known: dict[str, ImageInfo | None] | None = None) -> Iterator[BaseResult | str]:
    """Make sure every base the modes need exists locally. Yields progress lines and one result per base.

    ``known`` holds images the caller has just inspected, to spare a docker call."""
    engine = engine or Engine()
    known = known or {}
    seen: set[str] = set()
    for mode in modes:
        name = stack.spec.modes[mode].base
        if name in seen:
            continue
        seen.add(name)
        base = stack.spec.bases[name]
        ref = stack.base_ref(mode)
        if base.debootstrap is None:
            yield BaseResult(name, ref, "registry")
            continue
        existing = known[ref] if ref in known else engine.inspect_images([ref])[ref]
        if not force and existing is not None:
            yield BaseResult(name, ref, "up to date", size_bytes=existing.size)
            continue
        yield (f"building offline base {ref} with debootstrap ({base.debootstrap.suite}, "
               f"{len(base.debootstrap.packages)} packages); this takes a minute or two")
        start = time.monotonic()
        _build(name, ref, base.debootstrap, stack.spec.python, engine)
        yield BaseResult(name, ref, "built", time.monotonic() - start, engine.image_size(ref))


def _build(name: str, ref: str, recipe, python: str, engine: Engine) -> None:  # noqa: ANN001 - DebootstrapBase
    debootstrap = shutil.which("debootstrap") or next(
        (p for p in ("/usr/sbin/debootstrap", "/sbin/debootstrap") if os.access(p, os.X_OK)), None)
    if debootstrap is None:
        raise BadInputError("debootstrap is not installed, so the offline base cannot be made",
                            hint="apt-get install debootstrap (or set the base to a registry image in infra.yaml)")
    if os.geteuid() != 0:
        raise BadInputError("making an offline base with debootstrap needs root",
                            hint="run `sudo infra base`, or use a registry base image in infra.yaml")
    mirror = recipe.mirror or host_mirror()
    with tempfile.TemporaryDirectory(prefix="infra-base-") as tmp:
        root = Path(tmp) / "root"
        log = Path(tmp) / "debootstrap.log"
        cmd = [debootstrap, "--variant=minbase", f"--include={','.join(recipe.packages)}",
               recipe.suite, str(root), mirror]
        with log.open("w") as out:
            proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-LOG_TAIL:])
            raise OperationError(f"debootstrap of {recipe.suite} from {mirror} failed (exit {proc.returncode})",
                                 hint=f"last lines of its log:\n{tail}")
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "var/log"):
            for entry in (root / junk).glob("*"):
                if entry.is_file():
                    entry.unlink()
        archive = Path(tmp) / "root.tar"
        subprocess.run(["tar", "-C", str(root), "--numeric-owner", "-cf", str(archive), "."], check=True)
        shutil.rmtree(root)
        changes = [
            "ENV LANG=C.UTF-8",
            'CMD ["/bin/bash"]',
            f"LABEL io.infra.base={name} io.infra.base.suite={recipe.suite} io.infra.python={python}",
            f'LABEL io.infra.base.packages="{" ".join(recipe.packages)}"',
        ]
        engine.import_rootfs(archive, ref, changes)
