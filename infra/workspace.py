"""The workspace under the stack's workdir: in/, out/, logs/, jobs/, config/, shared-model-and-cache/.

``in/`` holds media to process, ``out/`` the job directories (``out/YYYY/MM/DD/<user>/<job-id>/``)
and the hardware cache, ``jobs/`` one small index file per job id (the id's claim), ``config/``
local settings such as the secrets file, and ``shared-model-and-cache/`` the model weights
that the stage containers mount.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from infra.jobproto import CACHE_DIR

FOLDERS = ("in", "out", "logs", "jobs", "config", CACHE_DIR)
HARDWARE_CACHE = "hardware_cache.json"


@dataclass(frozen=True)
class Workspace:
    root: Path

    @property
    def out(self) -> Path:
        return self.root / "out"

    @property
    def jobs(self) -> Path:
        return self.root / "jobs"

    @property
    def models(self) -> Path:
        return self.root / CACHE_DIR

    @property
    def hardware_cache(self) -> Path:
        return self.out / HARDWARE_CACHE

    def folders(self) -> list[Path]:
        return [self.root / name for name in FOLDERS]
