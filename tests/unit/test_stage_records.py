"""The stage contract (stages/_jobio.py run_stage): the peak memory in both records, and a full disk ending the
stage with one line, exit 1, whatever write it hits (the stage's output, its progress, job.json itself)."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import infra.jobproto
import stages._jobio
from stages._jobio import StageContext, run_stage


@pytest.fixture
def job_dir(tmp_path: Path) -> Path:
    (tmp_path / "job.json").write_text(json.dumps({"id": "j1", "config": {},
                                                   "stages": [{"name": "x", "status": "pending"}]}))
    return tmp_path


def entry(job_dir: Path) -> dict[str, Any]:
    return json.loads((job_dir / "job.json").read_text())["stages"][0]


def full_disk_for(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """Writes (through the job protocol) to files named ``names`` fail as on a full disk."""
    real = infra.jobproto.write_text_atomic

    def write(path: Path, text: str, mode: int = 0o644) -> None:
        if path.name in names:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, text, mode)

    monkeypatch.setattr(infra.jobproto, "write_text_atomic", write)
    monkeypatch.setattr(stages._jobio, "write_text_atomic", write)


def lines(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.strip()]


def test_both_records_carry_the_peak_memory(job_dir: Path) -> None:
    assert run_stage("x", lambda ctx: ctx.write_json("out.json", {"ok": True}), [str(job_dir)]) == 0
    record = json.loads((job_dir / "results" / "x.json").read_text())
    assert record["peak_rss_mb"] > 10
    assert record["peak_rss"]["self_mb"] + record["peak_rss"]["children_mb"] == pytest.approx(record["peak_rss_mb"],
                                                                                              abs=0.2)
    assert entry(job_dir)["peak_rss_mb"] == record["peak_rss_mb"] and entry(job_dir)["status"] == "done"


def test_the_peak_memory_counts_the_programs_the_stage_runs(job_dir: Path) -> None:
    """A stage that runs ffmpeg: the child's peak (here a Python that holds 150 MB) is in the record."""
    def work(ctx: StageContext) -> None:
        subprocess.run([sys.executable, "-c", "x = bytearray(150 * 2**20); x[::4096] = b'1' * len(x[::4096])"],
                       check=True)

    assert run_stage("x", work, [str(job_dir)]) == 0
    record = json.loads((job_dir / "results" / "x.json").read_text())
    assert record["peak_rss"]["children_mb"] >= 150 and record["peak_rss_mb"] >= 150 + record["peak_rss"]["self_mb"] - 1


def test_a_full_disk_while_writing_the_output_is_one_line(job_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    full_disk_for(monkeypatch, "out.json")
    assert run_stage("x", lambda ctx: ctx.write_json("out.json", {"ok": True}), [str(job_dir)]) == 1
    assert lines(capsys.readouterr().err) == ["x: disk full while writing out.json"]
    assert (entry(job_dir)["status"], entry(job_dir)["error"]) == ("failed", "disk full while writing out.json")
    assert not (job_dir / "out.json").exists()


def test_a_full_disk_met_by_the_stage_s_own_write_is_one_line_too(job_dir: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    def work(ctx: StageContext) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(ctx.path("features.npy")))

    assert run_stage("x", work, [str(job_dir)]) == 1
    assert lines(capsys.readouterr().err) == ["x: disk full while writing features.npy"]


def test_a_full_disk_while_reporting_progress_ends_the_stage(job_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    full_disk_for(monkeypatch, "x.json")            # progress/x.json and results/x.json

    def work(ctx: StageContext) -> None:
        ctx.progress(60.0).update(30.0, force=True)

    assert run_stage("x", work, [str(job_dir)]) == 1
    assert lines(capsys.readouterr().err) == ["x: disk full while writing progress/x.json"]
    assert entry(job_dir)["status"] == "failed" and "result" not in entry(job_dir)


def test_when_job_json_cannot_be_written_the_line_still_comes(job_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    before = (job_dir / "job.json").read_text()
    full_disk_for(monkeypatch, "job.json")
    assert run_stage("x", lambda ctx: None, [str(job_dir)]) == 1
    assert lines(capsys.readouterr().err) == ["x: disk full while writing job.json"]
    assert (job_dir / "job.json").read_text() == before


def test_when_only_the_final_records_fail_the_stage_says_it_could_not_record(
        job_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def work(ctx: StageContext) -> None:
        full_disk_for(monkeypatch, "job.json", "x.json")

    assert run_stage("x", work, [str(job_dir)]) == 1
    assert lines(capsys.readouterr().err) == ["x: cannot record the result: disk full while writing results/x.json"]
    assert entry(job_dir)["status"] == "running"          # the last state it could write, still valid JSON


def test_another_write_error_names_the_file_and_the_reason(job_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    def refuse(path: Path, text: str, mode: int = 0o644) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(stages._jobio, "write_text_atomic", refuse)
    assert run_stage("x", lambda ctx: ctx.write_text("out.srt", "1\n"), [str(job_dir)]) == 1
    assert lines(capsys.readouterr().err) == ["x: cannot write out.srt: Read-only file system"]
