"""An in-memory engine for tests: :class:`FakeEngine` does what :class:`~infra.engine.protocol.EngineAPI` says,
with no daemon.

Images are a dict of ref -> ImageInfo. A build "builds" by adding the image with
the labels of its request (so the content-hash label makes it up to date next
time), after sleeping ``build_seconds``; it fails like a failed BuildKit build
(EngineError with a log tail) for a ref named in ``fail_builds``. Every call is
recorded: ``calls`` in order, ``builds`` with their times and how many ran at
once, ``runs``, ``pushes``. ``run_python`` answers with what ``python_output``
holds for the image (:func:`probe_answer` writes what the native-env probe of a
compatible or incompatible image prints). ``raw_info`` is `docker info` of an
engine with runc alone, ``info_fields`` (Runtimes, CDISpecDirs,
DiscoveredDevices) laid over it. With ``available=False`` every call fails as
it does when no Docker engine answers.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from infra.engine.build import BuildRequest, Step, StepLog
from infra.engine.protocol import EngineVersions, ImageInfo, Mount
from infra.engine.translate import failure
from infra.errors import BadInputError, EngineError

DOWN_TEXT = "Cannot connect to the Docker daemon at unix:///fake/docker.sock. Is the docker daemon running?"


@dataclass
class BuildRecord:
    ref: str
    request: BuildRequest
    started: float                    # time.monotonic()
    concurrent: int                   # builds running when this one started, itself included
    finished: float | None = None
    failed: bool = False


@dataclass(frozen=True)
class RunRecord:
    ref: str
    command: list[str]
    name: str
    mounts: list[Mount]
    env: dict[str, str]
    workdir: str
    user: str | None
    gpus: bool
    labels: dict[str, str]


def probe_answer(python: str = "3.11.2", machine: str = "x86_64", glibc: str = "2.36",
                 dists: Mapping[str, str] | None = None) -> str:
    """What infra.stack.nativeenv's probe prints inside an image with this Python, machine, glibc and packages."""
    return json.dumps({"python": python, "machine": machine, "libc": ["glibc", glibc], "dists": dict(dists or {})})


def names_of(ref: str) -> set[str]:
    """The names a test may use for an image: its ref, its repository, and the name after the project prefix
    (speech-asr:latest is also speech-asr and asr)."""
    repo = ref.rsplit(":", 1)[0] if ":" in ref.rsplit("/", 1)[-1] else ref
    last = repo.rsplit("/", 1)[-1]
    return {ref, repo, last, last.split("-", 1)[-1]}


class FakeEngine:
    """An EngineAPI in memory; see the module docstring."""

    def __init__(self, images: Mapping[str, Mapping[str, str]] | None = None, *, fail_builds: Iterable[str] = (),
                 build_seconds: float = 0.0, python_output: Mapping[str, str] | None = None,
                 default_python_output: str | None = None, run_exit: int | Callable[[RunRecord], int] = 0,
                 run_output: str = "", fail_pushes: Mapping[str, str] | None = None, remote: Iterable[str] = (),
                 logged_in: Iterable[str] = (), builders: Iterable[str] = ("default",),
                 swarm: tuple[str, bool] = ("inactive", False), available: bool = True,
                 info_fields: Mapping[str, Any] | None = None) -> None:
        self.images: dict[str, ImageInfo] = {}
        self.fail_builds = set(fail_builds)
        self.build_seconds = build_seconds
        self.python_output = dict(python_output or {})
        self.default_python_output = default_python_output
        self.run_exit = run_exit
        self.run_output = run_output
        self.fail_pushes = dict(fail_pushes or {})
        self.remote = set(remote)
        self.remote_labels: dict[str, dict[str, str]] = {}     # labels an image pulled from the registry carries
        self.archives: dict[str, tuple[str, dict[str, str]]] = {}   # OCI archives written by builds, not loaded yet
        self.logged_in = set(logged_in)
        self.builders = set(builders)
        self.swarm = swarm
        self.available = available
        self.info_fields = dict(info_fields or {})     # `docker info` fields over the defaults (Runtimes, CDI...)
        self.calls: list[tuple[str, ...]] = []
        self.builds: list[BuildRecord] = []
        self.runs: list[RunRecord] = []
        self.pushes: list[str] = []
        self.max_concurrent_builds = 0
        self._active = 0
        self._serial = 0
        self._lock = threading.Lock()
        for ref, labels in (images or {}).items():
            self.add_image(ref, labels)

    # -- test helpers -------------------------------------------------------------------------------

    def add_image(self, ref: str, labels: Mapping[str, str] | None = None, size: int = 1_000_000) -> ImageInfo:
        """Put an image in the store (as a build or a pull would); its id is new each time."""
        with self._lock:
            self._serial += 1
            digest = hashlib.sha256(f"{ref}\0{self._serial}".encode()).hexdigest()
            info = ImageInfo(id=f"sha256:{digest}", size=size, labels=dict(labels or {}), repo_digests=[])
            self.images[ref] = info
        return info

    def built(self) -> list[str]:
        """Refs of the builds that succeeded, in the order they finished."""
        done = [b for b in self.builds if b.finished is not None and not b.failed]
        return [b.ref for b in sorted(done, key=lambda b: b.finished or 0.0)]

    def calls_to(self, method: str) -> list[tuple[str, ...]]:
        return [c for c in self.calls if c[0] == method]

    def _call(self, method: str, *args: str) -> None:
        with self._lock:
            self.calls.append((method, *args))
        if not self.available:
            raise failure(f"docker {method}", ["docker", method, *args], 1, DOWN_TEXT)

    def _fails(self, ref: str, chosen: Iterable[str]) -> bool:
        return bool(names_of(ref) & set(chosen))

    # -- EngineAPI ----------------------------------------------------------------------------------

    def versions(self) -> EngineVersions:
        self._call("version")
        return EngineVersions(client="28.5.0", server="28.5.0", api="1.51")

    def info(self) -> Any:
        self._call("info")
        state, manager = self.swarm
        return SimpleNamespace(server_version="28.5.0", ncpu=2,
                               swarm=SimpleNamespace(local_node_state=state, control_available=manager))

    def buildx_version(self) -> str:
        self._call("buildx_version")
        return "github.com/docker/buildx 0.29.1 0.29.1"

    def compose_version(self) -> str:
        self._call("compose_version")
        return "2.40.3"

    def raw_info(self) -> dict[str, Any]:
        self._call("raw_info")
        return {"ServerVersion": "28.5.0", "NCPU": 2, "DefaultRuntime": "runc",
                "Runtimes": {"io.containerd.runc.v2": {"path": "runc"}, "runc": {"path": "runc"}},
                "CDISpecDirs": ["/etc/cdi", "/var/run/cdi"], **self.info_fields}

    def inspect_images(self, refs: Iterable[str]) -> dict[str, ImageInfo | None]:
        wanted = list(dict.fromkeys(refs))
        self._call("inspect_images", *wanted)
        return {ref: self.images.get(ref) for ref in wanted}

    def inspect_image(self, ref: str) -> ImageInfo:
        self._call("inspect_image", ref)
        if ref not in self.images:
            raise EngineError(f"docker image inspect {ref}: no such image")
        return self.images[ref]

    def image_exists(self, ref: str) -> bool:
        self._call("image_exists", ref)
        return ref in self.images

    def label_of(self, ref: str, label: str) -> str | None:
        self._call("label_of", ref, label)
        info = self.images.get(ref)
        return info.labels.get(label) if info else None

    def build(self, request: BuildRequest, on_step: Callable[[Step], None] | None = None) -> StepLog:
        """Sleep ``build_seconds``, then add the image with the request's labels (or fail like BuildKit)."""
        self._call("build", request.tag)
        with self._lock:
            self._active += 1
            self.max_concurrent_builds = max(self.max_concurrent_builds, self._active)
            record = BuildRecord(request.tag, request, time.monotonic(), self._active)
            self.builds.append(record)
        log = StepLog()
        try:
            for source in request.contexts.values():
                parent = source.removeprefix("docker-image://")
                if source.startswith("docker-image://") and parent not in self.images and parent not in self.remote:
                    raise EngineError(f"build of {request.tag} failed: {parent}: not found",
                                      command=["docker", "buildx", "build", "--tag", request.tag],
                                      stderr=f"ERROR: failed to solve: {parent}: not found")
            steps = self._steps(request.dockerfile)
            for index, step in enumerate(steps):
                step.started = _now()
                log.steps[f"sha256:{request.tag}:{index}"] = step
                if on_step is not None:
                    on_step(step)
            time.sleep(self.build_seconds)
            if self._fails(request.tag, self.fail_builds):
                last = steps[-1] if steps else Step(f"[1/1] build {request.tag}")
                last.error = "process \"/bin/sh -c false\" did not complete successfully: exit code: 1"
                raise EngineError(f"build of {request.tag} failed: {last.name}: {last.error}",
                                  command=["docker", "buildx", "build", "--tag", request.tag],
                                  stderr=f"#5 {last.name}\n#5 ERROR: {last.error}")
            for step in steps:
                step.completed = _now()
                if on_step is not None:
                    on_step(step)
            if request.oci_archive is not None:
                self.archives[str(request.oci_archive)] = (request.tag, dict(request.labels))
            else:
                self.add_image(request.tag, request.labels)
        except BaseException:
            record.failed = True
            raise
        finally:
            with self._lock:
                self._active -= 1
                record.finished = time.monotonic()
        return log

    @staticmethod
    def _steps(dockerfile: Path) -> list[Step]:
        """One step per Dockerfile instruction after FROM, named as BuildKit names them."""
        try:
            lines = [line.strip() for line in dockerfile.read_text().splitlines()]
        except OSError:
            lines = []
        instructions = [line for line in lines
                        if line and not line.startswith("#") and not line.upper().startswith("FROM ")]
        return [Step(f"[{i}/{len(instructions)}] {text}") for i, text in enumerate(instructions, 1)]

    def run_python(self, ref: str, code: str) -> str:
        self._call("run_python", ref)
        if ref not in self.images:
            raise failure(f"probe of {ref}", ["docker", "run", ref], 125,
                          f"Unable to find image '{ref}' locally\ndocker: Error response from daemon: "
                          f"pull access denied for {ref}")
        answer = next((self.python_output[n] for n in names_of(ref) if n in self.python_output),
                      self.default_python_output)
        if answer is None:
            raise failure(f"probe of {ref}", ["docker", "run", ref], 127,
                          'exec: "python3": executable file not found in $PATH')
        return answer

    def run_to_log(self, ref: str, command: list[str], log: Path, *, name: str, mounts: list[Mount],
                   env: dict[str, str], workdir: str, user: str | None = None, gpus: bool = False,
                   labels: dict[str, str] | None = None) -> int:
        self._call("run_to_log", ref, name)
        record = RunRecord(ref, list(command), name, list(mounts), dict(env), workdir, user, gpus, dict(labels or {}))
        self.runs.append(record)
        with open(log, "a", encoding="utf-8") as out:
            if ref not in self.images:
                out.write(f"Unable to find image '{ref}' locally\n"
                          f"docker: Error response from daemon: pull access denied for {ref}\n")
                return 125
            out.write(self.run_output)
        return self.run_exit(record) if callable(self.run_exit) else self.run_exit

    def stop_container(self, name: str) -> None:
        self._call("stop_container", name)

    def import_rootfs(self, archive: Path, ref: str, changes: list[str]) -> None:
        """The image gets the LABELs of ``changes``."""
        self._call("import_rootfs", ref)
        labels: dict[str, str] = {}
        for change in changes:
            if change.startswith("LABEL "):
                for pair in shlex.split(change[len("LABEL "):]):
                    key, _, value = pair.partition("=")
                    labels[key] = value
        self.add_image(ref, labels)

    def tag(self, ref: str, new_ref: str) -> None:
        self._call("tag", ref, new_ref)
        if ref not in self.images:
            raise EngineError(f"docker tag {ref} {new_ref} failed: No such image: {ref}")
        self.images[new_ref] = self.images[ref]

    def push(self, ref: str) -> None:
        self._call("push", ref)
        self.pushes.append(ref)
        if ref not in self.images:
            raise EngineError(f"docker push {ref} failed: An image does not exist locally with the tag: {ref}")
        message = next((self.fail_pushes[n] for n in names_of(ref) if n in self.fail_pushes), None)
        if message is not None:
            raise EngineError(f"docker push {ref} failed: {message}", stderr=message)
        repo = ref.rsplit(":", 1)[0]
        info = self.images[ref]
        digest = f"{repo}@sha256:{hashlib.sha256(info.id.encode()).hexdigest()}"
        self.images[ref] = replace(info, repo_digests=[*info.repo_digests, digest])
        self.remote.add(ref)

    def pull(self, ref: str) -> None:
        self._call("pull", ref)
        if ref not in self.remote:
            raise EngineError(f"docker pull {ref} failed: manifest unknown", stderr="manifest unknown")
        self.add_image(ref, self.remote_labels.get(ref, {}))

    def load_archive(self, archive: Path) -> None:
        self._call("load_archive", str(archive))
        tag = self.archives.pop(str(archive), None)
        if tag is None:
            raise EngineError(f"docker load -i {archive} failed: no such file")
        self.add_image(tag[0], tag[1])

    def remote_image_exists(self, ref: str) -> bool:
        self._call("remote_image_exists", ref)
        return ref in self.remote

    def registry_logged_in(self, registry: str) -> bool:
        return registry.split("/", 1)[0] in self.logged_in

    def check_builder(self, name: str) -> None:
        self._call("check_builder", name)
        if name not in self.builders:
            known = ", ".join(sorted(self.builders))
            raise BadInputError(f"--builder: no buildx builder named '{name}' (known: {known})")


def _now() -> datetime:
    return datetime.now(UTC)
