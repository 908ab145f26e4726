"""One command in a throw-away container that may reach the network, its output captured.

`infra lock` asks apt inside a mode's base image what an image's apt line would install
(infra/build/lockapt.py): that needs the base's own apt, its sources and the archive, and
nothing else (no mounts, no secrets). Whether the command itself failed is the caller's to
judge; a container that docker could not start is an EngineError.
"""

from __future__ import annotations

from dataclasses import dataclass

from infra.engine.client import DOCKER_RUN_FAILED
from infra.engine.translate import failure, run_cli


@dataclass(frozen=True)
class Captured:
    code: int
    stdout: str
    stderr: str


def run_captured(ref: str, command: list[str], *, user: str | None = None, host: str | None = None) -> Captured:
    """``docker run --rm`` of ``command`` in ``ref`` on the default network, as ``user``; what it printed."""
    cli = ["docker", *(["--host", host] if host else [])]
    cmd = [*cli, "run", "--rm", "--entrypoint", command[0], *(["--user", user] if user else []), ref, *command[1:]]
    action = f"docker run {ref}"
    proc = run_cli(cmd, action)
    if proc.returncode == DOCKER_RUN_FAILED:
        raise failure(action, cmd, proc.returncode, proc.stderr)
    return Captured(proc.returncode, proc.stdout, proc.stderr)
