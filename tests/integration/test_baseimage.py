"""`infra base`: the offline base made from Debian packages, reused when it exists.

Only the tests marked docker need an engine; the others read the spec and the host.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from infra.build.base import BaseResult, ensure_bases, host_mirror
from infra.spec import load_stack
from infra.engine import Engine
from tests.conftest import REPO


@pytest.mark.docker
def test_offline_base_runs_python_of_the_spec_and_is_labelled(offline_base: str) -> None:
    out = subprocess.run(["docker", "run", "--rm", offline_base, "python3", "-c",
                          "import sys, venv; print('%d.%d' % sys.version_info[:2])"],
                         capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    assert out == "3.11"
    labels = Engine().image_labels(offline_base)
    assert labels["io.infra.base.suite"] == "bookworm"
    assert labels["io.infra.python"] == "3.11"
    assert "python3-venv" in labels["io.infra.base.packages"].split()


@pytest.mark.docker
def test_existing_base_is_reused_and_every_mode_shares_it(offline_base: str) -> None:
    stack = load_stack(REPO / "infra.yaml")
    results = [e for e in ensure_bases(stack, list(stack.spec.modes)) if isinstance(e, BaseResult)]
    assert [(r.ref, r.status) for r in results] == [(offline_base, "up to date")]
    assert results[0].size_bytes > 50_000_000


def test_a_changed_recipe_is_a_new_base(project) -> None:
    before = load_stack(project / "infra.yaml").base_ref("docker-cpu")
    text = (project / "infra.yaml").read_text().replace("packages: [python3, python3-venv, ca-certificates]",
                                                         "packages: [python3, python3-venv, ca-certificates, curl]")
    (project / "infra.yaml").write_text(text)
    after = load_stack(project / "infra.yaml").base_ref("docker-cpu")
    assert before != after and after.startswith("speech-os-bookworm:bookworm-")


@pytest.mark.docker
def test_each_mode_keeps_its_own_images(tmp_path: Path, offline_base: str) -> None:
    """A docker-gpu build beside docker-cpu's: both images exist, and docker-cpu's is still up to date."""
    text = (REPO / "infra.yaml").read_text().replace("project: speech\n", "project: sidebyside\n")
    (tmp_path / "infra.yaml").write_text(text)
    shutil.copytree(REPO / "images", tmp_path / "images")
    stack = load_stack(tmp_path / "infra.yaml")
    base = stack.base_ref("docker-cpu")
    refs = {mode: stack.image_ref("base", mode) for mode in ("docker-cpu", "docker-gpu")}
    assert len(set(refs.values())) == 2
    subprocess.run(["docker", "tag", offline_base, base], check=True)   # the same recipe: no second debootstrap

    def build(mode: str) -> str:
        result = subprocess.run([sys.executable, "-m", "infra", "build", "--mode", mode, "--only", "base", "--json"],
                                cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        [image] = json.loads(result.stdout)["images"]
        assert image["ref"] == refs[mode]
        return image["status"]

    try:
        assert build("docker-cpu") in ("built", "up to date")
        assert build("docker-gpu") in ("built", "up to date")
        assert build("docker-cpu") == "up to date", "docker-gpu's build replaced docker-cpu's image"
        for mode, ref in refs.items():
            assert Engine().image_labels(ref)["io.infra.mode"] == mode
    finally:
        subprocess.run(["docker", "image", "rm", "-f", *refs.values(), base], capture_output=True)


def test_host_mirror_is_a_debian_archive() -> None:
    assert host_mirror().startswith("http")


def test_unknown_mode_is_bad_input(run_cli, tmp_path) -> None:
    result = run_cli("base", "--mode", "docker-tpu", cwd=tmp_path)
    assert result.code == 2
    assert result.stderr.startswith("error: --mode 'docker-tpu' is not a mode")
