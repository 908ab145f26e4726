"""`infra lock` against the real engine, apt and pip: a small spec is locked, one image is built from the lock
and holds exactly the versions the lock pins; a spec changed after locking is refused by `infra build`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

pytestmark = pytest.mark.docker
SPEC = """\
project: speech            # the default spec's project, so its offline base is reused
tag: locktest
bases:
  bookworm:
    debootstrap: {debootstrap}
modes:
  native: {{base: bookworm}}
  docker-cpu: {{base: bookworm}}
  docker-gpu: {{base: bookworm, gpu: true}}
"""


def infra(*args: str, cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    from tests.conftest import _HOST_CA

    env = {**os.environ, **({"INFRA_CA_BUNDLE": _HOST_CA} if _HOST_CA else {})}
    return subprocess.run([sys.executable, "-m", "infra", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture(scope="module")
def locked(tmp_path_factory, offline_base) -> Path:
    """A spec of the shipped base image and one child with a small apt package (jq, two libraries with it)
    and a small pip package with a dependency (python-dateutil, six), locked."""
    project = tmp_path_factory.mktemp("lock")
    default = yaml.safe_load((REPO / "infra.yaml").read_text())
    recipe = json.dumps(default["bases"]["bookworm"]["debootstrap"])
    (project / "infra.yaml").write_text(SPEC.format(debootstrap=recipe))
    shutil.copytree(REPO / "images" / "base", project / "images" / "base")
    (project / "images" / "tool").mkdir()
    (project / "images" / "tool" / "image.yaml").write_text(
        "parent: base\napt: [jq]\npip: [python-dateutil==2.9.0.post0]\n")
    result = infra("lock", cwd=project)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "bookworm: 2 images" in result.stdout and "infra.lock: written" in result.stdout
    return project


def test_the_lock_pins_apt_and_pip_with_their_dependencies(locked: Path) -> None:
    from infra.spec.lock import read_lock

    lock = read_lock(locked / "infra.lock", "infra.lock")
    assert lock is not None
    images = lock.bases["bookworm"].images
    assert set(images["base"].apt) == {"tini"} and not images["base"].pip
    tool = images["tool"]
    assert {"jq", "libjq1", "libonig5"} <= set(tool.apt) and "tini" not in tool.apt   # the parent's stay the parent's
    assert set(tool.pip) == {"python-dateutil", "six"} and tool.pip["python-dateutil"].version == "2.9.0.post0"
    assert tool.pip_hashed
    again = infra("lock", cwd=locked)
    assert again.returncode == 0 and "infra.lock: unchanged" in again.stdout, again.stderr[-2000:]


def test_an_image_built_from_the_lock_holds_exactly_its_versions(locked: Path) -> None:
    from infra.spec.lock import read_lock

    built = infra("build", "--mode", "docker-cpu", cwd=locked)
    assert built.returncode == 0, built.stderr[-3000:]
    tool = read_lock(locked / "infra.lock", "infra.lock").bases["bookworm"].images["tool"]  # type: ignore[union-attr]
    script = ("dpkg-query -W -f '${Package} ${Version}\\n' " + " ".join(sorted(tool.apt)) +
              " && python3 -m pip list --format=json --disable-pip-version-check")
    out = subprocess.run(["docker", "run", "--rm", "--entrypoint", "sh", "speech-tool:locktest-cpu", "-c", script],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    lines = out.splitlines()
    debs = dict(line.split(" ", 1) for line in lines[:-1])
    assert debs == tool.apt
    pips = {p["name"].lower(): p["version"] for p in json.loads(lines[-1])}
    assert {name: pips.get(name) for name in tool.pip} == {name: pin.version for name, pin in tool.pip.items()}
    dockerfile = (locked / ".infra/out/docker-cpu/dockerfiles/tool.Dockerfile").read_text()
    assert "--require-hashes -r /dev/stdin" in dockerfile


def test_build_refuses_a_lock_older_than_the_spec(locked: Path, tmp_path: Path) -> None:
    project = tmp_path / "changed"
    shutil.copytree(locked, project, ignore=shutil.ignore_patterns(".infra", "out"))
    (project / "images" / "tool" / "image.yaml").write_text("parent: base\napt: [jq, less]\n")
    result = infra("build", "--mode", "docker-cpu", cwd=project)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: infra.lock does not match images/tool/image.yaml (its packages, its parent's or its "
                      "base changed since the lock was made); run `infra lock` to refresh it"]
