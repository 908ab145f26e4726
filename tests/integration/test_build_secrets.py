"""A pip.conf for the site's index reaches pip as a BuildKit secret: pip obeys it, no layer keeps it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.docker
TOKEN = "pipconf-token-that-must-not-leak"
REF = "speech-pipconf-probe:latest-cpu"


def spec(project: Path) -> None:
    base = (REPO / "infra.yaml").read_text()
    bases = base[base.index("bases:"):base.index("modes:")]
    (project / "infra.yaml").write_text(
        "project: speech\n" + bases + "modes:\n  docker-cpu:\n    base: bookworm\n")
    (project / "images" / "pipconf-probe").mkdir(parents=True)
    (project / "images" / "pipconf-probe" / "image.yaml").write_text("modes: [docker-cpu]\npip: [six==1.17.0]\n")


def test_pip_config_secret_is_used_and_never_kept(tmp_path: Path, offline_base, ca_bundle) -> None:
    spec(tmp_path)
    conf = tmp_path / "pip.conf"
    conf.write_text(f"# index credentials would go here: {TOKEN}\n[install]\ntarget = /opt/pipconf-target\n")
    env = {"INFRA_PIP_CONFIG": str(conf), "PATH": "/usr/local/bin:/usr/bin:/bin"}
    if ca_bundle:
        env["INFRA_CA_BUNDLE"] = ca_bundle
    try:
        result = subprocess.run([sys.executable, "-m", "infra", "build", "--mode", "docker-cpu", "--no-cache"],
                                cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        listing = subprocess.run(["docker", "run", "--rm", REF, "ls", "/opt/pipconf-target"],
                                 capture_output=True, text=True, check=True).stdout.split()
        assert "six.py" in listing, "pip installed where the secret pip.conf told it to"
        seen = subprocess.run(["docker", "history", "--no-trunc", REF], capture_output=True, text=True).stdout
        seen += subprocess.run(["docker", "image", "inspect", REF], capture_output=True, text=True).stdout
        assert TOKEN not in seen and "pipconf-target" not in seen
        rendered = "".join(p.read_text() for p in (tmp_path / ".infra").rglob("*") if p.is_file())
        assert TOKEN not in rendered and "id=pip_conf,target=/etc/pip.conf" in rendered
        absent = subprocess.run(["docker", "run", "--rm", REF, "sh", "-c", "test ! -e /etc/pip.conf && echo gone"],
                                capture_output=True, text=True).stdout.strip()
        assert absent == "gone"
    finally:
        subprocess.run(["docker", "image", "rm", "-f", REF], capture_output=True)


def test_missing_pip_config_is_bad_input(tmp_path: Path) -> None:
    spec(tmp_path)
    result = subprocess.run([sys.executable, "-m", "infra", "build", "--mode", "docker-cpu"], cwd=tmp_path,
                            env={"INFRA_PIP_CONFIG": str(tmp_path / "nope.conf"), "PATH": "/usr/local/bin:/usr/bin:/bin"},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith("error: secrets.pip_config: ") and "not found" in result.stderr.splitlines()[0]
