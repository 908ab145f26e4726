"""Version numbers in tools' output: `ffmpeg version 5.1.9-0+deb12u1` -> (5, 1, 9)."""

from __future__ import annotations

import re

_VERSION = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")


def version_tuple(text: str) -> tuple[int, ...]:
    """The first dotted version in ``text`` as numbers; () when there is none."""
    match = _VERSION.search(text)
    return tuple(int(g) for g in match.groups() if g is not None) if match else ()
