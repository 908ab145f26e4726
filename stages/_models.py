"""Where the stages find model weights in the shared cache (the layout `infra bootstrap` writes).

    <cache>/whisper/<name>/                          CTranslate2 Whisper: model.bin, config.json, tokenizer.json
    <cache>/pyannote/speaker-diarization-community-1/ pyannote's pipeline: config.yaml and its models
    <cache>/pyannote/segmentation-3.0/               pyannote's segmentation model alone (for VAD)

Nothing here downloads: a model that is not in the cache is reported with the
command that fetches it.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from stages._jobio import StageInputError

PYANNOTE_PIPELINE = "pyannote/speaker-diarization-community-1"
PYANNOTE_SEGMENTATION = ("pyannote/segmentation-3.0", f"{PYANNOTE_PIPELINE}/segmentation")
WEIGHT_FILES = ("pytorch_model.bin", "model.safetensors")


def fetch_command(model: str) -> str:
    return f"infra bootstrap --model {model}"


def whisper_dir(cache: Path, name: str) -> Path:
    """The folder of Whisper model ``name``, or a StageInputError naming it and how to fetch it."""
    if not name or "/" in name or name.startswith("."):
        raise StageInputError(f"{name!r} is not a Whisper model name (e.g. tiny.en, base, large-v3)")
    folder = cache / "whisper" / name
    if not (folder / "model.bin").is_file() or not (folder / "config.json").is_file():
        raise StageInputError(f"Whisper model {name} is not in the model cache ({folder}): "
                              f"fetch it with `{fetch_command('whisper/' + name)}`")
    return folder


def model_source(folder: Path) -> str:
    """Where a cached model came from, as `infra bootstrap` recorded it in .complete."""
    try:
        return str(json.loads((folder / ".complete").read_text()).get("source", "unknown"))
    except (OSError, ValueError, AttributeError):
        return "unknown"


def installed(module: str) -> bool:
    """Whether ``module`` can be imported, found without importing it (pyannote imports torch)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def pyannote_pipeline_dir(cache: Path) -> Path | None:
    """pyannote's diarization pipeline in the cache, when its weights are there and pyannote.audio is installed."""
    folder = cache / PYANNOTE_PIPELINE
    return folder if (folder / "config.yaml").is_file() and installed("pyannote.audio") else None


def pyannote_segmentation(cache: Path) -> Path | None:
    """pyannote's segmentation weights in the cache (alone or inside the pipeline), when pyannote.audio is installed."""
    if not installed("pyannote.audio"):
        return None
    for name in PYANNOTE_SEGMENTATION:
        folder = cache / name
        if any((folder / f).is_file() for f in WEIGHT_FILES):
            return folder
    return None


def package_version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "not installed"


def pyannote_input(samples: object, sample_rate: int) -> dict:
    """Audio handed to pyannote in memory (its file decoders may not load beside a CPU torch)."""
    import torch

    return {"waveform": torch.from_numpy(samples).unsqueeze(0), "sample_rate": sample_rate}
