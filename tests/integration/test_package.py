"""The wheel carries the default spec and images, so an installed infra works outside the repo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import REPO


def test_wheel_works_outside_the_repo(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"), str(REPO)],
                   check=True, capture_output=True, timeout=300)
    wheel = next((tmp_path / "dist").glob("infra-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        assert {"infra/_data/infra.yaml", "infra/_data/infra.lock"} <= names
        assert "infra/_data/images/asr/image.yaml" in names
        assert {"infra/_data/templates/Dockerfile.j2", "infra/_data/templates/compose.yaml.j2",
                "infra/_data/stages/__init__.py"} <= names
        assert "infra/serve/templates/status.html" in names            # the status page's template
        zf.extractall(tmp_path / "site")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "site"))
    result = subprocess.run([sys.executable, "-m", "infra", "config", "validate", "--json"],
                            cwd=elsewhere, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["embedded"] is True
    assert summary["spec"] == str(tmp_path / "site" / "infra" / "_data" / "infra.yaml")
    rendered = subprocess.run([sys.executable, "-m", "infra", "render", "--mode", "docker-cpu"],
                              cwd=elsewhere, env=env, capture_output=True, text=True, timeout=60)
    assert rendered.returncode == 0, rendered.stderr
    bake = json.loads((elsewhere / ".infra/out/docker-cpu/docker-bake.json").read_text())
    stages = (elsewhere / bake["target"]["asr"]["contexts"]["stages"]).resolve()
    assert stages == (tmp_path / "site" / "infra" / "_data" / "stages").resolve()
    assert (elsewhere / bake["target"]["asr"]["context"] / bake["target"]["asr"]["dockerfile"]).resolve() == \
        (elsewhere / ".infra/out/docker-cpu/dockerfiles/asr.Dockerfile").resolve()
    # the built-in spec's lock travels with it: the rendered images install exactly what it pins
    assert "| pip install --require-hashes -r /dev/stdin" in \
        (elsewhere / ".infra/out/docker-cpu/dockerfiles/asr.Dockerfile").read_text()
    # the status page's template is read from the installed package
    page = subprocess.run([sys.executable, "-c", "from infra.serve.page import template; print(template().filename)"],
                          cwd=elsewhere, env=env, capture_output=True, text=True, timeout=60)
    assert page.returncode == 0, page.stderr
    assert page.stdout.strip() == str(tmp_path / "site" / "infra" / "serve" / "templates" / "status.html")
