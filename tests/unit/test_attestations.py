"""Referrers (the OCI 1.1 artifact, the fallback index), image references, and what provenance says."""

from __future__ import annotations

import base64
import json

import pytest

from infra.cli.image_cmd import summary_lines
from infra.errors import BadInputError, OperationError
from infra.oci.attest import ImageAttestations, PlatformImage, parse_ref
from infra.oci.referrers import (
    EMPTY,
    INDEX,
    MANIFEST,
    artifact_manifest,
    canonical,
    digest_of,
    fallback_tag,
    newest,
    of_type,
    referrer_descriptor,
    with_referrer,
)
from infra.oci.summary import parse_time, provenance_summary

SUBJECT = {"mediaType": INDEX, "digest": "sha256:" + "12" * 32, "size": 856}
SBOM = "application/vnd.cyclonedx+json"


def sbom_manifest(payload: bytes = b'{"bomFormat":"CycloneDX"}', created: str = "2026-12-02T12:00:00Z") -> bytes:
    layer = {"mediaType": SBOM, "digest": digest_of(payload), "size": len(payload)}
    return artifact_manifest(SUBJECT, SBOM, layer, {"org.opencontainers.image.created": created})


def test_the_fallback_tag_of_a_digest() -> None:
    assert fallback_tag("sha256:" + "ab" * 32) == "sha256-" + "ab" * 32
    assert len(fallback_tag("sha512:" + "ab" * 64)) == 128


def test_an_artifact_manifest_refers_to_its_subject() -> None:
    manifest = json.loads(sbom_manifest())
    assert manifest["mediaType"] == MANIFEST and manifest["artifactType"] == SBOM
    assert manifest["subject"] == SUBJECT
    assert manifest["config"]["mediaType"] == EMPTY
    assert base64.b64decode(manifest["config"]["data"]) == b"{}"
    assert manifest["config"]["digest"] == digest_of(b"{}")
    assert [layer["mediaType"] for layer in manifest["layers"]] == [SBOM]
    assert sbom_manifest() == sbom_manifest(), "the same document, the same bytes"


def test_the_referrers_index_gains_an_entry_once_and_keeps_the_others() -> None:
    mine = referrer_descriptor(sbom_manifest())
    assert mine["artifactType"] == SBOM and mine["annotations"]["org.opencontainers.image.created"]
    signature = {"mediaType": MANIFEST, "digest": "sha256:" + "ef" * 32, "size": 400,
                 "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json"}
    first = with_referrer(None, mine)
    assert first == {"schemaVersion": 2, "mediaType": INDEX, "manifests": [mine]}
    assert with_referrer(first, mine) is None, "already listed: nothing to write"
    both = with_referrer({"schemaVersion": 2, "mediaType": INDEX, "manifests": [signature]}, mine)
    assert both is not None and both["manifests"] == [signature, mine]
    assert of_type(both, SBOM) == [mine]
    assert of_type(both, None) == [signature, mine]
    assert of_type({"manifests": ["junk", {"no": "digest"}]}, None) == []


def test_the_newest_sbom_wins() -> None:
    old = referrer_descriptor(sbom_manifest(b'{"a":1}', "2026-01-01T00:00:00Z"))
    new = referrer_descriptor(sbom_manifest(b'{"a":2}', "2026-06-01T00:00:00Z"))
    assert newest([new, old]) == new and newest([old, new]) == new
    assert newest([]) is None
    assert canonical({"b": 1, "a": [1, 2]}) == b'{"a":[1,2],"b":1}'


@pytest.mark.parametrize("ref, expected", [
    ("127.0.0.1:5000/speech/speech-asr:latest-cpu", ("127.0.0.1:5000", "speech/speech-asr", "latest-cpu")),
    ("registry.example.org/team/asr", ("registry.example.org", "team/asr", "latest")),
    ("localhost/asr@sha256:" + "ab" * 32, ("localhost", "asr", "sha256:" + "ab" * 32)),
])
def test_references(ref: str, expected: tuple[str, str, str]) -> None:
    assert parse_ref(ref) == expected


@pytest.mark.parametrize("ref, message", [
    ("speech-asr:latest", "names no registry host"),
    ("speech/speech-asr:latest", "names no registry host"),
    ("127.0.0.1:5000/Speech/ASR:latest", "not a valid repository name"),
    ("127.0.0.1:5000/asr@sha256:abc", "is not a digest"),
    ("127.0.0.1:5000/asr:bad$tag", "is not a valid tag"),
])
def test_bad_references_are_one_line(ref: str, message: str) -> None:
    with pytest.raises(BadInputError, match=message) as info:
        parse_ref(ref)
    assert "\n" not in info.value.message


V02 = {
    "_type": "https://in-toto.io/Statement/v0.1",
    "predicateType": "https://slsa.dev/provenance/v0.2",
    "subject": [{"name": "pkg:docker/127.0.0.1:5000/t/tiny@1?platform=linux%2Famd64", "digest": {"sha256": "8a" * 32}}],
    "predicate": {
        "builder": {"id": ""},
        "buildType": "https://mobyproject.org/buildkit@v1",
        "materials": [{"uri": "pkg:docker/speech-os-bookworm@bookworm-6ff06b723283?platform=linux%2Famd64",
                       "digest": {"sha256": "71" * 32}}],
        "invocation": {
            "configSource": {"entryPoint": "Dockerfile"},
            "parameters": {"frontend": "dockerfile.v0", "args": {"build-arg:GREETING": "hi", "target": "runtime"},
                           "secrets": [{"id": "hf_token", "optional": True}, {"id": "ca_bundle", "optional": True}],
                           "locals": [{"name": "context"}, {"name": "dockerfile"}]},
            "environment": {"platform": "linux/amd64"}},
        "metadata": {"buildInvocationID": "rzd", "buildStartedOn": "2026-12-02T12:43:57.973978956Z",
                     "buildFinishedOn": "2026-12-02T12:43:58.208885458Z", "reproducible": False,
                     "https://mobyproject.org/buildkit@v1#metadata": {
                         "vcs": {"source": "https://example.org/speech.git", "revision": "4567202"}}},
    },
}

V1 = {
    "_type": "https://in-toto.io/Statement/v0.1",
    "predicateType": "https://slsa.dev/provenance/v1",
    "subject": V02["subject"],
    "predicate": {
        "buildDefinition": {
            "buildType": "https://github.com/moby/buildkit/blob/master/docs/attestations/slsa-definitions.md",
            "externalParameters": {
                "configSource": {"path": "Dockerfile"},
                "request": {"frontend": "dockerfile.v0", "args": {"build-arg:GREETING": "hi", "target": "runtime"},
                            "secrets": [{"id": "ca_bundle", "optional": True}, {"id": "hf_token", "optional": True}],
                            "locals": [{"name": "context"}, {"name": "dockerfile"}]}},
            "resolvedDependencies": V02["predicate"]["materials"],
        },
        "runDetails": {
            "builder": {"id": ""},
            "metadata": {"invocationId": "rzd", "startedOn": "2026-12-02T12:43:57.973978956Z",
                         "finishedOn": "2026-12-02T12:43:58.208885458Z",
                         "buildkit_metadata": {"vcs": {"source": "https://example.org/speech.git",
                                                       "revision": "4567202"}}},
        },
    },
}


@pytest.mark.parametrize("statement", [V02, V1], ids=["slsa-v0.2", "slsa-v1"])
def test_provenance_says_the_same_in_both_versions(statement: dict) -> None:
    s = provenance_summary(statement)
    assert s["frontend"] == "dockerfile.v0" and s["entry_point"] == "Dockerfile"
    assert s["build_args"] == {"GREETING": "hi"} and s["options"] == {"target": "runtime"}
    assert s["secrets"] == ["ca_bundle", "hf_token"]
    assert s["materials"] == [{"uri": "pkg:docker/speech-os-bookworm@bookworm-6ff06b723283?platform=linux%2Famd64",
                               "digest": "sha256:" + "71" * 32}]
    assert s["source"] == {"uri": "https://example.org/speech.git", "digest": "4567202"}
    assert s["seconds"] == 0.235 and s["invocation_id"] == "rzd"
    assert s["subject"][0]["digest"] == "sha256:" + "8a" * 32


def test_times_with_nanoseconds() -> None:
    assert parse_time("2026-12-02T12:43:57.973978956Z").isoformat() == "2026-12-02T12:43:57.973978+00:00"
    assert parse_time("2026-12-02T12:43:57Z").isoformat() == "2026-12-02T12:43:57+00:00"
    assert parse_time("yesterday") is None and parse_time(None) is None


def test_what_is_missing_is_said_plainly() -> None:
    found = ImageAttestations("127.0.0.1:5000/t/tiny:1", "127.0.0.1:5000", "t/tiny", SUBJECT["digest"], INDEX,
                              [PlatformImage("sha256:" + "8a" * 32, "linux/amd64", None)])
    assert found.missing() == ["provenance", "sbom"]
    with pytest.raises(OperationError, match="has no provenance attestation.*has no SBOM attached"):
        found.require()
    found.require(provenance=False, sbom=False)
    lines = summary_lines(found.summary())
    assert "provenance  none" in lines and "sbom        none" in lines
    found.images[0].provenance = V02
    found.require(provenance=True, sbom=False)
    text = "\n".join(summary_lines(found.summary()))
    assert "build args  GREETING=hi" in text and "secrets     ca_bundle, hf_token" in text
