"""Compose v2 and swarm stacks through python-on-whales, failures as EngineError.

These take any :class:`~infra.engine.protocol.EngineAPI` so that core code keeps one type, but
compose and swarm have no in-memory double: all but :func:`swarm_state` need the real Engine.
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


def swarm_state(engine: EngineAPI) -> tuple[str, bool]:
    info = engine.info()
    return str(info.swarm.local_node_state), bool(info.swarm.control_available)


def swarm_nodes(engine: EngineAPI) -> int:
    with translate_errors("docker node ls"):
        return len(_docker(engine).node.list())


def stack_deploy(engine: EngineAPI, name: str, file: Path, variables: dict[str, str]) -> None:
    with translate_errors(f"docker stack deploy {name}"):
        _docker(engine).stack.deploy(name, compose_files=[str(file)], resolve_image="never", prune=True,
                                   variables=variables)


def stack_remove(engine: EngineAPI, name: str) -> None:
    with translate_errors(f"docker stack rm {name}"):
        _docker(engine).stack.remove(name)


def stack_services(engine: EngineAPI, name: str) -> list[dict[str, Any]]:
    """Each service of a swarm stack with its desired and running task counts."""
    with translate_errors(f"docker stack services {name}"):
        docker = _docker(engine)
        services = docker.stack.services(name)
        rows = []
        for svc in services:
            tasks = docker.service.ps(svc.id)
            running = sum(1 for t in tasks if str(t.status.state) == "running")
            mode = svc.spec.mode or {}
            replicas = (mode.get("Replicated") or {}).get("Replicas") if isinstance(mode, dict) else None
            rows.append({"service": svc.spec.name, "running": running, "desired": replicas,
                         "image": str(svc.spec.task_template.container_spec.image).split("@")[0]})
    return rows
