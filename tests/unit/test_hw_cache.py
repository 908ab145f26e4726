"""The hardware cache: age, fingerprint, schema, corrupt and foreign files, atomic writes, the TTL setting."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from infra.errors import BadInputError
from infra.hardware import cache as c
from infra.hardware.snapshot import HardwareSnapshot
from tests.hardware_data import snapshot

SNAP = snapshot()


def fresh() -> HardwareSnapshot:
    """The test snapshot, detected just now (the cache is dated by detection)."""
    return SNAP.model_copy(update={"detected_at": time.time()})


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "out" / "hardware_cache.json"


def written(path: Path, **changes: object) -> Path:
    c.write_cache(path, fresh(), c.fingerprint())
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))
    return path


def test_fresh_cache_is_trusted(path: Path) -> None:
    found = c.read_cache(written(path), 3600, c.fingerprint())
    assert found.snapshot is not None and found.snapshot.host == SNAP.host
    assert found.reason == "valid" and found.warning is None


def test_age_boundary(path: Path) -> None:
    now = json.loads(written(path).read_text())["created"]
    assert c.read_cache(path, 600, c.fingerprint(), now=now + 600).snapshot is not None
    late = c.read_cache(path, 600, c.fingerprint(), now=now + 601)
    assert late.snapshot is None and late.reason.startswith("expired") and late.warning is None
    assert c.read_cache(path, 0, c.fingerprint(), now=now + 1).snapshot is None
    future = c.read_cache(path, 600, c.fingerprint(), now=now - c.CLOCK_SKEW_S - 1)
    assert future.snapshot is None and "future" in future.reason


@pytest.mark.parametrize("field, value", [("host", "elsewhere"), ("cpu_count", 64), ("ram_mib", 1),
                                          ("gpu_count", 8), ("driver", "999.1")])
def test_fingerprint_change_invalidates(path: Path, field: str, value: object) -> None:
    written(path)
    moved = c.fingerprint().model_copy(update={field: value})
    found = c.read_cache(path, 3600, moved)
    assert found.snapshot is None and found.reason == f"fingerprint changed ({field})"


@pytest.mark.parametrize("content, reason", [
    ("{not json", "corrupt"), ("\x00\x01garbage", "corrupt"), ('{"some": "other tool"}', "foreign"),
    ("[1, 2, 3]", "foreign"), ("", "corrupt"),
])
def test_corrupt_or_foreign_file_is_a_warning(path: Path, content: str, reason: str) -> None:
    path.parent.mkdir(parents=True)
    path.write_text(content)
    found = c.read_cache(path, 3600, c.fingerprint())
    assert found.snapshot is None and found.reason == reason and "replacing it" in (found.warning or "")


def test_damaged_snapshot_inside_a_real_cache_is_corrupt(path: Path) -> None:
    written(path, hardware={"host": "x"})
    assert c.read_cache(path, 3600, c.fingerprint()).reason == "corrupt"


def test_other_schema_is_redetected_quietly(path: Path) -> None:
    written(path, schema=c.SCHEMA_VERSION + 1)
    found = c.read_cache(path, 3600, c.fingerprint())
    assert found.snapshot is None and "schema" in found.reason and found.warning is None


def test_load_uses_the_cache_and_replaces_a_bad_one(path: Path) -> None:
    calls = []

    def detect() -> HardwareSnapshot:
        calls.append(1)
        return fresh()

    path.parent.mkdir(parents=True)
    path.write_text("garbage")
    first = c.load_hardware(path, 3600, detect)
    assert first.source == "detected" and first.warning and len(calls) == 1
    second = c.load_hardware(path, 3600, detect)
    assert second.source == "cache" and second.warning is None and len(calls) == 1
    assert second.expires_in_s > 3500
    third = c.load_hardware(path, 3600, detect, refresh=True)
    assert third.source == "detected" and third.reason == "refresh asked" and len(calls) == 2


def test_concurrent_writers_leave_one_valid_file(path: Path) -> None:
    snap = fresh()
    threads = [threading.Thread(target=c.write_cache, args=(path, snap, c.fingerprint())) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert c.read_cache(path, 3600, c.fingerprint()).snapshot == snap
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary files left


def test_ttl_setting_and_its_env_override() -> None:
    assert c.cache_ttl(3600, {}) == 3600
    assert c.cache_ttl(3600, {c.TTL_ENV: "600"}) == 600
    assert c.cache_ttl(3600, {c.TTL_ENV: " "}) == 3600
    for bad in ("abc", "-1", "1.5"):
        with pytest.raises(BadInputError, match=c.TTL_ENV):
            c.cache_ttl(3600, {c.TTL_ENV: bad})


def test_reading_a_valid_cache_imports_neither_psutil_nor_pynvml(path: Path) -> None:
    written(path)
    code = ("import sys; from pathlib import Path; from infra.hardware import cache as c; "
            f"found = c.load_hardware(Path({str(path)!r}), 3600, None); "
            "assert found.source == 'cache', found; "
            "print(sorted(m for m in ('psutil', 'pynvml') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
