"""A small Dockerfile reader for tests: instructions with their continuation lines joined."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Instruction:
    keyword: str
    rest: str


def instructions(text: str) -> list[Instruction]:
    out: list[Instruction] = []
    pending = ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, rest = full.partition(" ")
        out.append(Instruction(keyword.upper(), re.sub(r"\s+", " ", rest).strip()))
    assert not pending, "a continuation line runs off the end of the file"
    return out


def run_flags_and_command(rest: str) -> tuple[list[str], str]:
    """The --mount flags of a RUN and the shell command after them."""
    flags = []
    words = rest.split(" ")
    while words and words[0].startswith("--mount="):
        flags.append(words.pop(0).removeprefix("--mount="))
    return flags, " ".join(words)
