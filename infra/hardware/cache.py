"""The hardware cache, `out/hardware_cache.json`: trusted only while it is young and the machine is the same.

A valid cache is read with json and the snapshot models alone: neither psutil nor
pynvml is imported. The cache is invalid when it is older than its TTL (one hour
by default), dated in the future, written with another schema version, or when
the cheap fingerprint (host name, CPU count, RAM size, GPU count and driver) has
changed. A corrupt or foreign file is replaced, with a warning, never a crash.
Writes are atomic (temporary file, then rename), so 50 processes may race.
"""

from __future__ import annotations

import json
import os
import platform
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from infra.jobproto import write_json_atomic
from infra.errors import BadInputError, OperationError
from infra.hardware.snapshot import MIB, PROC_NVIDIA, Fingerprint, HardwareSnapshot

if TYPE_CHECKING:
    from infra.spec import Stack

CACHE_KIND = "infra.hardware-cache"
SCHEMA_VERSION = 1
DEFAULT_TTL_S = 3600
TTL_ENV = "INFRA_HW_CACHE_TTL"
CLOCK_SKEW_S = 300          # a cache dated further in the future than this was written by another clock


@dataclass(frozen=True)
class CacheRead:
    """What reading the cache found: a snapshot to trust, or why not (and a warning for a bad file)."""

    snapshot: HardwareSnapshot | None
    reason: str
    age_s: float | None = None
    warning: str | None = None


@dataclass(frozen=True)
class HardwareState:
    """The snapshot in use, where it came from, and for how much longer the cache holds."""

    snapshot: HardwareSnapshot
    source: Literal["cache", "detected"]
    path: Path
    ttl_s: int
    age_s: float
    reason: str
    warning: str | None = None

    @property
    def expires_in_s(self) -> float:
        return max(0.0, self.ttl_s - self.age_s)

    def as_dict(self) -> dict[str, object]:
        return {"source": self.source, "path": str(self.path), "ttl_s": self.ttl_s, "age_s": round(self.age_s, 1),
                "expires_in_s": round(self.expires_in_s, 1), "reason": self.reason, "warning": self.warning}


def cache_ttl(spec_ttl_s: int, environ: Mapping[str, str] | None = None) -> int:
    """The TTL in force: the spec's `hardware.cache_ttl_s`, unless INFRA_HW_CACHE_TTL says otherwise."""
    raw = (os.environ if environ is None else environ).get(TTL_ENV)
    if raw is None or raw.strip() == "":
        return spec_ttl_s
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise BadInputError(f"{TTL_ENV}={raw!r} is not a whole number of seconds",
                            hint=f"e.g. {TTL_ENV}=600, or unset it to use hardware.cache_ttl_s")
    return value


def fingerprint() -> Fingerprint:
    """Host name, CPU count, RAM size, GPU count and driver, read without psutil or NVML."""
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        ram = 0
    gpus = PROC_NVIDIA / "gpus"
    driver = None
    try:
        text = (PROC_NVIDIA / "version").read_text(errors="replace")
        match = re.search(r"Kernel Module(?: for [\w-]+)?\s+([0-9][0-9.]+)", text)
        driver = match.group(1) if match else text.splitlines()[0].strip()
    except OSError:
        pass
    return Fingerprint(host=platform.node(), cpu_count=os.cpu_count() or 0, ram_mib=ram // MIB,
                       gpu_count=len(list(gpus.iterdir())) if gpus.is_dir() else 0, driver=driver)


def read_cache(path: Path, ttl_s: int, current: Fingerprint, now: float | None = None) -> CacheRead:
    """Read and judge the cache; never raises for what is in the file."""
    now = time.time() if now is None else now
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return CacheRead(None, "no cache yet")
    except (OSError, UnicodeDecodeError) as exc:
        return CacheRead(None, "unreadable", warning=f"{path} cannot be read ({exc.__class__.__name__}): replacing it")
    try:
        data = json.loads(text)
    except ValueError as exc:
        return CacheRead(None, "corrupt", warning=f"{path} is corrupt ({exc}): replacing it")
    if not isinstance(data, dict) or data.get("kind") != CACHE_KIND:
        return CacheRead(None, "foreign", warning=f"{path} is not an infra hardware cache: replacing it")
    if data.get("schema") != SCHEMA_VERSION:
        return CacheRead(None, f"written with schema {data.get('schema')!r}, this infra reads {SCHEMA_VERSION}")
    try:
        created = float(data["created"])
        stored = Fingerprint.model_validate(data["fingerprint"])
        snapshot = HardwareSnapshot.model_validate(data["hardware"])
    except (KeyError, TypeError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        first = str(exc).splitlines()[0]
        return CacheRead(None, "corrupt", warning=f"{path} is corrupt ({first}): replacing it")
    age = now - created
    if age < -CLOCK_SKEW_S:
        return CacheRead(None, f"dated {-age:.0f} s in the future", age_s=age)
    age = max(age, 0.0)
    if age > ttl_s:
        return CacheRead(None, f"expired ({_minutes(age)} old, valid for {_minutes(ttl_s)})", age_s=age)
    changed = [name for name in Fingerprint.model_fields if getattr(stored, name) != getattr(current, name)]
    if changed:
        return CacheRead(None, f"fingerprint changed ({', '.join(changed)})", age_s=age)
    return CacheRead(snapshot, "valid", age_s=age)


def write_cache(path: Path, snapshot: HardwareSnapshot, fingerprint: Fingerprint) -> None:
    data = {"kind": CACHE_KIND, "schema": SCHEMA_VERSION, "created": snapshot.detected_at,
            "fingerprint": fingerprint.model_dump(), "hardware": snapshot.model_dump()}
    try:
        write_json_atomic(path, data)
    except OSError as exc:
        raise OperationError(f"cannot write the hardware cache {path}: {exc.strerror or exc}",
                             hint="check that the workspace's out/ folder is writable (`infra bootstrap` makes it)"
                             ) from None


def load_hardware(path: Path, ttl_s: int, detect: Callable[[], HardwareSnapshot],
                  refresh: bool = False) -> HardwareState:
    """The cached snapshot when it can be trusted; otherwise ``detect()`` and write the cache anew."""
    current = fingerprint()
    found = CacheRead(None, "refresh asked") if refresh else read_cache(path, ttl_s, current)
    if found.snapshot is not None:
        return HardwareState(found.snapshot, "cache", path, ttl_s, found.age_s or 0.0, found.reason)
    snapshot = detect()
    write_cache(path, snapshot, current)
    return HardwareState(snapshot, "detected", path, ttl_s, 0.0, found.reason, found.warning)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"


def stack_hardware(stack: Stack, refresh: bool = False, nvml: Any = None) -> HardwareState:
    """The hardware state for the stack's workspace: its cache, its TTL, its native env."""
    from infra.workspace import Workspace

    def detect() -> HardwareSnapshot:
        from infra.hardware.detect import detect_hardware

        return detect_hardware(stack.workdir, stack.workdir / stack.spec.native_env.path, nvml=nvml)

    ttl = cache_ttl(stack.spec.hardware.cache_ttl_s)
    return load_hardware(Workspace(stack.workdir).hardware_cache, ttl, detect, refresh=refresh)
