"""models.lock: the model artifacts a project pins, beside its spec, and the check a job makes against it.

The lock is JSON (sorted keys, so a diff shows what moved)::

    {"schema": 1,
     "models": {"whisper/base": {"repository": "HOST/NS/speech-models/whisper-base", "tag": "latest",
                                 "manifest": "sha256:...",
                                 "files": {"model.bin": {"digest": "sha256:...", "size": 145217532}, ...}}}}

`infra models push` writes it (replaced whole, atomically); `infra models pull` and
`infra bootstrap --from-registry` fetch by its digests; a job refuses a cached model that differs
from the pin, comparing the model folder's marker (infra/models/artifacts.py) by stat alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infra.errors import BadInputError
from infra.jobproto import write_text_atomic
from infra.models.artifacts import Artifact, check_model_id, marker_changes, read_marker

if TYPE_CHECKING:
    from infra.spec import Stack

LOCK_FILE = "models.lock"
SCHEMA = 1
# The models the stages read from the cache besides the job's Whisper model, when they are there.
PYANNOTE_MODELS = ("pyannote/speaker-diarization-community-1", "pyannote/segmentation-3.0")


@dataclass(frozen=True)
class Pin:
    model: str
    repository: str            # HOST/path, without tag
    tag: str
    manifest: str
    files: dict[str, dict[str, Any]] = field(default_factory=dict)   # path -> {"digest", "size"}

    def as_dict(self) -> dict[str, Any]:
        return {"repository": self.repository, "tag": self.tag, "manifest": self.manifest, "files": self.files}


def pin_of(artifact: Artifact, repository: str, tag: str) -> Pin:
    return Pin(artifact.model, repository, tag, artifact.digest,
               {f.path: {"digest": f.digest, "size": f.size} for f in artifact.files})


@dataclass(frozen=True)
class Lock:
    path: Path
    pins: dict[str, Pin]
    exists: bool

    def get(self, model: str) -> Pin | None:
        return self.pins.get(model)

    def with_pin(self, pin: Pin) -> Lock:
        return Lock(self.path, {**self.pins, pin.model: pin}, True)

    def text(self) -> str:
        return json.dumps({"schema": SCHEMA, "models": {m: p.as_dict() for m, p in sorted(self.pins.items())}},
                          indent=2, sort_keys=True) + "\n"

    def write(self) -> None:
        write_text_atomic(self.path, self.text())


def lock_path(stack: Stack) -> Path:
    """models.lock beside the spec (in the working folder with the built-in spec)."""
    return stack.workdir / LOCK_FILE


def read_lock(path: Path) -> Lock:
    """The lock at ``path`` (empty when there is none); BadInputError naming the file when it is unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Lock(path, {}, False)
    except OSError as exc:
        raise BadInputError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
        if data.get("schema") != SCHEMA:
            raise ValueError(f"schema {data.get('schema')!r}, expected {SCHEMA}")
        pins = {}
        for model, entry in data["models"].items():
            check_model_id(model)
            files = {str(p): {"digest": str(f["digest"]), "size": int(f["size"])} for p, f in entry["files"].items()}
            pins[model] = Pin(model, str(entry["repository"]), str(entry["tag"]), str(entry["manifest"]), files)
    except (ValueError, KeyError, TypeError, AttributeError, BadInputError) as exc:
        raise BadInputError(f"{path} is not a models.lock infra can read ({exc})",
                            hint="`infra models push --update-lock` writes a new one") from None
    return Lock(path, pins, True)


def lock_difference(pin: Pin, artifact: Artifact) -> str:
    """Why a folder's artifact is not the pinned one, naming the first file that differs."""
    files = {f.path: f for f in artifact.files}
    for path in sorted(set(pin.files) | set(files)):
        have, want = files.get(path), pin.files.get(path)
        if have is None:
            return f"{path} is missing"
        if want is None:
            return f"{path} is not in the lock"
        if have.digest != want["digest"]:
            return f"{path} changed after its digest was locked ({want['digest'][:19]} -> {have.digest[:19]})"
    return f"its manifest differs ({pin.manifest[:19]} -> {artifact.digest[:19]}; file modes?)"


# -- jobs ----------------------------------------------------------------------------------------------------
def job_model_names(whisper_model: str | None, stages: list[str], cache: Path) -> list[str]:
    """The cached models a job's stages read: its Whisper model (asr), pyannote's when cached (vad, diarize)."""
    names = [f"whisper/{whisper_model}"] if whisper_model and "asr" in stages else []
    if {"vad", "diarize"} & set(stages):
        names += [m for m in PYANNOTE_MODELS if (cache / m).is_dir()]
    return names


def job_models(lock: Lock, cache: Path, names: list[str]) -> dict[str, dict[str, Any]]:
    """What a job records about each model it reads: the manifest and file digests, from the marker written
    at pull or push time. A model that models.lock pins must be that artifact, unchanged since (by stat),
    or BadInputError says which file differs and how to get the pinned one. A model the lock does not pin
    is recorded as its marker says, or as unverified."""
    recorded: dict[str, dict[str, Any]] = {}
    for name in names:
        folder = cache / name
        if not folder.is_dir():
            continue                    # a missing model is the pipeline's to report (it names the fetch)
        pin = lock.get(name)
        marker = read_marker(folder)
        changed = marker_changes(folder, marker) if marker is not None else "it has no marker"
        if pin is not None:
            how = f"`infra models pull {name}` puts the pinned one in place"
            if marker is None:
                raise BadInputError(f"model {name} in {cache} is not verified against {lock.path.name} (no "
                                    f"{folder.name}/.infra-model.json): {how}")
            if marker.manifest != pin.manifest:
                raise BadInputError(f"model {name} in {cache} is {marker.manifest[:19]}, {lock.path.name} pins "
                                    f"{pin.manifest[:19]}: {how}, or `infra models push --update-lock {name}` "
                                    "pins the cached one")
            if changed:
                raise BadInputError(f"model {name} in {cache} differs from {lock.path.name}: {changed} since it "
                                    f"was verified; {how}")
        if marker is None or changed or marker.model != name:
            recorded[name] = {"manifest": None, "verified": False}
            continue
        entry: dict[str, Any] = {"manifest": marker.manifest, "verified": True,
                                 "files": {p: f.digest for p, f in sorted(marker.files.items())}}
        if marker.source:
            entry["source"] = marker.source
        if pin is not None:
            entry["lock"] = str(lock.path)
            entry["repository"] = pin.repository
        recorded[name] = entry
    return recorded
