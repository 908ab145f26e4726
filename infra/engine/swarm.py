"""Swarm through python-on-whales: the swarm's state, its nodes, stacks and their tasks, failures as EngineError.

A swarm has no in-memory double: all but :func:`swarm_state` need the real Engine.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from infra.engine.compose import _docker
from infra.engine.protocol import EngineAPI
from infra.engine.translate import translate_errors


@dataclass(frozen=True)
class NodeInfo:
    id: str
    hostname: str
    state: str                   # ready, down, unknown
    availability: str            # active, pause, drain
    manager: bool
    labels: dict[str, str] = field(default_factory=dict)
    memory: int = 0              # bytes
    generic: tuple[str, ...] = ()   # generic resource kinds the node advertises (e.g. NVIDIA-GPU)
    address: str = ""

    @property
    def usable(self) -> bool:
        return self.state == "ready" and self.availability == "active"


@dataclass(frozen=True)
class TaskInfo:
    service: str                 # the service's name without the stack's prefix
    slot: int | None
    node: str                    # the node's hostname ("" while unassigned)
    state: str                   # running, preparing, failed, rejected, complete, ...
    desired: str
    error: str
    image: str


def swarm_state(engine: EngineAPI) -> tuple[str, bool]:
    info = engine.info()
    return str(info.swarm.local_node_state), bool(info.swarm.control_available)


def swarm_nodes(engine: EngineAPI) -> list[NodeInfo]:
    with translate_errors("docker node ls"):
        nodes = _docker(engine).node.list()
    found = []
    for node in nodes:
        desc, spec = node.description, node.spec
        generic = []
        for resource in (desc.resources.generic_resources or []) if desc and desc.resources else []:
            for kind in ("discrete_resource_spec", "named_resource_spec"):
                part = getattr(resource, kind, None)
                if part is not None and getattr(part, "kind", None):
                    generic.append(str(part.kind))
        found.append(NodeInfo(
            id=str(node.id), hostname=str(desc.hostname if desc else node.id),
            state=str(node.status.state if node.status else "unknown").lower(),
            availability=str(spec.availability if spec else "active").lower(),
            manager=node.manager_status is not None, labels=dict(spec.labels or {}) if spec else {},
            memory=int(desc.resources.memory_bytes or 0) if desc and desc.resources else 0,
            generic=tuple(generic), address=str(node.status.addr or "") if node.status else ""))
    return found


def stack_deploy(engine: EngineAPI, name: str, file: Path, variables: dict[str, str], registry: bool = False,
                 prune: bool = True) -> None:
    """``docker stack deploy``; with a registry the manager pins each image by digest and hands the nodes its
    registry credentials, so every node runs the same image. ``prune`` removes the stack's services that the
    file no longer has (off for a file that holds only some of them)."""
    with translate_errors(f"docker stack deploy {name}"):
        _docker(engine).stack.deploy(name, compose_files=[str(file)], resolve_image="always" if registry else "never",
                                     prune=prune, with_registry_auth=registry, variables=variables)


def stack_remove(engine: EngineAPI, name: str) -> None:
    with translate_errors(f"docker stack rm {name}"):
        _docker(engine).stack.remove(name)


def stack_tasks(engine: EngineAPI, name: str) -> list[TaskInfo]:
    """The tasks of a stack's services (the current and the recent ones, as `docker stack ps` lists them)."""
    from python_on_whales.exceptions import DockerException

    with translate_errors(f"docker stack ps {name}"):
        docker = _docker(engine)
        services = {s.id: s.spec.name.removeprefix(f"{name}_") for s in docker.stack.services(name)}
        hosts = {n.id: n.description.hostname for n in docker.node.list() if n.description}
        tasks = docker.stack.ps(name) if services else []
    rows = []
    for task in tasks:
        try:
            status = task.status
            spec = task.spec.container_spec if task.spec else None
        except DockerException:
            continue                   # the task went away between the listing and its inspection
        rows.append(TaskInfo(
            service=services.get(task.service_id, str(task.service_id)), slot=task.slot,
            node=hosts.get(task.node_id, "") if task.node_id else "",
            state=str(status.state if status else "unknown").lower(), desired=str(task.desired_state or "").lower(),
            error=str(status.err or "") if status else "", image=str(spec.image if spec else "").split("@")[0]))
    return rows


def stack_logs(engine: EngineAPI, name: str, services: list[str], follow: bool,
               tail: str | None = None) -> Iterator[str]:
    """The services' logs, each line prefixed (by docker) with the task and the node it ran on."""
    with translate_errors(f"docker service logs ({name})"):
        docker = _docker(engine)
        known = [s.spec.name for s in docker.stack.services(name)]
        chosen = [f"{name}_{s}" for s in services] if services else known
        for service in chosen:
            for _, line in docker.service.logs(service, follow=follow, tail=int(tail) if tail else None,
                                               stream=True, timestamps=False):
                yield line.decode(errors="replace").rstrip("\n") if isinstance(line, bytes) else str(line).rstrip("\n")
