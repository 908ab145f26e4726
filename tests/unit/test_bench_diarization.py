"""bench/diarization.py's figures: DER pooled over clips (long clips weigh more) and the mean of the clips' DERs,
per kind of clip, and the share of clips whose speaker count is right."""

from __future__ import annotations

import pytest

from bench.diarization import summary
from infra.quality.scoring import DiarizationErrors


def row(kind: str, right: bool, missed: float, false: float, confusion: float, reference: float) -> dict:
    return {"kind": kind, "right": right, 0.0: DiarizationErrors(missed, false, confusion, reference)}


def test_pooled_and_mean_der_and_the_speaker_count() -> None:
    rows = [row("conversation", False, 3.0, 1.0, 2.0, 30.0), row("mixture of 2", True, 0.0, 1.0, 0.0, 10.0)]
    found = summary(rows, (0.0,))
    assert found["all"][0.0]["der"] == pytest.approx(7.0 / 40.0)           # errors over all reference speech
    assert found["all"]["mean_der"] == pytest.approx((6.0 / 30.0 + 1.0 / 10.0) / 2)
    assert found["all"][0.0]["missed"] == pytest.approx(3.0 / 40.0)
    assert found["all"]["count_ok"] == 0.5
    assert found["conversation"]["clips"] == 1 and found["mixture of 2"][0.0]["der"] == pytest.approx(0.1)
