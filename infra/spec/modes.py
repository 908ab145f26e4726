"""The three modes and the one check of a mode name that every command, render and the runners use."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, cast

from infra.errors import BadInputError, ConfigError

Mode = Literal["native", "docker-cpu", "docker-gpu"]
MODES: tuple[Mode, ...] = ("native", "docker-cpu", "docker-gpu")


def check_mode(mode: str, defined: Iterable[str] | None = None, spec_file: str = "infra.yaml",
               flag: str = "--mode") -> Mode:
    """``mode`` as a Mode: one of the three, and one the spec defines when ``defined`` is given; else exit 2."""
    if mode not in MODES:
        raise BadInputError(f"{flag} {mode!r} is not a mode ({', '.join(MODES)})")
    if defined is not None:
        known = list(defined)
        if mode not in known:
            raise ConfigError([f"{spec_file}: modes.{mode}: not defined (defined: {', '.join(known)})"],
                              hint=f"add modes.{mode} to {spec_file}, or use one of the defined modes")
    return cast(Mode, mode)
