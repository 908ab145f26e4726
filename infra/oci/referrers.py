"""Artifacts that refer to an image (OCI 1.1): an SBOM, a signature, stored beside the image it describes.

An artifact is an image manifest with an ``artifactType``, one layer (the document) and a ``subject``:
the descriptor of the manifest it is about. A registry with the referrers API
(``GET /v2/NAME/referrers/DIGEST``) indexes the subject itself and says so (``OCI-Subject``). One without
it, such as distribution 2.8, gets the spec's fallback: an image index under the tag
``sha256-<hex of the subject's digest>`` listing every referrer, which the client that pushes a
referrer keeps up to date. Reading asks the API first and falls back to that tag.

The functions that build and merge these documents are pure (and tested alone); :func:`attach` and
:func:`list_referrers` do the requests through a :class:`~infra.oci.client.RegistryClient`.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass

from infra.errors import OperationError
from infra.oci.client import RegistryClient, json_object

INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
EMPTY = "application/vnd.oci.empty.v1+json"
EMPTY_BLOB = b"{}"


@dataclass(frozen=True)
class Attached:
    digest: str                 # the artifact manifest's digest
    subject: str                # the digest of the manifest it refers to
    referrers_tag: str | None   # the fallback tag that lists it, None when the registry indexed it itself


def canonical(document: dict) -> bytes:
    """JSON with sorted keys and no spaces: the same document always has the same digest."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def fallback_tag(digest: str) -> str:
    """The referrers tag of a digest: ``sha256:abc...`` -> ``sha256-abc...`` (at most 128 characters)."""
    algorithm, _, encoded = digest.partition(":")
    return f"{algorithm}-{encoded}"[:128]


def artifact_manifest(subject: dict, artifact_type: str, layer: dict, annotations: dict[str, str] | None = None) -> bytes:
    """An OCI 1.1 artifact: the empty config, one layer, the subject it is about."""
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": EMPTY, "digest": digest_of(EMPTY_BLOB), "size": len(EMPTY_BLOB),
                   "data": base64.b64encode(EMPTY_BLOB).decode()},
        "layers": [layer],
        "subject": subject,
    }
    if annotations:
        manifest["annotations"] = dict(sorted(annotations.items()))
    return canonical(manifest)


def referrer_descriptor(manifest: bytes) -> dict:
    """How a referrers index lists an artifact manifest: media type, digest, size, artifact type, annotations."""
    document = json.loads(manifest)
    descriptor = {"mediaType": document.get("mediaType", MANIFEST), "digest": digest_of(manifest), "size": len(manifest),
                  "artifactType": document.get("artifactType") or (document.get("config") or {}).get("mediaType", "")}
    if document.get("annotations"):
        descriptor["annotations"] = document["annotations"]
    return descriptor


def with_referrer(index: dict | None, descriptor: dict) -> dict | None:
    """The referrers index with ``descriptor`` in it; None when it holds that digest already (nothing to write).

    Entries of other digests are kept as they are, in their order, so that referrers other tools added stay."""
    manifests = [m for m in (index or {}).get("manifests") or [] if isinstance(m, dict)]
    if any(m.get("digest") == descriptor["digest"] for m in manifests):
        return None
    return {"schemaVersion": 2, "mediaType": INDEX, "manifests": [*manifests, descriptor]}


def of_type(index: dict | None, artifact_type: str | None) -> list[dict]:
    """The descriptors of a referrers index, only those of ``artifact_type`` when one is given."""
    manifests = [m for m in (index or {}).get("manifests") or [] if isinstance(m, dict) and m.get("digest")]
    return [m for m in manifests if artifact_type is None or m.get("artifactType") == artifact_type]


def newest(descriptors: list[dict]) -> dict | None:
    """The referrer made last (its ``org.opencontainers.image.created`` annotation), else the last listed."""
    if not descriptors:
        return None
    return max(enumerate(descriptors),
               key=lambda item: ((item[1].get("annotations") or {}).get("org.opencontainers.image.created", ""),
                                 item[0]))[1]


def attach(client: RegistryClient, repository: str, subject_digest: str, artifact_type: str, payload: bytes,
           annotations: dict[str, str] | None = None) -> Attached:
    """Store ``payload`` (a document of media type ``artifact_type``) as an artifact referring to the manifest
    ``subject_digest`` of ``repository``, and list it under the fallback tag unless the registry indexed it.

    Attaching the same bytes again changes nothing. Blobs first, then the manifest, then the index, so an
    interruption leaves nothing that points at something missing."""
    subject_body, subject_type, actual = client.fetch_manifest(repository, subject_digest)
    if actual != subject_digest:
        raise OperationError(f"registry {client.host}: {repository}@{subject_digest} came back as {actual}")
    subject = {"mediaType": subject_type, "digest": subject_digest, "size": len(subject_body)}
    client.push_blob(repository, EMPTY_BLOB)
    layer = {"mediaType": artifact_type, "digest": client.push_blob(repository, payload), "size": len(payload)}
    manifest = artifact_manifest(subject, artifact_type, layer, annotations)
    digest, indexed = client.push_manifest(repository, digest_of(manifest), manifest, MANIFEST)
    if indexed:
        return Attached(digest, subject_digest, None)
    tag = fallback_tag(subject_digest)
    current = None
    if client.manifest_digest(repository, tag) is not None:
        current = _index(client, repository, tag)
    updated = with_referrer(current, referrer_descriptor(manifest))
    if updated is not None:
        client.put_manifest(repository, tag, canonical(updated), INDEX)
    return Attached(digest, subject_digest, tag)


def list_referrers(client: RegistryClient, repository: str, digest: str, artifact_type: str | None = None) -> list[dict]:
    """What refers to ``digest``: through the referrers API when the registry has one, else the fallback tag."""
    index = client.referrers(repository, digest)
    if index is None:
        tag = fallback_tag(digest)
        if client.manifest_digest(repository, tag) is None:
            return []
        index = _index(client, repository, tag)
    return of_type(index, artifact_type)


def _index(client: RegistryClient, repository: str, tag: str) -> dict:
    body = client.fetch_manifest(repository, tag)[0]
    return json_object(body, f"registry {client.host}: the referrers tag {repository}:{tag[:19]}...")
