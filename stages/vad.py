"""Stage vad: where people speak in audio.wav, as vad.json.

Two backends, the first that can run:

- ``pyannote``: pyannote.audio's segmentation model, only when its weights are in
  the model cache (they are gated on the hub, so `infra bootstrap` fetches them
  only with a token);
- ``silero``: Silero VAD v6 from the ONNX file that faster-whisper's wheel ships,
  run by onnxruntime; no torch, no download.

Segments longer than the job's chunk length are cut, so that each fits one
Whisper window: Silero cuts at a short pause where there is one, pyannote's
segments are cut into equal parts.
Usage: python3 -m stages.vad [JOB_DIR]
"""

from __future__ import annotations

from typing import Any

from stages._audio import AUDIO_FILE, SAMPLE_RATE, duration_s, read_wav
from stages._jobio import StageContext, main_of
from stages._models import package_version, pyannote_input, pyannote_segmentation, torch_device

NAME = "vad"
OUTPUT = "vad.json"
THRESHOLD = 0.5
MIN_SPEECH_MS = 250
MIN_SILENCE_MS = 300
SPEECH_PAD_MS = 200
DEFAULT_CHUNK_S = 30


def silero_segments(samples: Any, max_speech_s: float) -> list[dict[str, float]]:
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    options = VadOptions(threshold=THRESHOLD, min_speech_duration_ms=MIN_SPEECH_MS,
                         min_silence_duration_ms=MIN_SILENCE_MS, speech_pad_ms=SPEECH_PAD_MS,
                         max_speech_duration_s=max_speech_s)
    return [{"start": round(s["start"] / SAMPLE_RATE, 3), "end": round(s["end"] / SAMPLE_RATE, 3)}
            for s in get_speech_timestamps(samples, options, sampling_rate=SAMPLE_RATE)]


def pyannote_segments(samples: Any, folder: Any, device: str) -> list[dict[str, float]]:
    from pyannote.audio import Model
    from pyannote.audio.pipelines import VoiceActivityDetection

    model = Model.from_pretrained(str(folder))
    model.to(torch_device(device))
    pipeline = VoiceActivityDetection(segmentation=model)
    pipeline.instantiate({"min_duration_on": MIN_SPEECH_MS / 1000, "min_duration_off": MIN_SILENCE_MS / 1000})
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
    samples = read_wav(ctx.require(AUDIO_FILE, made_by="demux")[0])
    max_s = float(ctx.config.get("chunk_length_s") or DEFAULT_CHUNK_S)
    segmentation = pyannote_segmentation(ctx.model_cache())
    if segmentation is not None:
        backend = "pyannote"
        segments = split_long(pyannote_segments(samples, segmentation, ctx.device), max_s)
        ctx.versions["pyannote.audio"] = package_version("pyannote.audio")
        ctx.details["model"] = str(segmentation)
    else:
        backend = "silero"
        segments = silero_segments(samples, max_s)
        ctx.versions.update({"faster-whisper": package_version("faster-whisper"),
                             "onnxruntime": package_version("onnxruntime")})
        ctx.details["model"] = "silero_vad_v6.onnx (faster-whisper assets)"
    speech = round(sum(s["end"] - s["start"] for s in segments), 3)
    ctx.write_json(OUTPUT, {"backend": backend, "sample_rate": SAMPLE_RATE, "duration_s": duration_s(samples),
                            "speech_s": speech, "max_segment_s": max_s, "segments": segments})
    ctx.details.update({"backend": backend, "segments": len(segments), "speech_s": speech,
                        "audio_s": duration_s(samples)})


if __name__ == "__main__":
    main_of(NAME, vad)
