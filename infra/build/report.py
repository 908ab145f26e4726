"""The build summary: totals, the critical path, and the change against the previous build.

Written as JSON to out/build-summary.json; the summary it replaces is kept as
build-summary.previous.json so the next table can show what changed.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from infra.jobproto import write_json_atomic
from typing import Literal


SCHEMA = 1
Status = Literal["built", "up to date", "in registry", "failed", "blocked"]


@dataclass
class ImageReport:
    name: str
    ref: str
    status: Status
    content_hash: str
    seconds: float = 0.0
    steps_executed: int = 0
    steps_cached: int = 0
    slowest_step: str = ""
    slowest_seconds: float = 0.0
    size_bytes: int = 0
    image_id: str = ""
    error: str = ""
    log_tail: list[str] = field(default_factory=list)
    hint: str = ""                    # a one-line fix for a failure whose cause is known (an untrusted certificate)
    digest: str = ""                  # in the registry: the digest its content-hash tag names
    manifest_digest: str = ""         # a reproducible build: its image manifest (what two builds must agree on)


@dataclass
class BuildSummary:
    mode: str
    wall_seconds: float
    images: list[ImageReport]
    critical_path: list[str] = field(default_factory=list)
    critical_seconds: float = 0.0
    pushed: dict[str, str] = field(default_factory=dict)       # name -> remote@digest
    previous: dict[str, dict] = field(default_factory=dict)    # the last build's records, for the deltas

    @property
    def failed(self) -> bool:
        return any(r.status in ("failed", "blocked") for r in self.images)

    def to_json(self) -> dict:
        return {"schema": SCHEMA, "mode": self.mode, "wall_seconds": round(self.wall_seconds, 3),
                "critical_path": self.critical_path, "critical_seconds": round(self.critical_seconds, 3),
                "pushed": self.pushed, "images": [asdict(r) for r in self.images]}


def size_before(report: ImageReport, before: dict) -> int | None:
    """The previous size to show a change against: only a real one (the image was built or up to date then)
    of another image; None where a delta would mean nothing (a failed or blocked record, the same image id)."""
    size = before.get("size_bytes")
    if before.get("status") not in ("built", "up to date") or not isinstance(size, int) or size <= 0:
        return None
    if report.image_id and before.get("image_id") == report.image_id:
        return None
    return size


def seconds_before(before: dict) -> float | None:
    """The previous build time to compare with: only that of an image that was built then."""
    seconds = before.get("seconds")
    return float(seconds) if before.get("status") == "built" and isinstance(seconds, (int, float)) else None


def critical_path(reports: list[ImageReport], parents: dict[str, str | None]) -> tuple[list[str], float]:
    """The chain of images, parent to child, whose build times add up to the most."""
    seconds = {r.name: r.seconds for r in reports}
    best: dict[str, tuple[float, list[str]]] = {}

    def walk(name: str) -> tuple[float, list[str]]:
        if name not in best:
            parent = parents.get(name)
            before = walk(parent) if parent in seconds else (0.0, [])
            best[name] = (before[0] + seconds[name], [*before[1], name])
        return best[name]

    chains = [walk(name) for name in seconds]
    total, chain = max(chains, default=(0.0, []))
    return chain, total


def write_summary(summary: BuildSummary, folder: Path) -> Path:
    """Write out/build-summary.json atomically, keeping the previous one."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "build-summary.json"
    if path.exists():
        os.replace(path, folder / "build-summary.previous.json")
    write_json_atomic(path, summary.to_json())
    return path


def load_previous(folder: Path, mode: str) -> dict[str, dict]:
    """The last summary's images for this mode (name -> record), read before a new one replaces it."""
    try:
        data = json.loads((folder / "build-summary.json").read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("schema") != SCHEMA or data.get("mode") != mode:
        return {}
    return {image["name"]: image for image in data.get("images", []) if isinstance(image, dict) and "name" in image}
