"""Models as OCI artifacts, without a registry: the manifest and config format, the marker, models.lock, the job check."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from infra.errors import BadInputError, OperationError
from infra.models.artifacts import (ARTIFACT_TYPE, CONFIG_TYPE, FILE_TYPE, MARKER, TITLE, ModelFile, build_artifact,
                                    check_model_id, content_files, describe, marker_changes, parse_config,
                                    parse_manifest, read_marker, repository_name, write_marker)
from infra.models.lock import LOCK_FILE, Lock, job_model_names, job_models, lock_difference, pin_of, read_lock
from infra.models.remote import cached_models, check_registry, repository


def make_model(root: Path, name: str = "whisper/tiny", files: dict[str, bytes] | None = None) -> Path:
    folder = root / name
    for rel, data in (files or {"model.bin": b"weights" * 100, "config.json": b"{}", "sub/vocab.txt": b"a\nb\n"}).items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    (folder / ".complete").write_text("{}")
    return folder


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_the_manifest_is_an_oci_artifact_with_one_titled_layer_per_file(tmp_path: Path) -> None:
    folder = make_model(tmp_path)
    artifact = build_artifact("whisper/tiny", describe("whisper/tiny", folder))
    manifest = json.loads(artifact.manifest)
    assert manifest["schemaVersion"] == 2 and manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["artifactType"] == ARTIFACT_TYPE == "application/vnd.infra.model.v1"
    assert manifest["config"] == {"mediaType": CONFIG_TYPE, "digest": sha(artifact.config), "size": len(artifact.config)}
    layers = {la["annotations"][TITLE]: la for la in manifest["layers"]}
    assert list(layers) == ["config.json", "model.bin", "sub/vocab.txt"]          # sorted, markers left out
    assert layers["model.bin"] == {"mediaType": FILE_TYPE, "digest": sha(b"weights" * 100), "size": 700,
                                   "annotations": {TITLE: "model.bin"}}
    config = json.loads(artifact.config)
    assert config == {"schema": 1, "model": "whisper/tiny", "files": [
        {"path": "config.json", "size": 2, "mode": "0644"}, {"path": "model.bin", "size": 700, "mode": "0644"},
        {"path": "sub/vocab.txt", "size": 4, "mode": "0644"}]}
    assert artifact.digest == sha(artifact.manifest) and artifact.size == 706


def test_the_digest_follows_the_content_not_times_or_machines(tmp_path: Path) -> None:
    one = make_model(tmp_path / "a")
    two = make_model(tmp_path / "b")
    os.utime(two / "model.bin", (1, 1))
    os.chmod(two / "config.json", 0o600)                       # reduced to 0644 like git does
    digest = build_artifact("whisper/tiny", describe("whisper/tiny", one)).digest
    assert build_artifact("whisper/tiny", describe("whisper/tiny", two)).digest == digest
    os.chmod(two / "config.json", 0o750)
    assert build_artifact("whisper/tiny", describe("whisper/tiny", two)).digest != digest
    (two / "config.json").chmod(0o644)
    (two / "model.bin").write_bytes(b"other")
    assert build_artifact("whisper/tiny", describe("whisper/tiny", two)).digest != digest
    assert build_artifact("whisper/other", describe("whisper/other", one)).digest != digest


def test_a_model_folder_holds_plain_files_only(tmp_path: Path) -> None:
    folder = make_model(tmp_path)
    (folder / "link.bin").symlink_to(folder / "model.bin")
    with pytest.raises(BadInputError, match="link.bin is not a plain file"):
        content_files(folder)
    (folder / "link.bin").unlink()
    (folder / "linked-dir").symlink_to(folder / "sub")
    with pytest.raises(BadInputError, match="linked-dir is not a plain file"):
        content_files(folder)
    empty = tmp_path / "whisper" / "empty"
    empty.mkdir()
    (empty / ".complete").write_text("{}")
    with pytest.raises(BadInputError, match="holds no files"):
        describe("whisper/empty", empty)


def test_the_marker_saves_reading_the_files_while_size_and_mtime_hold(tmp_path: Path) -> None:
    folder = make_model(tmp_path)
    artifact = build_artifact("whisper/tiny", describe("whisper/tiny", folder))
    write_marker(folder, artifact.model, artifact.digest, artifact.files, "test")
    marker = read_marker(folder)
    assert marker is not None and marker.manifest == artifact.digest and marker_changes(folder, marker) is None
    # A recorded digest is believed while the stat matches (so it is not recomputed) ...
    fake = {**marker.files, "model.bin": ModelFile("model.bin", 700, 0o644, "sha256:" + "0" * 64,
                                                   marker.files["model.bin"].mtime_ns)}
    believed = describe("whisper/tiny", folder, type(marker)(marker.model, marker.manifest, fake))
    assert {f.path: f.digest for f in believed}["model.bin"] == "sha256:" + "0" * 64
    # ... and read again once the mtime moved.
    os.utime(folder / "model.bin", ns=(1, 1))
    assert marker_changes(folder, marker) == "model.bin changed (size or modification time)"
    again = describe("whisper/tiny", folder, type(marker)(marker.model, marker.manifest, fake))
    assert {f.path: f.digest for f in again}["model.bin"] == sha(b"weights" * 100)


def test_marker_changes_names_what_differs(tmp_path: Path) -> None:
    folder = make_model(tmp_path)
    artifact = build_artifact("whisper/tiny", describe("whisper/tiny", folder))
    marker = write_marker(folder, artifact.model, artifact.digest, artifact.files, "test")
    (folder / "extra.txt").write_text("x")
    assert marker_changes(folder, marker) == "extra.txt was added"
    (folder / "extra.txt").unlink()
    (folder / "sub" / "vocab.txt").unlink()
    assert marker_changes(folder, marker) == "sub/vocab.txt is missing"
    (folder / MARKER).write_text("{not json")
    assert read_marker(folder) is None


def test_parse_manifest_reads_back_what_build_writes_and_refuses_what_is_not_a_model(tmp_path: Path) -> None:
    artifact = build_artifact("whisper/tiny", describe("whisper/tiny", make_model(tmp_path)))
    remote = parse_manifest("whisper/tiny", artifact.manifest, "R")
    assert [(la.path, la.size) for la in remote.layers] == [("config.json", 2), ("model.bin", 700), ("sub/vocab.txt", 4)]
    assert remote.config_digest == artifact.config_digest
    assert parse_config(remote, artifact.config, "R") == {"config.json": 0o644, "model.bin": 0o644,
                                                          "sub/vocab.txt": 0o644}

    def refused(change: Callable[[dict], object], match: str) -> None:
        bad = json.loads(artifact.manifest)
        change(bad)
        with pytest.raises(OperationError, match=match):
            parse_manifest("whisper/tiny", json.dumps(bad).encode(), "R")

    for path in ("../etc/passwd", "/abs", "a//b", ".infra-model.json", "", "a/./b"):
        refused(lambda m, p=path: m["layers"][0]["annotations"].update({TITLE: p}),
                "not a plain path inside the model folder")
    refused(lambda m: m.update(artifactType="application/vnd.oci.image.config.v1+json",
                               config={**m["config"], "mediaType": "application/x"}), "artifact type")
    refused(lambda m: m["layers"][1]["annotations"].update({TITLE: "config.json"}), "same file name")
    refused(lambda m: m["layers"][0].update(digest="md5:abc"), "not a sha256 digest")
    refused(lambda m: m["layers"][0].update(size=-1), "not a byte count")
    refused(lambda m: m["annotations"].update({"dev.infra.model": "whisper/base"}), "not whisper/tiny")
    with pytest.raises(OperationError, match="not JSON"):
        parse_manifest("whisper/tiny", b"<html>", "R")
    config = json.loads(artifact.config)
    config["files"][1]["size"] = 1
    with pytest.raises(OperationError, match="list different files"):
        parse_config(remote, json.dumps(config).encode(), "R")


def test_names_of_models_registries_and_repositories() -> None:
    assert check_model_id("whisper/tiny.en") == "whisper/tiny.en"
    for bad in ("whisper", "../x/y", "whisper/../base", "/whisper/base", "whisper/base/extra", "Whisper/base"):
        with pytest.raises(BadInputError):
            check_model_id(bad)
    assert repository_name("pyannote/speaker-diarization-community-1") == "pyannote-speaker-diarization-community-1"
    assert repository("127.0.0.1:5000/speech", "speech", "whisper/tiny.en") == \
        "127.0.0.1:5000/speech/speech-models/whisper-tiny.en"
    assert check_registry("registry.example.com/") == "registry.example.com"
    with pytest.raises(BadInputError, match="not a registry host"):
        check_registry("https://registry.example.com")


def test_cached_models_are_finished_folders_only(tmp_path: Path) -> None:
    make_model(tmp_path, "whisper/tiny")
    make_model(tmp_path, "whisper/.old-base-12")
    (tmp_path / "whisper" / "half").mkdir()
    (tmp_path / ".pull-whisper-base-1234").mkdir()
    assert cached_models(tmp_path) == ["whisper/tiny"]


def test_the_lock_round_trips_and_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    artifact = build_artifact("whisper/tiny", describe("whisper/tiny", make_model(tmp_path / "cache")))
    path = tmp_path / LOCK_FILE
    empty = read_lock(path)
    assert not empty.exists and empty.pins == {}
    lock = empty.with_pin(pin_of(artifact, "h:5000/ns/speech-models/whisper-tiny", "latest"))
    lock.write()
    again = read_lock(path)
    assert again.exists and again.pins == lock.pins and path.read_text() == lock.text()
    assert json.loads(path.read_text())["models"]["whisper/tiny"]["files"]["model.bin"] == \
        {"digest": sha(b"weights" * 100), "size": 700}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", LOCK_FILE]     # no temporary file beside it
    for text in ("{", '{"schema": 2, "models": {}}', '{"schema": 1, "models": {"x": {}}}',
                 '{"schema": 1, "models": {"whisper/tiny": {"repository": "r"}}}'):
        path.write_text(text)
        with pytest.raises(BadInputError, match="is not a models.lock infra can read"):
            read_lock(path)


def test_lock_difference_names_the_file_that_changed(tmp_path: Path) -> None:
    folder = make_model(tmp_path)
    pin = pin_of(build_artifact("whisper/tiny", describe("whisper/tiny", folder)), "r", "latest")
    (folder / "model.bin").write_bytes(b"retrained")
    changed = build_artifact("whisper/tiny", describe("whisper/tiny", folder))
    assert lock_difference(pin, changed).startswith("model.bin changed after its digest was locked (sha256:")
    (folder / "config.json").unlink()
    assert lock_difference(pin, build_artifact("whisper/tiny", describe("whisper/tiny", folder))) == \
        "config.json is missing"


def test_job_model_names_follow_the_stages(tmp_path: Path) -> None:
    (tmp_path / "pyannote" / "segmentation-3.0").mkdir(parents=True)
    assert job_model_names("base", ["demux", "vad", "asr"], tmp_path) == ["whisper/base", "pyannote/segmentation-3.0"]
    assert job_model_names("base", ["demux"], tmp_path) == []
    assert job_model_names("base", ["demux", "asr"], tmp_path) == ["whisper/base"]


def test_a_job_records_the_pinned_digests_and_refuses_a_model_that_differs(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    folder = make_model(cache)
    artifact = build_artifact("whisper/tiny", describe("whisper/tiny", folder))
    lock = Lock(tmp_path / LOCK_FILE, {}, False).with_pin(pin_of(artifact, "h:1/ns/speech-models/whisper-tiny", "v1"))

    # Not verified yet (fetched from its source, never pulled or pushed): recorded as such, refused under a pin.
    assert job_models(Lock(lock.path, {}, False), cache, ["whisper/tiny"]) == \
        {"whisper/tiny": {"manifest": None, "verified": False}}
    with pytest.raises(BadInputError, match=r"not verified against models.lock .*infra models pull whisper/tiny"):
        job_models(lock, cache, ["whisper/tiny"])

    write_marker(folder, artifact.model, artifact.digest, artifact.files, "pulled from h:1/...")
    recorded = job_models(lock, cache, ["whisper/tiny", "whisper/absent"])
    assert recorded == {"whisper/tiny": {
        "manifest": artifact.digest, "verified": True, "source": "pulled from h:1/...", "lock": str(lock.path),
        "repository": "h:1/ns/speech-models/whisper-tiny",
        "files": {"config.json": sha(b"{}"), "model.bin": sha(b"weights" * 100), "sub/vocab.txt": sha(b"a\nb\n")}}}

    (folder / "model.bin").write_bytes(b"weights" * 99 + b"WEIGHTS")      # same size, a new mtime
    with pytest.raises(BadInputError, match="differs from models.lock: model.bin changed"):
        job_models(lock, cache, ["whisper/tiny"])
    assert job_models(Lock(lock.path, {}, False), cache, ["whisper/tiny"])["whisper/tiny"]["verified"] is False

    other = build_artifact("whisper/tiny", describe("whisper/tiny", folder))
    write_marker(folder, other.model, other.digest, other.files, "pushed")
    with pytest.raises(BadInputError, match=r"is sha256:\S+, models.lock pins sha256:"):
        job_models(lock, cache, ["whisper/tiny"])
