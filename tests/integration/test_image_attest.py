"""Provenance and SBOM of a pushed image, against the real engine and a real registry (distribution 2.8).

One tiny image FROM the offline base is built the way infra builds (BuildKit secrets for a CA bundle file
and a Hugging Face token from the environment, provenance mode=max), pushed, and given its SBOM; the
tests read both back with `infra image inspect` and look for the secrets everywhere they could leak.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from infra.build.sbom import SbomResult, attach_sbom
from infra.engine import Engine
from infra.errors import OperationError
from infra.oci.referrers import fallback_tag
from infra.render import paths
from tests.integration.conftest import free_port

pytestmark = pytest.mark.docker
ACCEPT = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json"
SBOM_TYPE = "application/vnd.cyclonedx+json"

DOCKERFILE = """\
FROM {base}
ARG GREETING=hello
COPY demo_pkg-1.2.3.dist-info /usr/local/lib/python3.11/dist-packages/demo_pkg-1.2.3.dist-info
RUN {mounts}echo "$GREETING" > /greeting
LABEL org.example.purpose=attestation-test
"""


@dataclass
class Pushed:
    remote: str            # HOST/attest/NAME:TAG
    repository: str        # attest/NAME
    digest: str
    sbom: SbomResult
    ca_value: str
    hf_value: str
    made: list[str]


def build_and_push(context: Path, base: str, remote: str, provenance: bool, env: dict[str, str],
                   secrets: list[str], greeting: str) -> None:
    ca, hf = paths.CA_SECRET, paths.HF_SECRET
    mounts = (f"--mount=type=secret,id={ca} --mount=type=secret,id={hf} test -s /run/secrets/{ca} && "
              f"test -s /run/secrets/{hf} && sha256sum /run/secrets/{ca} /run/secrets/{hf} > /dev/null && ")
    (context / "Dockerfile").write_text(DOCKERFILE.format(base=base, mounts=mounts if secrets else ""))
    dist = context / "demo_pkg-1.2.3.dist-info"
    dist.mkdir(exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: demo_pkg\nVersion: 1.2.3\n")
    command = ["docker", "buildx", "build", "-q", "--load", "--no-cache", "--build-arg", f"GREETING={greeting}",
               f"--provenance={'mode=max' if provenance else 'false'}", "-t", remote, str(context)]
    for secret in secrets:
        command[4:4] = ["--secret", secret]
    for step in (command, ["docker", "push", "-q", remote]):
        proc = subprocess.run(step, capture_output=True, text=True, timeout=300, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]


def login(registry) -> None:
    subprocess.run(["docker", "login", registry.host, "-u", registry.user, "--password-stdin"],
                   input=registry.password, text=True, check=True, capture_output=True)


def local_digest(remote: str) -> str:
    repository = remote.rsplit(":", 1)[0]
    digests = [d for d in Engine().inspect_image(remote).repo_digests if d.startswith(repository + "@")]
    return digests[0].split("@", 1)[1]


@pytest.fixture(scope="module")
def pushed(registry, offline_base: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pushed]:
    """The image infra would push: secrets passed as _build_secrets passes them, provenance, its SBOM attached."""
    root = tmp_path_factory.mktemp("attest")
    with pytest.MonkeyPatch.context() as patch:
        (root / "docker-config").mkdir()
        patch.setenv("DOCKER_CONFIG", str(root / "docker-config"))
        login(registry)
        ca_value = f"-----BEGIN CERTIFICATE-----\nFAKE-CA-{uuid.uuid4().hex}\n-----END CERTIFICATE-----\n"
        hf_value = f"hf_{uuid.uuid4().hex}"
        (root / "ca.pem").write_text(ca_value)
        name = f"tiny-{uuid.uuid4().hex[:8]}"
        remote = f"{registry.host}/attest/{name}:1"
        context = root / "context"
        context.mkdir()
        env = {**os.environ, "INFRA_TEST_HF_TOKEN": hf_value}
        made = [remote]
        try:
            build_and_push(context, offline_base, remote, True, env,
                           [f"id={paths.CA_SECRET},src={root / 'ca.pem'}", f"id={paths.HF_SECRET},env=INFRA_TEST_HF_TOKEN"],
                           "hi-from-the-test")
            digest = local_digest(remote)
            result = attach_sbom(Engine(), remote, digest)
            yield Pushed(remote, f"attest/{name}", digest, result, ca_value, hf_value, made)
        finally:
            subprocess.run(["docker", "image", "rm", "-f", *made], capture_output=True)


def registry_json(registry, repository: str, reference: str) -> dict:
    status, _, body = registry.get(f"/v2/{repository}/manifests/{reference}", accept=ACCEPT)
    assert status == 200, body
    return json.loads(body)


def test_inspect_reads_the_provenance_and_the_sbom_back(pushed: Pushed, run_cli) -> None:
    result = run_cli("image", "inspect", pushed.remote, "--json")
    assert result.code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["digest"] == pushed.digest and summary["missing"] == []
    [image] = summary["images"]
    assert image["platform"] == "linux/amd64"
    provenance = image["provenance"]
    assert provenance["predicate_type"] == "https://slsa.dev/provenance/v0.2"
    assert provenance["build_args"] == {"GREETING": "hi-from-the-test"}
    assert provenance["secrets"] == sorted([paths.CA_SECRET, paths.HF_SECRET])
    assert any("speech-os-bookworm" in m["uri"] for m in provenance["materials"])
    assert provenance["started"] and provenance["finished"] and provenance["seconds"] >= 0
    assert provenance["subject"][0]["digest"] == image["digest"]
    sbom = summary["sbom"]
    assert sbom["subject"] == pushed.digest and sbom["manifest"] == pushed.sbom.manifest
    assert sbom["describes"]["version"] == pushed.digest
    assert sbom["by_kind"]["deb"] == pushed.sbom.debs and sbom["by_kind"]["pypi"] == pushed.sbom.dists


def test_the_sbom_lists_what_is_really_inside(pushed: Pushed, run_cli) -> None:
    """Every installed Debian package (as dpkg-query in the image says) and the Python distribution the build added."""
    listed = subprocess.run(["docker", "run", "--rm", "--network", "none", pushed.remote, "dpkg-query", "-W", "-f",
                             "${db:Status-Status} ${Package} ${Version} ${Architecture}\n"],
                            capture_output=True, text=True, check=True).stdout
    installed = {tuple(line.split()[1:]) for line in listed.splitlines() if line.startswith("installed ")}
    result = run_cli("image", "inspect", pushed.remote, "--sbom")
    assert result.code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["bomFormat"] == "CycloneDX" and document["specVersion"] == "1.6"
    components = document["components"]
    debs = {(c["name"], c["version"], c["purl"].split("arch=")[1].split("&")[0]) for c in components
            if c.get("purl", "").startswith("pkg:deb/debian/")}
    assert debs == installed and len(installed) > 50
    assert "pkg:pypi/demo-pkg@1.2.3" in {c.get("purl") for c in components}
    assert document["metadata"]["component"]["name"] == pushed.remote.rsplit(":", 1)[0]


def test_the_sbom_is_an_oci_artifact_listed_under_the_referrers_tag(pushed: Pushed, registry) -> None:
    status, _, _ = registry.get(f"/v2/{pushed.repository}/referrers/{pushed.digest}")
    assert status == 404, "distribution 2.8 has no referrers API: the fallback tag is what lists the SBOM"
    index = registry_json(registry, pushed.repository, fallback_tag(pushed.digest))
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert [(m["digest"], m["artifactType"]) for m in index["manifests"]] == [(pushed.sbom.manifest, SBOM_TYPE)]
    artifact = registry_json(registry, pushed.repository, pushed.sbom.manifest)
    assert artifact["artifactType"] == SBOM_TYPE and artifact["subject"]["digest"] == pushed.digest
    assert artifact["subject"]["mediaType"] == "application/vnd.oci.image.index.v1+json"
    again = attach_sbom(Engine(), pushed.remote, pushed.digest)
    assert again.manifest == pushed.sbom.manifest, "the same image gives the same SBOM, byte for byte"
    assert len(registry_json(registry, pushed.repository, fallback_tag(pushed.digest))["manifests"]) == 1


def _blob(registry, repository: str, digest: str) -> bytes:
    status, _, body = registry.get(f"/v2/{repository}/blobs/{digest}")
    assert status == 200
    return body


def test_the_secrets_appear_nowhere(pushed: Pushed, registry, run_cli) -> None:
    secrets = [pushed.ca_value.strip(), pushed.ca_value.splitlines()[1], pushed.hf_value]
    forms = [s.encode() for s in secrets] + [base64.b64encode(s.encode()) for s in secrets]
    index = registry_json(registry, pushed.repository, pushed.digest)
    documents: dict[str, bytes] = {}
    for entry in index["manifests"]:
        manifest = registry_json(registry, pushed.repository, entry["digest"])
        documents[f"config of {entry['digest'][:19]}"] = _blob(registry, pushed.repository, manifest["config"]["digest"])
        for layer in manifest["layers"]:
            data = _blob(registry, pushed.repository, layer["digest"])
            documents[f"layer {layer['digest'][:19]}"] = gzip.decompress(data) if "gzip" in layer["mediaType"] else data
    artifact = registry_json(registry, pushed.repository, pushed.sbom.manifest)
    documents["sbom"] = _blob(registry, pushed.repository, artifact["layers"][0]["digest"])
    assert any(b"in-toto" in data for data in documents.values()), "the provenance statement is among them"
    assert any(b"org.example.purpose" in data for data in documents.values()), "the image config is among them"
    for args in (["--json"], ["--sbom", "--provenance"], []):
        result = run_cli("image", "inspect", pushed.remote, *args)
        assert result.code == 0, result.stderr
        documents[f"inspect {' '.join(args)}"] = (result.stdout + result.stderr).encode()
        assert registry.password not in result.stdout + result.stderr
    for what, data in documents.items():
        for form in forms:
            assert form not in data, f"a secret is in the {what}"


def test_an_image_without_attestation_or_sbom_says_so(pushed: Pushed, registry, offline_base: str, tmp_path: Path,
                                                       run_cli) -> None:
    remote = pushed.remote.rsplit(":", 1)[0] + ":plain"
    pushed.made.append(remote)
    build_and_push(tmp_path, offline_base, remote, False, dict(os.environ), [], "plain")
    result = run_cli("image", "inspect", remote)
    assert result.code == 1
    assert "provenance  none" in result.stdout and "sbom        none" in result.stdout
    [error] = result.stderr.strip().splitlines()
    assert "has no provenance attestation" in error and "has no SBOM attached" in error
    for flag, message in (("--sbom", "has no SBOM attached"), ("--provenance", "has no provenance attestation")):
        result = run_cli("image", "inspect", remote, flag)
        assert result.code == 1 and message in result.stderr and result.stdout == ""
        assert len(result.stderr.strip().splitlines()) == 1


def test_a_local_image_that_is_not_the_pushed_one_gets_no_sbom(pushed: Pushed, offline_base: str) -> None:
    other = pushed.remote.rsplit(":", 1)[0] + ":other"
    pushed.made.append(other)
    Engine().tag(offline_base, other)
    with pytest.raises(OperationError, match="is not the one pushed"):
        attach_sbom(Engine(), other, pushed.digest)


def test_bad_references_are_one_line(pushed: Pushed, registry, run_cli, docker_config: Path) -> None:
    """Each a single error line with the right exit code; never the registry's password."""
    cases = [
        ([f"127.0.0.1:{free_port()}/attest/tiny:1"], 1, "is unreachable"),
        ([pushed.remote], 2, f"registry {registry.host} needs credentials"),         # docker_config: no login
        (["speech-asr:latest-cpu"], 2, "names no registry host"),
    ]
    for args, code, message in cases:
        result = run_cli("image", "inspect", *args)
        assert result.code == code, (args, result.stdout, result.stderr)
        assert message in result.stderr.splitlines()[0], result.stderr
        assert "Traceback" not in result.stderr and result.stdout == ""
        assert registry.password not in result.stdout + result.stderr
    login(registry)
    result = run_cli("image", "inspect", pushed.remote.rsplit(":", 1)[0] + ":no-such-tag")
    assert result.code == 2 and "holds no image" in result.stderr.splitlines()[0]
    auth = base64.b64encode(f"{registry.user}:not-the-password".encode()).decode()
    (docker_config / "config.json").write_text(json.dumps({"auths": {registry.host: {"auth": auth}}}))
    result = run_cli("image", "inspect", pushed.remote)
    assert result.code == 2 and "did not accept the credentials" in result.stderr.splitlines()[0]
    assert registry.password not in result.stderr and "not-the-password" not in result.stderr
