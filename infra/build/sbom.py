"""The SBOM of a pushed image: what it really holds, as CycloneDX, attached to it in the registry.

After a push, :func:`attach_sbom` lists the image's Debian packages and Python distributions in a
throw-away container (infra/build/inventory.py), writes them as a CycloneDX document
(:func:`make_sbom`, with package URLs) and stores it beside the image as an OCI artifact whose
subject is the pushed digest (infra/oci/referrers.py). The document depends only on the image: the
same image always gives the same bytes (serial number and timestamp come from its digest and its
creation time), so attaching again adds nothing. It holds names, versions and paths, never a value
the build was given as a secret.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from infra import __version__
from infra.build.inventory import Inventory, inventory
from infra.engine import EngineAPI
from infra.errors import OperationError
from infra.oci.attest import SBOM_TYPE, parse_ref
from infra.oci.client import RegistryClient
from infra.oci.referrers import Attached, attach
from infra.oci.summary import parse_time

SCHEMA = "1.6"
SBOM_NAMESPACE = uuid.UUID("5b0d1c2e-7a43-4f0e-9a51-0d6e3c1f4a77")   # serial numbers: uuid5 of the image digest
CREATED = "org.opencontainers.image.created"


@dataclass(frozen=True)
class ImageIdentity:
    repository: str            # HOST/path/name, as pushed
    digest: str                # the pushed manifest or index digest
    tag: str = ""
    created: datetime | None = None


@dataclass(frozen=True)
class SbomResult:
    ref: str                   # HOST/path/name@digest the SBOM is about
    manifest: str              # the digest of the artifact manifest holding it
    referrers_tag: str | None  # the fallback tag listing it (None: the registry indexed it itself)
    debs: int
    dists: int


def deb_purl(name: str, version: str, arch: str, namespace: str = "debian", distro: str = "") -> str:
    from packageurl import PackageURL

    qualifiers = {"arch": arch} if arch else {}
    if distro:
        qualifiers["distro"] = distro
    return PackageURL(type="deb", namespace=namespace or "debian", name=name, version=version,
                      qualifiers=qualifiers).to_string()


def pypi_purl(key: str, version: str) -> str:
    from packageurl import PackageURL

    return PackageURL(type="pypi", name=key, version=version).to_string()


def oci_purl(repository: str, digest: str, tag: str = "") -> str:
    """``pkg:oci/NAME@sha256:...?repository_url=HOST/path/NAME`` (the purl spec's form for an OCI image)."""
    from packageurl import PackageURL

    qualifiers = {"repository_url": repository}
    if tag:
        qualifiers["tag"] = tag
    return PackageURL(type="oci", name=repository.rsplit("/", 1)[-1], version=digest, qualifiers=qualifiers).to_string()


def make_sbom(inv: Inventory, image: ImageIdentity) -> bytes:
    """The CycloneDX JSON (spec 1.6) of an image's inventory; the image is the metadata component."""
    from cyclonedx.model import HashAlgorithm, HashType, Property
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output import make_outputter
    from cyclonedx.schema import OutputFormat, SchemaVersion

    algorithm, _, hex_digest = image.digest.partition(":")
    root = Component(type=ComponentType.CONTAINER, name=image.repository, version=image.digest,
                     bom_ref=image.digest, purl=_purl(oci_purl(image.repository, image.digest, image.tag)),
                     hashes=[HashType(alg=HashAlgorithm.SHA_256, content=hex_digest)] if algorithm == "sha256" else [],
                     properties=[Property(name="infra:python", value=inv.python)] if inv.python else [])
    components = []
    if inv.os_id:
        components.append(Component(type=ComponentType.OPERATING_SYSTEM, name=inv.os_id, version=inv.os_version,
                                    bom_ref=f"os:{inv.os_id}@{inv.os_version}",
                                    description=inv.os_codename or None))
    distro = f"{inv.os_id}-{inv.os_version}" if inv.os_id and inv.os_version else ""
    for deb in inv.debs:
        purl = deb_purl(deb.name, deb.version, deb.arch, inv.os_id, distro)
        components.append(Component(type=ComponentType.LIBRARY, name=deb.name, version=deb.version, bom_ref=purl,
                                    purl=_purl(purl),
                                    properties=[Property(name="infra:deb:source", value=deb.source)] if deb.source else []))
    for dist in inv.dists:
        purl = pypi_purl(dist.key, dist.version)
        components.append(Component(type=ComponentType.LIBRARY, name=dist.name, version=dist.version, bom_ref=purl,
                                    purl=_purl(purl), properties=[Property(name="infra:location", value=dist.location)]))
    tool = Component(type=ComponentType.APPLICATION, name="infra", version=__version__, bom_ref="tool:infra")
    created = image.created or datetime.now(timezone.utc)
    bom = Bom(serial_number=uuid.uuid5(SBOM_NAMESPACE, f"{image.digest} {__version__}"),
              metadata=BomMetaData(component=root, timestamp=created))
    bom.metadata.tools.components.add(tool)
    for component in components:
        bom.components.add(component)
    bom.register_dependency(root, components)
    return make_outputter(bom, OutputFormat.JSON, SchemaVersion.V1_6).output_as_string(indent=2).encode()


def _purl(text: str):  # noqa: ANN202  (a PackageURL; imported late with the rest of CycloneDX)
    from packageurl import PackageURL

    return PackageURL.from_string(text)


def _created(client: RegistryClient, repository: str, digest: str) -> datetime | None:
    """The image's creation time, from the config of its (first) image manifest."""
    import json

    body, media_type, _ = client.fetch_manifest(repository, digest)
    manifest = json.loads(body)
    if "manifests" in manifest:
        images = [m for m in manifest["manifests"]
                  if (m.get("annotations") or {}).get("vnd.docker.reference.type") != "attestation-manifest"]
        if not images:
            return None
        manifest = json.loads(client.fetch_manifest(repository, images[0]["digest"])[0])
    config = manifest.get("config") or {}
    if not config.get("digest"):
        return None
    return parse_time(json.loads(client.fetch_blob(repository, config["digest"])).get("created"))


def attach_sbom(engine: EngineAPI, remote: str, digest: str | None = None,
                client: RegistryClient | None = None) -> SbomResult:
    """Make the SBOM of the image pushed as ``remote`` (HOST/path/name:tag, also present locally under that
    name) and attach it in the registry to ``digest`` (what the push reported; looked up when None).

    The local image must be the one pushed: its repo digests must name ``digest``, else OperationError."""
    host, repository, reference = parse_ref(remote)
    client = client or RegistryClient(host)
    if digest is None:
        digest = client.manifest_digest(repository, reference)
        if digest is None:
            raise OperationError(f"{remote} is not in the registry: push it before attaching its SBOM")
    local = engine.inspect_image(remote)
    pushed = {d.rsplit("@", 1)[-1] for d in local.repo_digests if d.startswith(f"{host}/{repository}@")}
    if digest not in pushed and local.id != digest:
        raise OperationError(f"the local image {remote} is not the one pushed as {digest[:19]} "
                             f"(its digests: {', '.join(sorted(pushed)) or 'none'})",
                             hint="push it again, then attach its SBOM")
    inv = inventory(engine, remote)
    created = _created(client, repository, digest)
    tag = "" if reference.startswith("sha256:") else reference
    document = make_sbom(inv, ImageIdentity(f"{host}/{repository}", digest, tag, created))
    stamp = (created or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")
    done: Attached = attach(client, repository, digest, SBOM_TYPE, document, {CREATED: stamp})
    return SbomResult(f"{host}/{repository}@{digest}", done.digest, done.referrers_tag, len(inv.debs), len(inv.dists))
