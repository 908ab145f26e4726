"""Compose v2 and swarm stacks through python-on-whales, failures as EngineError.

These take any :class:`~infra.engine.protocol.EngineAPI` so that core code keeps one type, but
compose has no in-memory double: these need the real Engine (swarm: infra/engine/swarm.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.engine.client import Engine
from infra.engine.protocol import EngineAPI
from infra.engine.translate import translate_errors


@dataclass(frozen=True)
class ServiceState:
    service: str
    container: str
    state: str          # running, exited, ...
    health: str         # healthy, starting, unhealthy, or "" without a healthcheck
    image: str


class Compose:
    """One rendered compose file, as its own project."""

    def __init__(self, engine: EngineAPI, file: Path) -> None:
        from python_on_whales import DockerClient

        self.file = file
        self.client: Any = DockerClient(compose_files=[str(file)])
        self.engine = engine

    def up(self, scales: dict[str, int] | None = None, wait_timeout: int = 120) -> None:
        with translate_errors(f"docker compose -f {self.file} up"):
            self.client.compose.up(detach=True, wait=True, wait_timeout=wait_timeout, scales=scales or {},
                                   remove_orphans=True, quiet=True, pull="never")

    def down(self, volumes: bool = False) -> None:
        with translate_errors(f"docker compose -f {self.file} down"):
            self.client.compose.down(remove_orphans=True, volumes=volumes, quiet=True)

    def ps(self) -> list[ServiceState]:
        with translate_errors(f"docker compose -f {self.file} ps"):
            containers = self.client.compose.ps(all=True)
        states = []
        for c in containers:
            health = c.state.health.status if c.state.health is not None else ""
            states.append(ServiceState(service=c.config.labels.get("com.docker.compose.service", ""),
                                       container=c.name, state=str(c.state.status), health=str(health or ""),
                                       image=str(c.config.image)))
        return sorted(states, key=lambda s: (s.service, s.container))

    def logs(self, services: list[str], follow: bool, tail: str | None = None) -> Iterator[str]:
        with translate_errors(f"docker compose -f {self.file} logs"):
            for _source, line in self.client.compose.logs(services=services, follow=follow, tail=tail, stream=True):
                yield line.decode(errors="replace").rstrip("\n")


def _docker(engine: EngineAPI) -> Any:
    """The python-on-whales client of a real engine."""
    if not isinstance(engine, Engine):
        raise TypeError(f"compose and swarm need the Docker engine, not {type(engine).__name__}")
    return engine.docker


def remove_labelled_containers(engine: EngineAPI, project: str) -> int:
    """Remove every container carrying io.infra.project=<project> (what compose down may not know of)."""
    with translate_errors("docker container rm"):
        docker = _docker(engine)
        found = docker.container.list(all=True, filters={"label": f"io.infra.project={project}"})
        if found:
            docker.container.remove(found, force=True)
    return len(found)
