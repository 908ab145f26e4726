"""The registry as the build's second store, without a daemon: what the scheduler does with images the
registry holds by content hash, the cache references per image and mode, reproducible-build helpers.
(tests/integration/test_registry_hub.py runs the same against a real registry and a fresh engine.)"""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from infra.build.plan import PARENT_LABEL
from infra.build.remote import RemoteImage, RemoteStore, cache_options, hash_tag
from infra.build.reproducible import image_manifest_digest, source_date_epoch
from infra.build.run import BuildRequestSpec, _builds_a_root, _cache_mode
from infra.engine.fake import FakeEngine
from infra.errors import BadInputError
from tests.unit.test_scheduler import plan_for, run

HOST = "127.0.0.1:5000"


def store() -> RemoteStore:
    return RemoteStore({"asr": f"{HOST}/team/speech-asr:latest-cpu",
                        "base": f"{HOST}/team/speech-base:latest-gpu"})


def test_each_image_and_mode_has_its_own_cache_reference() -> None:
    s = store()
    assert s.repository("asr") == "team/speech-asr"
    assert s.mode_tag("asr") == "latest-cpu"
    assert s.cache_ref("asr") == f"{HOST}/team/speech-asr:buildcache-cpu"
    assert s.cache_ref("base") == f"{HOST}/team/speech-base:buildcache-gpu"
    assert RemoteStore({"asr": "reg.example.com/speech-asr:v2-cpu"}).repository("asr") == "speech-asr"


@pytest.mark.parametrize("mode, expected", [
    ("off", ([], [])),
    ("read", ([f"type=registry,ref={HOST}/team/speech-asr:buildcache-cpu"], [])),
    ("write", ([f"type=registry,ref={HOST}/team/speech-asr:buildcache-cpu"],
               [f"type=registry,ref={HOST}/team/speech-asr:buildcache-cpu,mode=max,ignore-error=true"])),
])
def test_cache_read_imports_and_write_also_exports(mode: str, expected: tuple) -> None:
    assert cache_options(store(), "asr", mode) == expected
    assert cache_options(None, "asr", mode) == ([], [])


@pytest.mark.parametrize("request_, registry, expected", [
    (BuildRequestSpec("docker-cpu", push=True), "r/ns", "write"),
    (BuildRequestSpec("docker-cpu"), "r/ns", "read"),
    (BuildRequestSpec("docker-cpu"), None, "off"),
    (BuildRequestSpec("docker-cpu", push=True, cache="read"), "r/ns", "read"),
])
def test_the_cache_mode_follows_push_unless_given(request_: BuildRequestSpec, registry: str | None,
                                                  expected: str) -> None:
    assert _cache_mode(request_, registry) == expected


def test_a_cache_mode_without_a_registry_or_unknown_is_bad_input() -> None:
    with pytest.raises(BadInputError, match="needs a registry"):
        _cache_mode(BuildRequestSpec("docker-cpu", cache="write"), None)
    with pytest.raises(BadInputError, match="not one of off, read, write"):
        _cache_mode(BuildRequestSpec("docker-cpu", cache="sometimes"), "r/ns")


def remote(name: str) -> RemoteImage:
    return RemoteImage(name, f"team/t-{name}", f"sha256:{name:0>64}"[-71:], HOST)


def test_images_the_registry_holds_are_not_built_and_a_child_builds_from_the_registry(tmp_path: Path) -> None:
    engine = FakeEngine()
    plan = plan_for(tmp_path, engine)
    plan.remote = {n: remote(n) for n in ("base", "ml", "diar", "ffmpeg")}
    engine.remote.update(r.ref for r in plan.remote.values())
    reports = run(plan, engine, jobs=2)
    assert {n: r.status for n, r in reports.items()} == {
        "base": "in registry", "ml": "in registry", "diar": "in registry", "ffmpeg": "in registry",
        "asr": "built", "subs": "built"}
    assert reports["ml"].digest == plan.remote["ml"].digest
    built = {b.ref: b.request for b in engine.builds}
    assert set(built) == {"t-asr:latest", "t-subs:latest"}
    asr = built["t-asr:latest"]
    assert asr.contexts["ml"] == f"docker-image://{HOST}/team/t-ml@{plan.remote['ml'].digest}"
    assert asr.labels[PARENT_LABEL] == plan.remote["ml"].digest
    assert built["t-subs:latest"].contexts["asr"] == "docker-image://t-asr:latest", "a parent built here is local"


def test_no_cache_builds_even_what_the_registry_holds(tmp_path: Path) -> None:
    engine = FakeEngine()
    plan = plan_for(tmp_path, engine)
    plan.remote = {"base": remote("base")}
    reports = run(plan, engine, no_cache=True)
    assert reports["base"].status == "built"


def test_the_base_is_needed_only_when_a_root_image_is_built_here(tmp_path: Path) -> None:
    engine = FakeEngine()
    plan = plan_for(tmp_path, engine)
    request = BuildRequestSpec("docker-cpu")
    assert _builds_a_root(plan, request)
    plan.remote = {"base": remote("base")}
    assert not _builds_a_root(plan, request), "every other image builds FROM base, which the registry has"
    assert _builds_a_root(plan, BuildRequestSpec("docker-cpu", no_cache=True))


def test_reproducible_builds_load_the_oci_archive_and_record_the_image_manifest(tmp_path: Path) -> None:
    engine = FakeEngine()
    plan = plan_for(tmp_path, engine)
    archives = tmp_path / "archives"
    archives.mkdir()
    original = engine.build

    def build(request, on_step=None):   # the fake records the archive; write a real one where BuildKit would
        log = original(request, on_step)
        write_oci(request.oci_archive, f"sha256:{'a' * 64}")
        return log

    engine.build = build  # type: ignore[method-assign]
    reports = run(plan, engine, archives=archives, only={"ml"})
    assert reports["base"].manifest_digest == reports["ml"].manifest_digest == f"sha256:{'a' * 64}"
    assert ("load_archive", str(archives / "base.oci.tar")) in engine.calls
    ml = next(b.request for b in engine.builds if b.ref == "t-ml:latest")
    assert ml.labels[PARENT_LABEL] == f"sha256:{'a' * 64}", "the parent's manifest, not its index"
    assert not list(archives.iterdir()), "archives are removed once loaded"


def write_oci(path: Path, manifest: str) -> None:
    """An OCI archive whose index nests an index of the image manifest and an attestation manifest."""
    nested = {"manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest},
                            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + "b" * 64,
                             "annotations": {"vnd.docker.reference.type": "attestation-manifest"}}]}
    nested_bytes = json.dumps(nested).encode()
    import hashlib

    nested_digest = "sha256:" + hashlib.sha256(nested_bytes).hexdigest()
    top = {"manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": nested_digest}]}
    with tarfile.open(path, "w") as tar:
        for name, data in (("index.json", json.dumps(top).encode()),
                           (f"blobs/sha256/{nested_digest.split(':')[1]}", nested_bytes)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_the_image_manifest_is_read_through_nested_indexes_past_attestations(tmp_path: Path) -> None:
    write_oci(tmp_path / "x.tar", f"sha256:{'c' * 64}")
    assert image_manifest_digest(tmp_path / "x.tar") == f"sha256:{'c' * 64}"


def test_source_date_epoch_comes_from_the_environment_or_the_spec_s_last_commit(project: Path,
                                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from infra.spec import load_stack

    stack = load_stack(project / "infra.yaml")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert source_date_epoch(stack) == "1700000000"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(BadInputError, match="not a number"):
        source_date_epoch(stack)
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    with pytest.raises(BadInputError, match="no git history"):
        source_date_epoch(stack)
    env = {**os.environ, "GIT_AUTHOR_DATE": "2026-01-02T03:04:05Z", "GIT_COMMITTER_DATE": "2026-01-02T03:04:05Z",
           "HOME": str(project)}
    for cmd in (["init", "-q"], ["add", "-A"], ["-c", "user.email=a@b", "-c", "user.name=t", "commit", "-qm", "s"]):
        subprocess.run(["git", *cmd], cwd=project, check=True, capture_output=True, env=env)
    assert source_date_epoch(stack) == "1767323045"


def test_the_content_hash_tag_is_the_hash() -> None:
    assert hash_tag("ab" * 32) == "content-" + "ab" * 32
