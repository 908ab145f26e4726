"""One BuildKit build through `docker buildx build --progress=rawjson`, parsed into steps."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from infra.engine.translate import engine_down, failure, translate_errors
from infra.errors import EngineError

LOG_TAIL_LINES = 40
FROM_STEP = re.compile(r"^\[[^\]]*\] FROM ")


def _time(value: str | None) -> datetime | None:
    if not value:
        return None
    # BuildKit writes nanoseconds; datetime takes microseconds.
    head, _, frac = value.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00")


@dataclass
class Step:
    name: str
    started: datetime | None = None
    completed: datetime | None = None
    cached: bool = False
    error: str | None = None

    @property
    def seconds(self) -> float:
        if self.started is None or self.completed is None:
            return 0.0
        return max(0.0, (self.completed - self.started).total_seconds())

    @property
    def internal(self) -> bool:
        """BuildKit's own bookkeeping ([internal] load ..., exporting, resolving a FROM), not a build step."""
        return not self.name.startswith("[") or self.name.startswith(("[internal]", "[context ")) \
            or bool(FROM_STEP.match(self.name))


@dataclass
class StepLog:
    """Folds rawjson progress lines into steps, and keeps the tail of the build's output."""

    steps: dict[str, Step] = field(default_factory=dict)
    tail: list[str] = field(default_factory=list)
    other: list[str] = field(default_factory=list)

    def feed(self, line: str) -> list[Step]:
        """Take one line; returns the steps it started or finished (a message can carry several)."""
        try:
            message = json.loads(line)
        except ValueError:
            if line.strip():
                self.other.append(line.rstrip())
                self.other[:] = self.other[-LOG_TAIL_LINES:]
            return []
        changed = []
        for vertex in message.get("vertexes") or []:
            step = self.steps.setdefault(vertex["digest"], Step(vertex.get("name", "?")))
            step.started = _time(vertex.get("started")) or step.started
            step.completed = _time(vertex.get("completed")) or step.completed
            step.cached = bool(vertex.get("cached", step.cached))
            step.error = vertex.get("error") or step.error
            changed.append(step)
        for log in message.get("logs") or []:
            text = base64.b64decode(log.get("data", "")).decode(errors="replace")
            self.tail.extend(part for part in text.splitlines() if part.strip())
        self.tail[:] = self.tail[-LOG_TAIL_LINES:]
        return changed

    @property
    def dockerfile_steps(self) -> list[Step]:
        return [s for s in self.steps.values() if not s.internal]

    def failure_tail(self) -> list[str]:
        errors = [f"{s.name}: {s.error}" for s in self.steps.values() if s.error]
        return (self.tail + self.other + errors)[-LOG_TAIL_LINES:]


@dataclass(frozen=True)
class BuildRequest:
    context: Path
    dockerfile: Path
    tag: str
    contexts: dict[str, str]
    args: dict[str, str]
    labels: dict[str, str]
    secrets: list[str]
    no_cache: bool = False
    builder: str | None = None
    cache_from: tuple[str, ...] = ()          # BuildKit cache imports, e.g. type=registry,ref=HOST/NAME:buildcache-cpu
    cache_to: str | None = None               # one cache export
    provenance: bool = True                   # BuildKit's provenance attestation (mode=max), kept in the image
    oci_archive: Path | None = None           # export an OCI archive with rewritten timestamps here, not --load


def _cache_spec(text: str) -> dict[str, str]:
    """'type=registry,ref=H/N:T,mode=max' as the mapping python-on-whales takes."""
    return dict(part.split("=", 1) for part in text.split(","))


def run_build(docker: Any, request: BuildRequest, on_step: Callable[[Step], None] | None = None) -> StepLog:
    """Build and load one image with ``docker`` (a python-on-whales client); raise EngineError with the
    output's tail if it fails. Reached through :meth:`infra.engine.client.Engine.build`."""
    log = StepLog()
    with translate_errors(f"build of {request.tag}"):
        try:
            output = {"type": "oci", "dest": str(request.oci_archive), "name": request.tag,
                      "rewrite-timestamp": "true"} if request.oci_archive else {}
            stream: Iterable[str] = docker.buildx.build(
                str(request.context), file=str(request.dockerfile), tags=[request.tag],
                load=request.oci_archive is None, output=output,
                build_contexts=request.contexts, build_args=request.args, labels=request.labels,
                secrets=request.secrets, cache=not request.no_cache, builder=request.builder,
                cache_from=[_cache_spec(c) for c in request.cache_from] or None,
                cache_to=_cache_spec(request.cache_to) if request.cache_to else None,
                progress="rawjson", stream_logs=True,
                provenance={"mode": "max"} if request.provenance else False,
            )
            for line in stream:
                for step in log.feed(line):
                    if on_step is not None:
                        on_step(step)
        except Exception as exc:
            from python_on_whales.exceptions import DockerException

            if isinstance(exc, DockerException):
                own = "\n".join([*log.other, exc.stderr or ""])   # the CLI's own words, not a step's output
                if engine_down(own):
                    raise failure(f"build of {request.tag}", exc.docker_command, exc.return_code, own) from None
                tail = log.failure_tail()
                raise EngineError(f"build of {request.tag} failed: {tail[-1] if tail else exc.return_code}",
                                  command=exc.docker_command, stderr="\n".join(tail)) from None
            raise
    return log
