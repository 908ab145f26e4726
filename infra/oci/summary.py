"""What a provenance attestation and an SBOM say, in a few fields: pure functions over their JSON.

Provenance is BuildKit's in-toto statement, SLSA v0.2 (BuildKit's default) or v1 (``--provenance
version=v1``); both become the same summary. An SBOM is a CycloneDX document. Nothing here reads a
value that a build was given as a secret: BuildKit records the ids of secret mounts, never their values.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone

SLSA_V02 = "https://slsa.dev/provenance/v0.2"
SLSA_V1 = "https://slsa.dev/provenance/v1"
PROVENANCE_TYPES = (SLSA_V02, SLSA_V1)
BUILDKIT_METADATA = "https://mobyproject.org/buildkit@v1#metadata"
SAMPLE = 8


def _digest(digests: object) -> str:
    """``{"sha256": "ab..."}`` -> ``sha256:ab...`` (the first algorithm when there are several)."""
    if isinstance(digests, dict) and digests:
        algorithm = "sha256" if "sha256" in digests else sorted(digests)[0]
        return f"{algorithm}:{digests[algorithm]}"
    return ""


def _seconds(started: str, finished: str) -> float | None:
    start, end = parse_time(started), parse_time(finished)
    return round((end - start).total_seconds(), 3) if start and end else None


def parse_time(stamp: object) -> datetime | None:
    """An RFC 3339 time (Go writes nanoseconds, Python reads microseconds) in UTC; None when it is none."""
    if not isinstance(stamp, str) or not stamp:
        return None
    text = stamp.replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:
        digits = "".join(c for c in rest if c.isdigit())
        text = f"{head}.{digits[:6].ljust(6, '0')}{rest[len(digits):]}"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.astimezone(timezone.utc) if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def provenance_summary(statement: dict) -> dict:
    """Builder, build type, frontend and entry point, build arguments, secret ids, source, materials, times."""
    predicate_type = statement.get("predicateType", "")
    predicate = statement.get("predicate") or {}
    if predicate_type == SLSA_V1:
        definition = predicate.get("buildDefinition") or {}
        external = definition.get("externalParameters") or {}
        request = external.get("request") or {}
        config = external.get("configSource") or {}
        run = predicate.get("runDetails") or {}
        metadata = run.get("metadata") or {}
        builder = (run.get("builder") or {}).get("id", "")
        build_type = definition.get("buildType", "")
        materials = definition.get("resolvedDependencies") or []
        entry_point = config.get("path", "")
        started, finished = metadata.get("startedOn", ""), metadata.get("finishedOn", "")
        invocation_id = metadata.get("invocationId") or metadata.get("invocationID", "")
        buildkit = metadata.get("buildkit_metadata") or {}
        reproducible = metadata.get("buildkit_reproducible")
    else:
        invocation = predicate.get("invocation") or {}
        request = invocation.get("parameters") or {}
        config = invocation.get("configSource") or {}
        metadata = predicate.get("metadata") or {}
        builder = (predicate.get("builder") or {}).get("id", "")
        build_type = predicate.get("buildType", "")
        materials = predicate.get("materials") or []
        entry_point = config.get("entryPoint", "")
        started, finished = metadata.get("buildStartedOn", ""), metadata.get("buildFinishedOn", "")
        invocation_id = metadata.get("buildInvocationID", "")
        buildkit = metadata.get(BUILDKIT_METADATA) or {}
        reproducible = metadata.get("reproducible")
    args = request.get("args") or {}
    vcs = buildkit.get("vcs") or {}
    return {
        "predicate_type": predicate_type,
        "subject": [{"name": s.get("name", ""), "digest": _digest(s.get("digest"))}
                    for s in statement.get("subject") or [] if isinstance(s, dict)],
        "builder": builder,
        "build_type": build_type,
        "frontend": request.get("frontend", ""),
        "entry_point": entry_point,
        "source": {"uri": config.get("uri", "") or vcs.get("source", ""),
                   "digest": _digest(config.get("digest")) or vcs.get("revision", "")},
        "build_args": {k.removeprefix("build-arg:"): v for k, v in sorted(args.items()) if k.startswith("build-arg:")},
        "options": {k: v for k, v in sorted(args.items()) if not k.startswith("build-arg:")},
        "secrets": sorted(str(s.get("id", "")) for s in request.get("secrets") or [] if isinstance(s, dict)),
        "ssh": sorted(str(s.get("id", "")) for s in request.get("ssh") or [] if isinstance(s, dict)),
        "contexts": [str(c.get("name", "")) for c in request.get("locals") or [] if isinstance(c, dict)],
        "materials": [{"uri": m.get("uri", ""), "digest": _digest(m.get("digest"))}
                      for m in materials if isinstance(m, dict)],
        "started": started,
        "finished": finished,
        "seconds": _seconds(started, finished),
        "invocation_id": invocation_id,
        "reproducible": reproducible,
    }


def _purl_type(purl: str) -> str:
    return purl[4:].split("/", 1)[0] if purl.startswith("pkg:") else "other"


def sbom_summary(document: dict) -> dict:
    """Format and version, what it describes, when it was made, the components counted by kind, a few of them."""
    metadata = document.get("metadata") or {}
    subject = metadata.get("component") or {}
    components = [c for c in document.get("components") or [] if isinstance(c, dict)]
    kinds = Counter(_purl_type(c.get("purl", "")) for c in components if c.get("type") != "operating-system")
    systems = [f"{c.get('name', '')} {c.get('version', '')}".strip() for c in components
               if c.get("type") == "operating-system"]
    sample = []
    for kind in sorted(kinds):
        of_kind = [c for c in components if _purl_type(c.get("purl", "")) == kind and c.get("type") != "operating-system"]
        sample += [{"name": c.get("name", ""), "version": c.get("version", ""), "purl": c.get("purl", "")}
                   for c in of_kind[: max(1, SAMPLE // max(1, len(kinds)))]]
    return {
        "format": f"{document.get('bomFormat', '?')} {document.get('specVersion', '?')}",
        "serial_number": document.get("serialNumber", ""),
        "timestamp": metadata.get("timestamp", ""),
        "describes": {"name": subject.get("name", ""), "version": subject.get("version", ""),
                      "purl": subject.get("purl", "")},
        "components": len(components) - len(systems),
        "by_kind": dict(sorted(kinds.items())),
        "operating_system": systems[0] if systems else "",
        "sample": sample,
    }
