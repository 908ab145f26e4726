"""`infra doctor` against the real engine, and with the engine unreachable."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from infra.hardware.doctor import DISK_FAIL_GB, DISK_WARN_GB
from tests.conftest import REPO

pytestmark = pytest.mark.docker


def infra(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "infra", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def disk_status(where: Path) -> str:
    """What the disk line should say for the space free now (the machine's disk is shared and varies)."""
    free_gb = shutil.disk_usage(where).free / 1e9
    return "ok" if free_gb >= DISK_WARN_GB else "warn" if free_gb >= DISK_FAIL_GB else "fail"


def test_doctor_is_green_on_the_set_up_machine(tmp_path: Path) -> None:
    before = disk_status(tmp_path)
    result = infra("doctor", "--json", cwd=tmp_path)
    after = disk_status(tmp_path)
    checks = {c["name"]: c for c in json.loads(result.stdout)}
    for name in ("spec", "engine", "buildkit", "buildx", "compose", "swarm", "registry", "ffmpeg"):
        assert checks[name]["status"] == "ok", checks[name]
    assert checks["disk"]["status"] in {before, after}, (checks["disk"], before, after)
    assert str(tmp_path) in checks["disk"]["detail"]
    assert "named build contexts" in checks["buildkit"]["detail"]
    assert all(c["status"] == "ok" or c["hint"] for c in checks.values()), "every line that is not green has a fix"
    assert result.returncode == (1 if any(c["status"] == "fail" for c in checks.values()) else 0)


def test_doctor_with_no_engine_fails_with_a_hint(tmp_path: Path) -> None:
    import os

    env = dict(os.environ, DOCKER_HOST=f"unix://{tmp_path}/no-such.sock")
    result = infra("doctor", "--json", cwd=tmp_path, env=env)
    assert result.returncode == 1
    checks = {c["name"]: c for c in json.loads(result.stdout)}
    assert checks["engine"]["status"] == "fail"
    assert "no Docker engine answers" in checks["engine"]["detail"]
    assert "setup-docker.sh" in checks["engine"]["hint"]
    assert "Traceback" not in result.stderr


def test_doctor_table_names_every_check(tmp_path: Path) -> None:
    result = infra("doctor", cwd=tmp_path)
    for name in ("engine", "buildkit", "buildx", "compose", "swarm", "registry", "ffmpeg", "disk"):
        assert name in result.stdout


def test_setup_script_changes_nothing_when_the_engine_is_ready() -> None:
    result = subprocess.run(["bash", str(REPO / "scripts" / "setup-docker.sh")], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "nothing to do" in result.stderr
