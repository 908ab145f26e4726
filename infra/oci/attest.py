"""What a pushed image carries: BuildKit's provenance attestation and the SBOM attached to it.

BuildKit (with ``--provenance``) pushes an image index whose entries are the image manifests and, for
each, an attestation manifest (annotation ``vnd.docker.reference.type: attestation-manifest``, its
``vnd.docker.reference.digest`` naming the image) whose layers are in-toto statements. The SBOM is an
OCI artifact (``artifactType: application/vnd.cyclonedx+json``) that refers to the index, found through
the referrers API or its fallback tag (infra/oci/referrers.py). :func:`read_attestations` reads both;
infra/oci/summary.py says what they hold.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from infra.errors import BadInputError, OperationError
from infra.oci.client import RegistryClient, json_object, split_ref
from infra.oci.referrers import list_referrers, newest
from infra.oci.summary import PROVENANCE_TYPES, provenance_summary, sbom_summary

SBOM_TYPE = "application/vnd.cyclonedx+json"
INDEX_TYPES = ("application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json")
REFERENCE_TYPE = "vnd.docker.reference.type"
REFERENCE_DIGEST = "vnd.docker.reference.digest"
PREDICATE_TYPE = "in-toto.io/predicate-type"
REPOSITORY = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def parse_ref(ref: str) -> tuple[str, str, str]:
    """``HOST/path/name[:tag|@sha256:...]`` as (host, repository, tag or digest); the tag defaults to latest."""
    host, rest = split_ref(ref)
    if "@" in rest:
        repository, _, reference = rest.partition("@")
        if not DIGEST.match(reference):
            raise BadInputError(f"'{ref}': '{reference}' is not a digest (expected sha256: and 64 hex digits)")
    else:
        repository, colon, reference = rest.rpartition(":") if ":" in rest.rsplit("/", 1)[-1] else (rest, "", "")
        reference = reference or "latest"
        if not TAG.match(reference):
            raise BadInputError(f"'{ref}': '{reference}' is not a valid tag")
    if not REPOSITORY.match(repository):
        raise BadInputError(f"'{ref}': '{repository}' is not a valid repository name (lower case, digits, . _ - /)")
    return host, repository, reference


@dataclass
class PlatformImage:
    digest: str
    platform: str                              # "linux/amd64"; "" when the registry holds a lone manifest
    provenance: dict | None = None             # the in-toto statement, None when the image has none


@dataclass
class ImageAttestations:
    ref: str
    host: str
    repository: str
    digest: str                                # what the tag resolves to (an index or a lone manifest)
    media_type: str
    images: list[PlatformImage] = field(default_factory=list)
    sbom: dict | None = None
    sbom_manifest: str = ""                    # the digest of the artifact manifest that holds the SBOM
    sbom_subject: str = ""                     # the digest the SBOM refers to

    @property
    def provenance(self) -> list[dict]:
        return [i.provenance for i in self.images if i.provenance is not None]

    def missing(self) -> list[str]:
        gone = [] if self.provenance else ["provenance"]
        return gone + ([] if self.sbom is not None else ["sbom"])

    def require(self, provenance: bool = True, sbom: bool = True) -> None:
        """OperationError (exit 1) naming what the image lacks of what is asked for."""
        problems = []
        if provenance and not self.provenance:
            problems.append(f"{self.ref} has no provenance attestation (it was pushed from a build without "
                            "--provenance, or from an image store that drops attestations)")
        if sbom and self.sbom is None:
            problems.append(f"{self.ref} has no SBOM attached (infra attaches one when it pushes the image)")
        if problems:
            raise OperationError("; ".join(problems))

    def summary(self) -> dict:
        return {
            "ref": self.ref,
            "digest": self.digest,
            "media_type": self.media_type,
            "images": [{"digest": i.digest, "platform": i.platform,
                        "provenance": provenance_summary(i.provenance) if i.provenance else None}
                       for i in self.images],
            "sbom": ({"manifest": self.sbom_manifest, "subject": self.sbom_subject, **sbom_summary(self.sbom)}
                     if self.sbom is not None else None),
            "missing": self.missing(),
        }


def _platform(entry: dict) -> str:
    platform = entry.get("platform") or {}
    text = "/".join(p for p in (platform.get("os"), platform.get("architecture"), platform.get("variant")) if p)
    return text


def _provenance(client: RegistryClient, repository: str, attestation_digest: str) -> dict | None:
    body, _, _ = client.fetch_manifest(repository, attestation_digest)
    manifest = json_object(body, f"attestation manifest {attestation_digest[:19]}")
    for layer in manifest.get("layers") or []:
        if (layer.get("annotations") or {}).get(PREDICATE_TYPE) in PROVENANCE_TYPES:
            statement = json_object(client.fetch_blob(repository, layer["digest"]), f"attestation {layer['digest'][:19]}")
            if statement.get("predicateType") in PROVENANCE_TYPES:
                return statement
    return None


def read_attestations(ref: str, client: RegistryClient | None = None) -> ImageAttestations:
    """The provenance and the SBOM of image ``ref`` in its registry; either may be absent (see ``missing``).

    BadInputError for a ref without a registry host, wrong or missing credentials, or an image the
    registry does not hold; OperationError when the registry cannot be reached."""
    host, repository, reference = parse_ref(ref)
    client = client or RegistryClient(host)
    digest = client.manifest_digest(repository, reference)
    if digest is None:
        raise BadInputError(f"{host} holds no image {repository}{'@' if reference.startswith('sha256:') else ':'}"
                            f"{reference}", hint="check the name and tag, or push the image first")
    body, media_type, _ = client.fetch_manifest(repository, digest)
    result = ImageAttestations(ref, host, repository, digest, media_type)
    if media_type in INDEX_TYPES:
        entries = json_object(body, f"image index {digest[:19]}").get("manifests") or []
        attestations = {(e.get("annotations") or {}).get(REFERENCE_DIGEST): e["digest"] for e in entries
                        if (e.get("annotations") or {}).get(REFERENCE_TYPE) == "attestation-manifest"}
        for entry in entries:
            if (entry.get("annotations") or {}).get(REFERENCE_TYPE) == "attestation-manifest":
                continue
            attestation = attestations.get(entry["digest"])
            result.images.append(PlatformImage(entry["digest"], _platform(entry),
                                               _provenance(client, repository, attestation) if attestation else None))
    else:
        result.images.append(PlatformImage(digest, ""))
    for subject in [digest, *(i.digest for i in result.images if i.digest != digest)]:
        found = newest(list_referrers(client, repository, subject, SBOM_TYPE))
        if found is None:
            continue
        artifact = json_object(client.fetch_manifest(repository, found["digest"])[0], f"SBOM manifest {found['digest'][:19]}")
        layers = [layer for layer in artifact.get("layers") or [] if layer.get("mediaType") == SBOM_TYPE]
        if layers:
            result.sbom = json_object(client.fetch_blob(repository, layers[0]["digest"]), f"SBOM {layers[0]['digest'][:19]}")
            result.sbom_manifest, result.sbom_subject = found["digest"], subject
            break
    return result
