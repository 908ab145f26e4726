"""The one translation of a failed docker command into an EngineError.

Every way the adapter runs docker (python-on-whales, or the docker CLI as a
subprocess) ends here, so a user meets the same words for the same failure:
one line that says what failed and why, a hint, and no copy of docker's own
output when that line already says it (docker prints "Cannot connect to the
Docker daemon" once per image it was asked about).
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator, Sequence

from infra.errors import EngineError, EngineUnavailableError

# Docker's words for "no engine answers"; the last two only count on a line about the daemon or its socket.
SURE_MARKERS = ("Cannot connect to the Docker daemon", "Is the docker daemon running", "error during connect")
SOCKET_MARKERS = ("connection refused", "no such file or directory")
DOWN_MARKERS = SURE_MARKERS + SOCKET_MARKERS
START_HINT = "start the engine (scripts/setup-docker.sh sets one up and starts it), then check with `infra doctor`"
NO_CLIENT_HINT = "install the Docker CLI, or run scripts/setup-docker.sh"


def down_line(text: str) -> str | None:
    """The line of docker's output that says no engine answers, or None when it says something else.
    An "Error response from daemon" is an answer, whatever it says (a missing bind source, say)."""
    for line in text.splitlines():
        lowered = line.lower()
        if "error response from daemon" in lowered:
            continue
        if any(m.lower() in lowered for m in SURE_MARKERS) or (
                ("daemon" in lowered or "docker.sock" in lowered) and any(m in lowered for m in SOCKET_MARKERS)):
            return line.strip()
    return None


def engine_down(text: str) -> bool:
    """Whether docker's output says that no engine answers (rather than that a command failed)."""
    return down_line(text) is not None


def last_line(text: str) -> str:
    return next((line.strip() for line in reversed(text.strip().splitlines()) if line.strip()), "")


def unique_lines(text: str) -> str:
    """The lines of ``text`` without repeats, in order (docker repeats one error for every argument)."""
    return "\n".join(dict.fromkeys(line.rstrip() for line in text.splitlines() if line.strip()))


def client_missing(action: str) -> EngineUnavailableError:
    return EngineUnavailableError(f"{action}: the docker command-line client is not installed", hint=NO_CLIENT_HINT)


def failure(action: str, command: Sequence[str] | None, returncode: int | None, stderr: str) -> EngineError:
    """The EngineError for a docker command that failed: unavailable when no engine answers."""
    stderr = unique_lines(stderr or "")
    last = last_line(stderr)
    down = down_line(stderr)
    if down is not None:
        # The message carries docker's one line; keeping stderr would print it again under the hint.
        return EngineUnavailableError(f"{action}: no Docker engine answers ({down})",
                                      command=list(command or []), hint=START_HINT)
    return EngineError(f"{action} failed: {last or f'exit code {returncode}'}",
                       command=list(command or []), stderr=stderr)


@contextlib.contextmanager
def translate_errors(action: str) -> Iterator[None]:
    """Turn python-on-whales exceptions into EngineError with the command and stderr tail."""
    from python_on_whales.client_config import ClientNotFoundError
    from python_on_whales.exceptions import DockerException

    try:
        yield
    except ClientNotFoundError:
        raise client_missing(action) from None
    except DockerException as exc:
        raise failure(action, exc.docker_command, exc.return_code, exc.stderr or "") from None


def run_cli(command: list[str], action: str) -> subprocess.CompletedProcess[str]:
    """Run a docker CLI command, its output captured; a missing client is an EngineUnavailableError.
    The caller decides which exit codes are failures and hands those to :func:`failure`."""
    try:
        return subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    except FileNotFoundError:
        raise client_missing(action) from None
