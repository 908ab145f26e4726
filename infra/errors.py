"""The InfraError family: what went wrong, how to fix it, and the exit code.

Every failure a user can cause or meet is one of these. The CLI's single
handler prints ``message`` (one line per problem) and ``hint``, and exits with
``exit_code``: 2 for bad input, 1 for an operation that failed.
"""

from __future__ import annotations

BAD_INPUT = 2
FAILED = 1


class InfraError(Exception):
    """Base class: a message for the user, an optional hint, an exit code."""

    exit_code = FAILED

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    @property
    def lines(self) -> list[str]:
        return [self.message]


class BadInputError(InfraError):
    """The user's input (arguments, spec, files) is wrong: exit 2."""

    exit_code = BAD_INPUT


class ConfigError(BadInputError):
    """One or more problems in the spec, each naming a file and a dotted path."""

    def __init__(self, problems: list[str], hint: str | None = None) -> None:
        super().__init__("\n".join(problems), hint)
        self.problems = problems

    @property
    def lines(self) -> list[str]:
        return list(self.problems)


class OperationError(InfraError):
    """An operation failed although the input was fine: exit 1."""


class EngineError(OperationError):
    """A Docker command failed: keeps the command and the tail of its stderr."""

    def __init__(self, message: str, command: list[str] | None = None,
                 stderr: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.command = command or []
        self.stderr_tail = "\n".join(stderr.strip().splitlines()[-20:])


class EngineUnavailableError(EngineError):
    """No Docker engine answers."""


class Terminated(BaseException):
    """The process was asked to stop (SIGTERM: `timeout`, CI runners, systemd). Like Ctrl-C, it unwinds every
    operation so each can stop what it started and leave its state resumable; the CLI then exits 143."""

    exit_code = 143
