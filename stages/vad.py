"""Stage vad: where people speak in audio.wav, as vad.json.

Two backends, the first that can run:

- ``pyannote``: pyannote.audio's segmentation model, only when its weights are in
  the model cache (they are gated on the hub, so `infra bootstrap` fetches them
  only with a token);
- ``silero``: Silero VAD v6 from the ONNX file that faster-whisper's wheel ships,
  run by onnxruntime; no torch, no download. It runs on the CPU whatever device
  the job asks for (a small model, as faster-whisper runs it); the result record's
  ``device_used`` says so.

Segments longer than the job's chunk length are cut, so that each fits one
Whisper window: Silero cuts at a short pause where there is one, pyannote's
segments are cut into equal parts.

Silero reads audio.wav a block at a time (BLOCK_S, 32 s; onnxruntime's working
memory follows the audio it is given at once, about 0.6 MB a second), so its
memory does not grow with the film. The model's state (its LSTM memory and the
last samples of the previous window) is carried from one block to the next, so
every 32 ms window gets the same speech probability as in one pass over the
whole file, and the probabilities go through one rule (``SpeechTracker``, the
rule of faster-whisper's ``get_speech_timestamps``) that runs across the
blocks: a segment that crosses a block's end is one segment, and vad.json is
the same, block size or not. Progress (seconds read out of audio.wav's length)
goes to progress/vad.json. onnxruntime runs on one thread, as in faster-whisper,
whatever $INFRA_THREADS gives the stage (at least one).

pyannote's pipeline runs on the whole file: it slides 10 s windows over the
audio and aggregates their overlapping scores before its on/off thresholds and
minimum durations, so blocks would change segments near each block's edge.

Quiet speech. Silero's probabilities fall with the level: speech 45 dB under its
usual level gets few windows over the threshold, 50 dB under none at all. So the
stage measures the audio's loudness as it reads it (stages/_loudness.py: each
100 ms frame's RMS in dBFS; a frame under SILENCE_DBFS is silence) and, when a
file that is not silent (at least MIN_SOUND_S of sounding frames) gets speech
for less than MIN_SPEECH_SHARE of its sounding time (QUIET_MIN_SPEECH_SHARE
when the file is quiet: its louder parts under QUIET_DBFS), falls back
(``choose_speech``): Silero's probabilities, kept from the one pass (one float
per 32 ms), go through the same rule again at FALLBACK_THRESHOLD, used when it
finds more speech (``fallback: "threshold 0.18"``). A quiet file whose speech is
still too little (nothing, often) goes to ASR whole, in windows of one chunk
(``fallback: "whole file"``), and Whisper decides. A file at a usual level in
which neither threshold hears speech has none (music, noise): given loud pink
noise, Whisper tiny.en writes "You". vad.json, the result record and the stage's
entry in job.json say what happened, with the loudness. A silent file has no
speech and no fallback. The thresholds are the constants below, in one place,
for tuning on the development set; bench/quiet_speech.py shows what they do
level by level.
Usage: python3 -m stages.vad [JOB_DIR]
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from infra.jobproto import JOB_FILE, update_stage_entry
from stages._audio import AUDIO_FILE, SAMPLE_RATE, read_wav, wav_duration_s, wav_spans
from stages._device import cpu_only, torch_device
from stages._jobio import StageContext, StageError, StageMeter, main_of, write_failure
from stages._loudness import Loudness
from stages._models import package_version, pyannote_input, pyannote_segmentation

# The VAD's thresholds, all here: tuned on the development set only (bench/diarization.py for Silero's four
# values, bench/vad_fallback.py for the lower threshold; docs/BENCHMARKS.md), never on the other sets.
THRESHOLD = 0.2                        # Silero's speech probability that starts speech
MIN_SPEECH_MS = 100                    # shorter speech is dropped
MIN_SILENCE_MS = 100                   # a pause this long ends speech
SPEECH_PAD_MS = 100                    # added to each end of a segment
FALLBACK_THRESHOLD = 0.18              # THRESHOLD's stand-in when a file that is not silent gets too little speech
PYANNOTE_MIN_SPEECH_MS = 250           # pyannote's pipeline keeps its own durations: the tuning ran Silero only
PYANNOTE_MIN_SILENCE_MS = 300
SILENCE_DBFS = -85.0                   # a 100 ms frame whose RMS is under this is silence
MIN_SOUND_S = 1.0                      # a file with less sounding time than this is silent: no fallback
MIN_SPEECH_SHARE = 0.2                 # speech under this share of the sounding time is too little
QUIET_DBFS = -45.0                     # a file whose louder parts are under this is quiet: Silero may miss its speech
QUIET_MIN_SPEECH_SHARE = 0.5           # the same share for a quiet file; still under it after the fallback: whole file

NAME = "vad"
OUTPUT = "vad.json"
DEFAULT_CHUNK_S = 30
WINDOW = 512                           # samples per Silero probability (32 ms)
CONTEXT = 64                           # samples of the window before that the model sees with each window
STATE_SHAPE = (1, 1, 128)              # Silero v6's LSTM state (h and c)
BLOCK_S = WINDOW * 1000 / SAMPLE_RATE  # 32 s: a whole number of windows
SILERO_FILE = "silero_vad_v6.onnx"


def as_float32(value: float) -> float:
    """``value`` rounded to the nearest float32: the model's probabilities are float32 and numpy compares them with
    a threshold in float32, so 0.35 must be float32's 0.35 for a probability of exactly that to fall the same way."""
    return struct.unpack("f", struct.pack("f", value))[0]


class SpeechTracker:
    """Silero's rule from window probabilities to speech segments (in samples), fed the probabilities in order.

    Speech starts at a window at or over ``threshold``; it ends where the probability falls under
    ``threshold - 0.15`` for ``min_silence_ms``; a segment that grows past ``max_speech_s`` is cut at its
    last pause of 98 ms or more (else where it is); segments no longer than ``min_speech_ms`` are dropped;
    at the end, each is padded by ``speech_pad_ms`` on both sides, or by half the gap when the gap to the
    next is shorter than two pads. The same numbers as faster-whisper's ``get_speech_timestamps``."""

    def __init__(self, max_speech_s: float, threshold: float = THRESHOLD, min_speech_ms: int = MIN_SPEECH_MS,
                 min_silence_ms: int = MIN_SILENCE_MS, speech_pad_ms: int = SPEECH_PAD_MS) -> None:
        self.on, self.off = as_float32(threshold), as_float32(max(threshold - 0.15, 0.01))
        self.min_speech = SAMPLE_RATE * min_speech_ms / 1000
        self.pad = SAMPLE_RATE * speech_pad_ms / 1000
        self.max_speech = SAMPLE_RATE * max_speech_s - WINDOW - 2 * self.pad
        self.min_silence = SAMPLE_RATE * min_silence_ms / 1000
        self.short_pause = SAMPLE_RATE * 98 / 1000
        self.found: list[list[int]] = []
        self.start: int | None = None      # where the segment being heard began; None: silence
        self.quiet_from = 0                # where the probability last fell under `off` (0: not falling)
        self.pause_end = 0                 # the end of the last pause long enough to cut at, when too long
        self.resume_at = 0                 # where speech came back after that pause
        self.windows = 0

    def feed(self, probabilities: Iterable[float]) -> None:
        for p in probabilities:
            self.step(self.windows * WINDOW, float(p))
            self.windows += 1

    def step(self, at: int, p: float) -> None:
        if p >= self.on and self.quiet_from:
            self.quiet_from = 0
            if self.resume_at < self.pause_end:
                self.resume_at = at
        if self.start is None:
            if p >= self.on:
                self.start = at
            return
        if at - self.start > self.max_speech:
            if not self.pause_end:
                self.found.append([self.start, at])
                self.start, self.pause_end, self.resume_at, self.quiet_from = None, 0, 0, 0
                return
            self.found.append([self.start, self.pause_end])
            self.start = self.resume_at if self.resume_at >= self.pause_end else None
            self.pause_end = self.resume_at = self.quiet_from = 0
            if self.start is None:
                return
        if p < self.off:
            self.quiet_from = self.quiet_from or at
            if at - self.quiet_from > self.short_pause:
                self.pause_end = self.quiet_from
            if at - self.quiet_from >= self.min_silence:
                if self.quiet_from - self.start > self.min_speech:
                    self.found.append([self.start, self.quiet_from])
                self.start, self.pause_end, self.resume_at, self.quiet_from = None, 0, 0, 0

    def finish(self, samples: int) -> list[tuple[int, int]]:
        """The segments, padded, for audio of ``samples`` samples in all."""
        if self.start is not None and samples - self.start > self.min_speech:
            self.found.append([self.start, samples])
            self.start = None
        found = self.found
        for i, seg in enumerate(found):
            if i == 0:
                seg[0] = int(max(0, seg[0] - self.pad))
            if i + 1 < len(found):
                gap = found[i + 1][0] - seg[1]
                shift = gap // 2 if gap < 2 * self.pad else self.pad
                seg[1] = int(seg[1] + shift) if gap < 2 * self.pad else int(min(samples, seg[1] + shift))
                found[i + 1][0] = int(max(0, found[i + 1][0] - shift))
            else:
                seg[1] = int(min(samples, seg[1] + self.pad))
        return [(a, b) for a, b in found]


def silero_session(threads: int = 1) -> Any:
    """Silero VAD v6 from faster-whisper's assets, in onnxruntime on ``threads`` threads (as faster-whisper runs it)."""
    import onnxruntime
    from faster_whisper.utils import get_assets_path

    options = onnxruntime.SessionOptions()
    options.inter_op_num_threads = options.intra_op_num_threads = threads
    options.enable_cpu_mem_arena = False
    options.log_severity_level = 4
    return onnxruntime.InferenceSession(str(Path(get_assets_path()) / SILERO_FILE),
                                        providers=["CPUExecutionProvider"], sess_options=options)


def silero_probabilities(blocks: Iterable[Any], session: Any) -> Iterator[tuple[Any, int]]:
    """(speech probabilities, samples read so far) block by block: one probability per 512-sample window.

    The LSTM state and the last samples of the previous window go on to the next block, and samples that
    do not fill a window wait for the next block; the end is padded with silence to a whole window (a
    whole extra window when the audio ends on one, as faster-whisper pads), so the numbers are those of
    one pass over all the audio."""
    import numpy as np

    h, c = np.zeros(STATE_SHAPE, np.float32), np.zeros(STATE_SHAPE, np.float32)
    context = np.zeros(CONTEXT, np.float32)
    rest = np.zeros(0, np.float32)
    read = 0

    def run(audio: Any) -> Any:
        nonlocal h, c, context
        windows = audio.reshape(-1, WINDOW)
        before = np.concatenate([context[None, :], windows[:-1, -CONTEXT:]])
        out, h, c = session.run(None, {"input": np.concatenate([before, windows], axis=1), "h": h, "c": c})
        context = windows[-1, -CONTEXT:].copy()
        return np.asarray(out).reshape(-1)

    for block in blocks:
        read += len(block)
        audio = np.concatenate([rest, block]) if len(rest) else block
        whole = len(audio) // WINDOW * WINDOW
        rest = audio[whole:]
        if whole:
            yield run(audio[:whole]), read
    yield run(np.pad(rest, (0, WINDOW - len(rest)))), read


def silero_pass(blocks: Iterable[Any], meter: StageMeter | None = None) -> tuple[Any, int, Loudness]:
    """Silero over the audio's blocks, once: (every window's probability, samples read, the loudness measured)."""
    import numpy as np

    loudness, kept, read = Loudness(SILENCE_DBFS), [], 0

    def measured() -> Iterator[Any]:
        for block in blocks:
            loudness.feed(block)
            yield block
    for probabilities, read in silero_probabilities(measured(), silero_session()):
        kept.append(np.asarray(probabilities, np.float32))
        if meter is not None:
            meter.update(read / SAMPLE_RATE)
    return np.concatenate(kept), read, loudness


def track(probabilities: Any, samples: int, max_speech_s: float, threshold: float = THRESHOLD
          ) -> list[dict[str, float]]:
    """Silero's rule (SpeechTracker) at ``threshold`` over the window probabilities: segments in seconds."""
    tracker = SpeechTracker(max_speech_s, threshold)
    tracker.feed(probabilities)
    return [{"start": round(a / SAMPLE_RATE, 3), "end": round(b / SAMPLE_RATE, 3)}
            for a, b in tracker.finish(samples)]


def silero_segments(audio: Path, max_speech_s: float, meter: StageMeter | None = None,
                    block_s: float = BLOCK_S) -> tuple[list[dict[str, float]], int]:
    """Speech in audio.wav by Silero, read ``block_s`` seconds at a time: (segments in seconds, samples read)."""
    probabilities, read, _ = silero_pass((b for _, b in wav_spans(audio, block_s)), meter)
    return track(probabilities, read, max_speech_s), read


def speech_s(segments: list[dict[str, float]]) -> float:
    return round(float(sum(s["end"] - s["start"] for s in segments)), 3)


def too_little(speech: float, sounding_s: float, quiet: bool = False) -> bool:
    """Is ``speech`` seconds far less than a file with ``sounding_s`` seconds of sound suggests (under
    MIN_SPEECH_SHARE of it, QUIET_MIN_SPEECH_SHARE in a quiet file)? Never for a silent file (under MIN_SOUND_S)."""
    return sounding_s >= MIN_SOUND_S and speech < (QUIET_MIN_SPEECH_SHARE if quiet else MIN_SPEECH_SHARE) * sounding_s


def choose_speech(found: list[dict[str, float]], lower: Callable[[], list[dict[str, float]]], sounding_s: float,
                  loud_dbfs: float | None, duration_s: float, max_s: float
                  ) -> tuple[list[dict[str, float]], str | None, bool]:
    """The segments to keep, the fallback taken (None, "threshold X" or "whole file") and whether one was tried.

    ``found`` at the usual threshold stands unless it is too little for the file's sound (``too_little``; a
    quiet file, its louder parts under QUIET_DBFS, has the higher share); then ``lower()`` (the same
    probabilities at FALLBACK_THRESHOLD) replaces it when it finds more speech. A quiet file whose speech is
    still too little goes to ASR whole, in windows of at most ``max_s`` seconds: Silero misses much of quiet
    speech at any threshold (pyannote.audio's sample 46 dB down, before the tuning: 1.2 s of 22 s at 0.5,
    5.2 s at 0.2), and Whisper hears it (tiny.en's WER 0.12 on the whole file, 0.84 on those 5.2 s). A file at a usual level in
    which neither threshold hears speech has none (music, noise): Whisper given loud noise can write words
    that nobody said."""
    quiet = loud_dbfs is not None and loud_dbfs < QUIET_DBFS
    if not too_little(speech_s(found), sounding_s, quiet):
        return found, None, False
    more = lower()
    kept, fallback = (more, f"threshold {FALLBACK_THRESHOLD}") if speech_s(more) > speech_s(found) else (found, None)
    if not quiet or duration_s <= 0 or not too_little(speech_s(kept), sounding_s, quiet):
        return kept, fallback, True
    return split_long([{"start": 0.0, "end": round(duration_s, 3)}], max_s), "whole file", True


def pyannote_segments(samples: Any, folder: Any, device: Any) -> list[dict[str, float]]:
    from pyannote.audio import Model
    from pyannote.audio.pipelines import VoiceActivityDetection

    model = Model.from_pretrained(str(folder))
    model.to(device)
    pipeline = VoiceActivityDetection(segmentation=model)
    pipeline.instantiate({"min_duration_on": PYANNOTE_MIN_SPEECH_MS / 1000,
                          "min_duration_off": PYANNOTE_MIN_SILENCE_MS / 1000})
    speech = pipeline(pyannote_input(samples, SAMPLE_RATE))
    return [{"start": round(s.start, 3), "end": round(s.end, 3)} for s in speech.get_timeline().support()]


def split_long(segments: list[dict[str, float]], max_s: float) -> list[dict[str, float]]:
    """Cut segments longer than ``max_s`` into equal parts no longer than it."""
    out = []
    for seg in segments:
        length = seg["end"] - seg["start"]
        parts = max(1, int(-(-length // max_s)))
        step = length / parts
        out += [{"start": round(seg["start"] + i * step, 3), "end": round(seg["start"] + (i + 1) * step, 3)}
                for i in range(parts)]
    return out


def vad(ctx: StageContext) -> None:
    audio = ctx.require(AUDIO_FILE, made_by="demux")[0]
    max_s = float(ctx.config.get("chunk_length_s") or DEFAULT_CHUNK_S)
    meter = ctx.progress(wav_duration_s(audio))
    segmentation = pyannote_segmentation(ctx.model_cache())
    if segmentation is not None:
        backend = "pyannote"
        device = torch_device(ctx)                   # the job's device, or one line saying why not
        samples = read_wav(audio)                    # whole: see the module's docstring
        segments = split_long(pyannote_segments(samples, segmentation, device), max_s)
        read, loudness = len(samples), Loudness(SILENCE_DBFS)
        loudness.feed(samples)

        def lower() -> list[dict[str, float]]:
            probabilities, _, _ = silero_pass([samples])
            return track(probabilities, read, max_s, FALLBACK_THRESHOLD)
        ctx.versions["pyannote.audio"] = package_version("pyannote.audio")
        ctx.details["model"] = str(segmentation)
    else:
        backend = "silero"
        cpu_only(ctx, "Silero VAD runs in onnxruntime on the CPU (its CPU provider, as faster-whisper runs it)")
        probabilities, read, loudness = silero_pass((b for _, b in wav_spans(audio, BLOCK_S)), meter)
        segments = track(probabilities, read, max_s)

        def lower() -> list[dict[str, float]]:
            return track(probabilities, read, max_s, FALLBACK_THRESHOLD)
        ctx.versions.update({"faster-whisper": package_version("faster-whisper"),
                             "onnxruntime": package_version("onnxruntime")})
        ctx.details["model"] = "silero_vad_v6.onnx (faster-whisper assets)"
        ctx.details["block_s"] = BLOCK_S
    duration = round(read / SAMPLE_RATE, 3)
    first_s = speech_s(segments)
    level = loudness.summary()
    segments, fallback, tried = choose_speech(segments, lower, level["sounding_s"], level["loud_dbfs"], duration, max_s)
    meter.finish()
    speech = speech_s(segments)
    found = {"threshold": THRESHOLD if backend == "silero" else None, "speech_s_at_threshold": first_s,
             "fallback_tried": tried, "fallback": fallback, "loudness": level}
    ctx.write_json(OUTPUT, {"backend": backend, "sample_rate": SAMPLE_RATE, "duration_s": duration,
                            "speech_s": speech, "max_segment_s": max_s, **found, "segments": segments})
    ctx.details.update({"backend": backend, "segments": len(segments), "speech_s": speech, "audio_s": duration,
                        **found})
    try:
        update_stage_entry(ctx.job_dir, NAME, fallback=fallback, loudness=level)   # None: no fallback key
    except OSError as exc:
        raise StageError(write_failure(ctx.job_dir / JOB_FILE, exc, ctx.job_dir)) from None


if __name__ == "__main__":
    main_of(NAME, vad)
