"""Behind a TLS-intercepting proxy: a build uses the CA bundle the host trusts, names it once, keeps it out of
every layer, and a build that still meets an untrusted certificate ends with the fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, host_ca_bundle

pytestmark = pytest.mark.docker
CA_VARIABLES = ("INFRA_CA_BUNDLE", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT", "PIP_CONFIG_FILE")


def spec(project: Path) -> str:
    """A one-image spec on the offline base whose only network step is a pip install; returns the image's ref."""
    from infra.spec import load_stack

    base = (REPO / "infra.yaml").read_text()
    bases = base[base.index("bases:"):base.index("modes:")]
    (project / "infra.yaml").write_text("project: speech\n" + bases + "modes:\n  docker-cpu:\n    base: bookworm\n")
    (project / "images" / "ca-probe").mkdir(parents=True)
    (project / "images" / "ca-probe" / "image.yaml").write_text("modes: [docker-cpu]\npip: [six==1.17.0]\n")
    return load_stack(project / "infra.yaml").image_ref("ca-probe", "docker-cpu")


def host_env(**extra: str) -> dict[str, str]:
    """This process's environment without any CA setting, and pip's config files switched off."""
    env = {k: v for k, v in os.environ.items() if k not in CA_VARIABLES}
    return {**env, "PIP_CONFIG_FILE": os.devnull, **extra}


def build(project: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "infra", "build", "--mode", "docker-cpu", "--no-cache"],
                          cwd=project, env=env, capture_output=True, text=True, timeout=600)


def body_line(pem: Path) -> str:
    """A line from the middle of the bundle's first certificate: what must never show up anywhere."""
    lines = [line for line in pem.read_text().splitlines() if line and not line.startswith("-----")]
    return lines[len(lines) // 2]


def test_the_host_bundle_is_used_named_once_and_kept_out_of_the_image(tmp_path: Path, offline_base) -> None:
    host_ca = host_ca_bundle()
    assert host_ca, "this machine trusts no CA bundle file"
    ref = spec(tmp_path)
    try:
        result = build(tmp_path, host_env(SSL_CERT_FILE=host_ca))
        assert result.returncode == 0, result.stderr[-3000:]
        named = [line for line in result.stderr.splitlines() if "CA bundle" in line]
        assert named == [f"CA bundle {os.path.abspath(host_ca)} (from SSL_CERT_FILE), passed to the build as a secret"]
        secret = body_line(Path(host_ca))
        seen = subprocess.run(["docker", "history", "--no-trunc", ref], capture_output=True, text=True).stdout
        seen += subprocess.run(["docker", "image", "inspect", ref], capture_output=True, text=True).stdout
        seen += "".join(p.read_text() for p in (tmp_path / ".infra").rglob("*") if p.is_file())
        assert secret not in seen + result.stdout + result.stderr
        absent = subprocess.run(["docker", "run", "--rm", ref, "sh", "-c", "test ! -e /run/secrets/ca_bundle && echo gone"],
                                capture_output=True, text=True).stdout.strip()
        assert absent == "gone"
    finally:
        subprocess.run(["docker", "image", "rm", "-f", ref], capture_output=True)


def test_a_build_that_meets_an_untrusted_certificate_ends_with_the_fix(tmp_path: Path, offline_base) -> None:
    ref = spec(tmp_path)
    wrong = tmp_path / "wrong-ca.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=not the proxy",
                    "-keyout", str(tmp_path / "wrong-ca.key"), "-out", str(wrong)], capture_output=True, check=True)
    try:
        result = build(tmp_path, host_env(INFRA_CA_BUNDLE=str(wrong)))
        assert result.returncode == 1, result.stderr[-3000:]
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("hint: a TLS certificate was not trusted with the CA bundle "), result.stderr[-3000:]
        assert f"{wrong} (from INFRA_CA_BUNDLE)" in last
        assert "set secrets.ca_bundle in infra.yaml or INFRA_CA_BUNDLE=/path/ca.pem" in last
        assert body_line(wrong) not in result.stdout + result.stderr
    finally:
        subprocess.run(["docker", "image", "rm", "-f", ref], capture_output=True)
