"""scripts/install-venv.sh, the virtualenv part of scripts/setup.sh, on a throwaway project and virtualenv:
a failed pip install fails the script and leaves no stamp; a good one is stamped and not repeated."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import REPO

SCRIPT = REPO / "scripts" / "install-venv.sh"
PYPROJECT = """\
[build-system]
requires = ["hatchling>=1.24"]
build-backend = "hatchling.build"

[project]
name = "setupprobe"
version = "0"

[project.optional-dependencies]
test = [{broken}]

[tool.hatch.metadata]
allow-direct-references = true
"""
# A requirement pip cannot meet, found out without any index: a wheel file that does not exist.
BROKEN = '"setupprobe-broken @ file:///nonexistent/setupprobe_broken-0-py3-none-any.whl"'


def install(project: Path, extras: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), str(project / "venv"), extras, "setupprobe"], cwd=project,
                          capture_output=True, text=True, timeout=300)


def test_a_failed_install_exits_non_zero_and_writes_no_stamp(tmp_path: Path) -> None:
    (tmp_path / "setupprobe").mkdir()
    (tmp_path / "setupprobe" / "__init__.py").write_text("")
    (tmp_path / "pyproject.toml").write_text(PYPROJECT.format(broken=""))
    stamp = tmp_path / "venv" / ".infra-stamp"

    good = install(tmp_path, "[test]")
    assert good.returncode == 0, good.stderr[-3000:]
    assert stamp.read_text().strip().endswith("[test]")
    again = install(tmp_path, "[test]")
    assert again.returncode == 0 and "installing" not in again.stderr, "a stamped install is not repeated"

    (tmp_path / "pyproject.toml").write_text(PYPROJECT.format(broken=BROKEN))
    bad = install(tmp_path, "[test]")
    assert bad.returncode != 0, bad.stderr[-3000:]
    assert "pip could not install .[test]" in bad.stderr
    assert not stamp.exists(), "a failed install must be tried again next time"
    assert "WARNING: Location" not in bad.stderr
