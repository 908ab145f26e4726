"""Where stages/_segmentation.py cuts audio into the model's 10 s chunks: every step, the last reaching the end."""

from __future__ import annotations

from stages._segmentation import CHUNK, SAMPLE_RATE, chunk_starts, model_path

STEP = 5 * SAMPLE_RATE


def test_audio_shorter_than_a_chunk_is_one_padded_chunk() -> None:
    assert chunk_starts(3 * SAMPLE_RATE, STEP) == [0]
    assert chunk_starts(CHUNK, STEP) == [0]


def test_chunks_cover_the_audio_to_its_last_sample() -> None:
    assert chunk_starts(25 * SAMPLE_RATE, STEP) == [0, STEP, 2 * STEP, 3 * STEP]          # ends exactly at 25 s
    starts = chunk_starts(27 * SAMPLE_RATE, STEP)
    assert starts == [0, STEP, 2 * STEP, 3 * STEP, 4 * STEP] and starts[-1] + CHUNK >= 27 * SAMPLE_RATE


def test_the_model_is_used_only_when_the_cache_holds_it(tmp_path) -> None:
    assert model_path(None) is None
    assert model_path(tmp_path) is None
    (tmp_path / "pyannote" / "segmentation-3.0").mkdir(parents=True)
    (tmp_path / "pyannote" / "segmentation-3.0" / "segmentation-3.0.onnx").write_bytes(b"onnx")
    assert model_path(tmp_path) == tmp_path / "pyannote" / "segmentation-3.0" / "segmentation-3.0.onnx"


def test_without_onnxruntime_the_model_is_reported_unusable(monkeypatch) -> None:
    import sys

    from stages._segmentation import runtime_available

    monkeypatch.setitem(sys.modules, "onnxruntime", None)        # what `import onnxruntime` meets when it is absent
    assert runtime_available() is False
