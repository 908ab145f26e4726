"""Pushing to a real registry process: digests read back over its HTTP API, auth and reachability errors."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from infra.engine import Engine
from infra.errors import BadInputError, OperationError
from infra.build.registry import preflight, push_images
from tests.integration.conftest import free_port, start_registry, stop_registry

pytestmark = pytest.mark.docker
MANIFEST_TYPES = ", ".join([
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
])


@pytest.fixture
def tiny_image(tmp_path: Path):
    """A two-layer image built FROM scratch, unique to this test."""
    ref = f"infra-test-push-{uuid.uuid4().hex[:8]}:latest"
    (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY payload /payload\n")
    (tmp_path / "payload").write_text(ref)
    subprocess.run(["docker", "buildx", "build", "-q", "--load", "-t", ref, str(tmp_path)], check=True,
                   capture_output=True, timeout=120)
    made = [ref]
    yield ref, made
    subprocess.run(["docker", "image", "rm", "-f", *made], capture_output=True)


def login(registry) -> None:
    subprocess.run(["docker", "login", registry.host, "-u", registry.user, "--password-stdin"],
                   input=registry.password, text=True, check=True, capture_output=True)


def test_push_digest_matches_the_registry_manifest(registry, docker_config, tiny_image) -> None:
    local, made = tiny_image
    login(registry)
    preflight(f"{registry.host}/speech", logged_in=Engine.registry_logged_in(registry.host))
    remote = f"{registry.host}/speech/{local}"
    made.append(remote)
    [result] = list(push_images(Engine(), {"tiny": (local, remote)}))
    assert result.digest.startswith("sha256:") and result.attempts == 1
    repo, tag = local.split(":")
    status, headers, body = registry.get(f"/v2/speech/{repo}/manifests/{tag}", accept=MANIFEST_TYPES)
    assert status == 200
    assert headers["Docker-Content-Digest"] == result.digest
    assert json.loads(body)["schemaVersion"] == 2


def test_push_without_credentials_is_one_clear_error(registry, docker_config, tiny_image) -> None:
    with pytest.raises(BadInputError, match=f"registry {registry.host} needs credentials") as info:
        preflight(f"{registry.host}/speech", logged_in=False)
    assert info.value.hint == f"docker login {registry.host}"
    local, made = tiny_image
    remote = f"{registry.host}/speech/{local}"
    made.append(remote)
    with pytest.raises(BadInputError, match="did not accept the credentials") as info:
        list(push_images(Engine(), {"tiny": (local, remote)}, sleep=lambda s: None))
    assert info.value.hint == f"docker login {registry.host}"


def test_unreachable_registry_fails_before_any_build() -> None:
    with pytest.raises(OperationError, match=r"registry 127\.0\.0\.1:\d+ is unreachable"):
        preflight(f"127.0.0.1:{free_port()}/speech", logged_in=False, timeout=2)


def test_transient_failure_is_retried(tmp_path: Path, tiny_image) -> None:
    """The first push meets a closed port; the registry comes up during the backoff, the retry succeeds."""
    local, made = tiny_image
    port = free_port()
    remote = f"127.0.0.1:{port}/speech/{local}"
    made.append(remote)
    started = []

    def sleep(seconds: float) -> None:
        if not started:
            started.append(start_registry(tmp_path / "late-registry", port))

    try:
        [result] = list(push_images(Engine(), {"tiny": (local, remote)}, sleep=sleep))
    finally:
        for proc in started:
            stop_registry(proc)
    assert started and result.attempts == 2 and result.digest.startswith("sha256:")
