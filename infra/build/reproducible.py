"""Reproducible builds: one SOURCE_DATE_EPOCH for every image of a spec, taken from its last commit.

BuildKit stamps that time on the image config and history, and with ``rewrite-timestamp`` on every
file of the layers it writes; the templates keep out what still varies (pip's caches and pyc
timestamps, apt's lists and logs). docs/REGISTRY.md says what stays different and why.
"""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path

from infra.errors import BadInputError
from infra.spec import Stack


def source_date_epoch(stack: Stack) -> str:
    """$SOURCE_DATE_EPOCH when set, else the time of the last commit that touched the spec's folder."""
    given = os.environ.get("SOURCE_DATE_EPOCH")
    if given:
        if not given.isdigit():
            raise BadInputError(f"SOURCE_DATE_EPOCH: '{given}' is not a number of seconds since 1970")
        return given
    folder = stack.spec_path.parent
    try:
        out = subprocess.run(["git", "-C", str(folder), "log", "-1", "--format=%ct", "--", "."],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        out = None
    value = out.stdout.strip() if out is not None and out.returncode == 0 else ""
    if not value.isdigit():
        raise BadInputError(f"--reproducible: {folder} has no git history to take the build time from",
                            hint="commit the spec, or set SOURCE_DATE_EPOCH")
    return value


def image_manifest_digest(archive: Path) -> str:
    """The digest of the image manifest (linux/amd64 or the like, not an attestation) in an OCI archive.

    That manifest names the config and the layers, so it is what two reproducible builds must agree
    on; the index around it also lists the provenance attestation, which records when the build ran."""
    with tarfile.open(archive) as tar:
        def blob(digest: str) -> dict:
            member = tar.extractfile(f"blobs/{digest.replace(':', '/')}")
            return json.load(member) if member is not None else {}

        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        entries = index.get("manifests", [])
        while entries:
            entry = entries[0]
            if entry.get("mediaType", "").endswith("index.v1+json"):
                entries = [m for m in blob(entry["digest"]).get("manifests", [])
                           if m.get("annotations", {}).get("vnd.docker.reference.type") != "attestation-manifest"]
                continue
            return str(entry["digest"])
    return ""
