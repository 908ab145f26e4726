"""`infra doctor`: is this machine ready to render, build, run and deploy the stack?

Each check yields a line with a status and, for anything not green, a hint
that says how to fix it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from infra.spec import Stack
from infra.engine import Engine
from infra.errors import EngineError, EngineUnavailableError, InfraError
from infra.hardware.detect import tool_version
from infra.hardware.snapshot import ToolInfo
from infra.stack.nativeenv import inspect_env
from infra.hardware.versions import version_tuple

Status = Literal["ok", "warn", "fail"]

MIN_ENGINE_MAJOR = 23          # BuildKit with named build contexts ships from Engine 23
MIN_BUILDX = (0, 17)
MIN_COMPOSE_MAJOR = 2
MIN_FFMPEG_MAJOR = 4
DISK_WARN_GB = 20.0            # the docker-cpu stack with its build cache takes ~10 GB
DISK_FAIL_GB = 5.0


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    hint: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def run_checks(stack: Stack | None, engine: Engine | None = None) -> Iterator[Check]:
    engine = engine or Engine()
    yield from _engine_checks(engine)
    yield _registry_check(stack, engine)
    yield _ffmpeg_check()
    if stack is not None:
        yield _native_env_check(stack)
        yield from _gpu_library_checks(stack, engine)
    yield _disk_check(stack.workdir if stack else Path.cwd())


def _engine_checks(engine: Engine) -> Iterator[Check]:
    if engine.cli_path() is None:
        yield Check("docker CLI", "fail", "not found on PATH", "install the Docker CLI, or run scripts/setup-docker.sh")
        return
    try:
        versions = engine.versions()
    except EngineUnavailableError as exc:
        yield Check("engine", "fail", exc.message, exc.hint or "")
        return
    except EngineError as exc:
        yield Check("engine", "fail", exc.message, "see `docker version`")
        return
    major = version_tuple(versions.server)[:1]
    if major and major[0] >= MIN_ENGINE_MAJOR:
        yield Check("engine", "ok", f"Docker Engine {versions.server} (API {versions.api}, client {versions.client})")
    else:
        yield Check("engine", "fail", f"Docker Engine {versions.server} is older than {MIN_ENGINE_MAJOR}",
                    "install a current engine (scripts/setup-docker.sh does it on Debian)")

    try:
        engine.probe_named_contexts()
        yield Check("buildkit", "ok", "BuildKit builds with named build contexts (target: parents in bake)")
    except EngineError as exc:
        yield Check("buildkit", "fail", f"BuildKit cannot build with named contexts: {exc.message}",
                    "upgrade the engine to 23 or newer (its BuildKit >= 0.10)")

    for name, probe, minimum, hint in (
        ("buildx", engine.buildx_version, MIN_BUILDX, "install the docker-buildx plugin >= 0.17"),
        ("compose", engine.compose_version, (MIN_COMPOSE_MAJOR,), "install the docker compose v2 plugin"),
    ):
        try:
            text = probe()
        except EngineError as exc:
            yield Check(name, "fail", exc.message, hint)
            continue
        found = version_tuple(text.split(" ", 1)[-1])
        shown = ".".join(map(str, found)) or text
        status: Status = "ok" if found and found >= minimum else "fail"
        yield Check(name, status, f"{name} {shown}", "" if status == "ok" else hint)

    try:
        info = engine.info()
        state = str(info.swarm.local_node_state)
        manager = bool(info.swarm.control_available)
        detail = f"swarm {state}" + (" (this node is a manager)" if manager else "")
        hint = "" if state == "active" else "`docker swarm init` before `infra deploy --target swarm`"
        yield Check("swarm", "ok", detail + (f"; {hint}" if hint else ""))
    except EngineError as exc:
        yield Check("swarm", "fail", exc.message, "see `docker info`")


def _registry_check(stack: Stack | None, engine: Engine) -> Check:
    registry = stack.spec.registry if stack else None
    if not registry:
        return Check("registry", "ok", "no registry configured: images stay local (set 'registry' in infra.yaml to push)")
    host = registry.split("/", 1)[0]
    if engine.registry_logged_in(registry):
        return Check("registry", "ok", f"logged in to {host}")
    return Check("registry", "warn", f"no credentials for {host} (pushes will be refused if it needs them)",
                 f"docker login {host}")


def _ffmpeg_check() -> Check:
    return ffmpeg_check(tool_version("ffmpeg"))


def ffmpeg_check(ffmpeg: ToolInfo) -> Check:
    """ffmpeg present and at least MIN_FFMPEG_MAJOR, judged from `ffmpeg -version` as detection read it."""
    hint = "apt-get install ffmpeg (or brew install ffmpeg)"
    if ffmpeg.path is None:
        return Check("ffmpeg", "fail", "not found on PATH", hint)
    if ffmpeg.version is None:
        return Check("ffmpeg", "fail", f"{ffmpeg.path} does not run", "reinstall ffmpeg")
    found = version_tuple(ffmpeg.version)
    if not found:
        return Check("ffmpeg", "warn", f"ffmpeg {ffmpeg.version} ({ffmpeg.path}): cannot tell its version",
                     f"make sure it is ffmpeg {MIN_FFMPEG_MAJOR} or newer")
    if found[0] >= MIN_FFMPEG_MAJOR:
        return Check("ffmpeg", "ok", f"ffmpeg {ffmpeg.version} ({ffmpeg.path})")
    return Check("ffmpeg", "fail", f"ffmpeg {ffmpeg.version} is older than {MIN_FFMPEG_MAJOR}",
                 f"install ffmpeg {MIN_FFMPEG_MAJOR} or newer: {hint}")


def _native_env_check(stack: Stack) -> Check:
    path = stack.workdir / stack.spec.native_env.path
    try:
        env = inspect_env(path)
    except InfraError as exc:
        return Check("native env", "warn", exc.message, exc.hint or "")
    torch = f"torch {env.torch}" if env.torch else "no torch"
    status: Status = "ok" if env.torch else "warn"
    return Check("native env", status, f"{path}: Python {env.python}, {torch}",
                 "" if env.torch else "install the ML packages into it: pip install 'infra[ml]'")


def _gpu_library_checks(stack: Stack, engine: Engine) -> Iterator[Check]:
    """Each GPU mode's stage images resolve every CUDA library with the native env mounted (infra/stack/libclosure.py)."""
    from infra.stack.libclosure import doctor_lines

    for status, detail, hint in doctor_lines(stack, engine):
        yield Check("gpu libraries", status, detail, hint)  # type: ignore[arg-type]


def _disk_check(where: Path) -> Check:
    probe = where if where.exists() else Path.cwd()
    free_gb = shutil.disk_usage(probe).free / 1e9
    if free_gb >= DISK_WARN_GB:
        return Check("disk", "ok", f"{free_gb:.0f} GB free at {probe}")
    status: Status = "warn" if free_gb >= DISK_FAIL_GB else "fail"
    return Check("disk", status, f"only {free_gb:.1f} GB free at {probe}",
                 "free space: `docker buildx prune` and `docker image prune` reclaim build cache and old images")
