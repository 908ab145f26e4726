"""Stage diarize: who speaks when in audio.wav, as diarization.json and diarization.rttm.

Backends, the first that can run (the one used is recorded in both files' record):

- ``pyannote``: pyannote.audio's speaker-diarization pipeline, loaded from the
  shared model cache when its weights are there (no hub access);
- ``resemblyzer``: the offline backend (stages/_speakers.py): resemblyzer's
  GE2E speaker embeddings over speech windows, clustered.

Speakers are named SPEAKER_00, SPEAKER_01, ... in order of first speech.
Usage: python3 -m stages.diarize [JOB_DIR]
"""

from __future__ import annotations

from typing import Any

from stages._audio import AUDIO_FILE, SAMPLE_RATE, duration_s, read_wav
from stages._jobio import StageContext, main_of
from stages._models import package_version, pyannote_input, pyannote_pipeline_dir, torch_device

NAME = "diarize"
JSON_OUTPUT = "diarization.json"
RTTM_OUTPUT = "diarization.rttm"
DEFAULT_MAX_SPEAKERS = 10


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


def pyannote_turns(samples: Any, folder: Any, max_speakers: int, device: str) -> list[dict[str, Any]]:
    from pyannote.audio import Pipeline

    pipeline = Pipeline.from_pretrained(str(folder))
    pipeline.to(torch_device(device))
    output = pipeline(pyannote_input(samples, SAMPLE_RATE), max_speakers=max_speakers)
    annotation = getattr(output, "speaker_diarization", output)
    return [{"start": round(seg.start, 3), "end": round(seg.end, 3), "speaker": str(label)}
            for seg, _, label in annotation.itertracks(yield_label=True)]


def diarize(ctx: StageContext) -> None:
    samples = read_wav(ctx.require(AUDIO_FILE, made_by="demux")[0])
    max_speakers = int(ctx.config.get("max_speakers") or DEFAULT_MAX_SPEAKERS)
    folder = pyannote_pipeline_dir(ctx.model_cache())
    if folder is not None:
        backend = "pyannote"
        turns = pyannote_turns(samples, folder, max_speakers, ctx.device)
        facts: dict[str, Any] = {"model": str(folder)}
        ctx.versions["pyannote.audio"] = package_version("pyannote.audio")
    else:
        from stages._speakers import diarize_offline

        backend = "resemblyzer"
        turns, facts = diarize_offline(samples, max_speakers, torch_device(ctx.device))
        facts["model"] = "resemblyzer GE2E (pretrained.pt in the resemblyzer package)"
        ctx.versions.update({"resemblyzer": package_version("resemblyzer"), "webrtcvad": package_version("webrtcvad")})
    ctx.versions.update({"torch": package_version("torch"), "numpy": package_version("numpy")})
    turns = renamed_by_first_speech(turns)
    speakers = sorted({t["speaker"] for t in turns})
    ctx.write_json(JSON_OUTPUT, {"backend": backend, "duration_s": duration_s(samples), "max_speakers": max_speakers,
                                 "speakers": speakers, "turns": turns, "facts": facts})
    ctx.write_text(RTTM_OUTPUT, rttm_lines(turns, str(ctx.job.get("id") or "audio")))
    ctx.details.update({"backend": backend, "speakers": len(speakers), "turns": len(turns),
                        "audio_s": duration_s(samples), **{k: v for k, v in facts.items() if k != "model"}})


if __name__ == "__main__":
    main_of(NAME, diarize)
