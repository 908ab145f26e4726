"""The summary table's deltas compare with a previous record only where that comparison means something."""

from __future__ import annotations

import pytest

from infra.build.report import BuildSummary, ImageReport
from infra.cli.build_view import BuildView

MB = 1_000_000


def table(capsys: pytest.CaptureFixture[str], now: ImageReport, before: dict) -> str:
    capsys.readouterr()
    BuildView(quiet=True).print_summary(BuildSummary("docker-cpu", 1.0, [now], previous={now.name: before}))
    row = [line for line in capsys.readouterr().out.splitlines() if f" {now.name} " in line]
    assert len(row) == 1
    return row[0]


def record(status: str, size: int, image_id: str, seconds: float = 0.0) -> dict:
    return {"name": "asr", "status": status, "size_bytes": size, "image_id": image_id, "seconds": seconds}


def test_no_size_delta_against_a_failed_build(capsys: pytest.CaptureFixture[str]) -> None:
    now = ImageReport("asr", "speech-asr:latest", "up to date", "h", size_bytes=263_800_000, image_id="sha256:aaa")
    for status in ("failed", "blocked"):
        row = table(capsys, now, record(status, 0, "", seconds=12.0))
        assert "264 MB" in row and "MB)" not in row and "(+" not in row, row


def test_no_size_delta_for_the_same_image_id(capsys: pytest.CaptureFixture[str]) -> None:
    now = ImageReport("asr", "speech-asr:latest", "up to date", "h", size_bytes=263_800_000, image_id="sha256:aaa")
    row = table(capsys, now, record("built", 200 * MB, "sha256:aaa", seconds=30.0))
    assert "MB)" not in row, row


def test_a_real_change_still_shows_its_delta(capsys: pytest.CaptureFixture[str]) -> None:
    now = ImageReport("asr", "speech-asr:latest", "built", "h", seconds=40.0, size_bytes=263_800_000, image_id="sha256:bbb")
    for status in ("built", "up to date"):
        row = table(capsys, now, record(status, 200 * MB, "sha256:aaa", seconds=30.0))
        assert "(+63.8 MB)" in row, row
    assert "(+10.0 s)" in table(capsys, now, record("built", 200 * MB, "sha256:aaa", seconds=30.0))
    assert " s)" not in table(capsys, now, record("failed", 0, "", seconds=30.0)), "a failed build's time is no baseline"
