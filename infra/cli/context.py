"""What every command shares: the global options, the spec they load, the checked --mode."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from infra.spec import Stack
    from infra.spec.modes import Mode


@dataclass
class State:
    spec_file: Optional[Path] = None
    debug: bool = False


state = State()


def load() -> Stack:
    """The validated stack for the current command."""
    from infra.spec import load_stack

    return load_stack(state.spec_file)


def checked_modes(stack: Stack, modes: Optional[list[str]]) -> list[Mode]:
    """--mode values the spec defines (duplicates dropped); every mode of the spec when none is given."""
    return stack.check_modes(modes)


def checked_mode(stack: Stack, mode: str) -> Mode:
    return stack.check_mode(mode)


def optional_mode(mode: Optional[str]) -> Optional[Mode]:
    """A --mode that may be left out, checked before the spec loads (the spec checks it again)."""
    from infra.spec.modes import check_mode

    return None if mode is None else check_mode(mode)
