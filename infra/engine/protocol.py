"""What the core asks of a container engine, as a Protocol.

The build scheduler, the stack's readiness checks, `infra up`, `infra deploy`
and the container runner are typed against :class:`EngineAPI`, not against the
Docker adapter, so that unit tests can hand them the in-memory
:class:`~infra.engine.fake.FakeEngine`. Compose and swarm stay functions over
the real :class:`~infra.engine.client.Engine` (infra/engine/compose.py).
Every method raises :class:`~infra.errors.EngineError` when the engine fails,
and :class:`~infra.errors.EngineUnavailableError` when none answers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from infra.engine.build import BuildRequest, Step, StepLog

Mount = tuple[str, str, bool]    # host path, path in the container, read-only


@dataclass(frozen=True)
class EngineVersions:
    client: str
    server: str
    api: str


@dataclass(frozen=True)
class ImageInfo:
    id: str
    size: int
    labels: dict[str, str]
    repo_digests: list[str]


class EngineAPI(Protocol):
    def versions(self) -> EngineVersions:
        """Client, server and API versions; EngineUnavailableError when no engine answers."""
        ...

    def info(self) -> Any:
        """The engine's `docker info` (its .swarm has local_node_state and control_available)."""
        ...

    def raw_info(self) -> dict[str, Any]:
        """`docker info` as the engine's JSON (Runtimes, CDISpecDirs, DiscoveredDevices, ServerVersion, ...)."""
        ...

    def inspect_images(self, refs: Iterable[str]) -> dict[str, ImageInfo | None]:
        """Every ref mapped to its local image, or None when there is none; one engine call for all."""
        ...

    def inspect_image(self, ref: str) -> ImageInfo:
        """A local image; EngineError when it does not exist."""
        ...

    def image_exists(self, ref: str) -> bool:
        ...

    def label_of(self, ref: str, label: str) -> str | None:
        """A label of a local image, or None when the image (or the label) does not exist."""
        ...

    def build(self, request: BuildRequest, on_step: Callable[[Step], None] | None = None) -> StepLog:
        """Build and load one image, reporting each step; EngineError with the build's tail when it fails."""
        ...

    def run_python(self, ref: str, code: str) -> str:
        """The stdout of ``python3 -c code`` in a throw-away container of ``ref`` (no network, no mounts)."""
        ...

    def run_to_log(self, ref: str, command: list[str], log: Path, *, name: str, mounts: list[Mount],
                   env: dict[str, str], workdir: str, user: str | None = None, gpus: bool = False,
                   labels: dict[str, str] | None = None) -> int:
        """Run one command in a removed-after container, its output appended to ``log``; its exit code."""
        ...

    def stop_container(self, name: str) -> None:
        """Stop a container that ``run_to_log`` started (it may have ended already)."""
        ...

    def import_rootfs(self, archive: Path, ref: str, changes: list[str]) -> None:
        """Import a root file system tarball as image ``ref`` (``changes`` are Dockerfile lines)."""
        ...

    def tag(self, ref: str, new_ref: str) -> None:
        ...

    def push(self, ref: str) -> None:
        ...

    def pull(self, ref: str) -> None:
        """Pull an image (by tag or HOST/NAME@digest) into the local store."""
        ...

    def load_archive(self, archive: Path) -> None:
        """Load an image archive (OCI layout tar) as it is, digests included."""
        ...

    def remote_image_exists(self, ref: str) -> bool:
        """Whether a registry holds ``ref`` (pulls nothing)."""
        ...

    def registry_logged_in(self, registry: str) -> bool:
        """Whether this machine holds credentials for the registry's host."""
        ...

    def check_builder(self, name: str) -> None:
        """BadInputError unless a BuildKit builder of that name exists."""
        ...
