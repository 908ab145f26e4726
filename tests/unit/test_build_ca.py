"""The CA bundle is transport, not content: it never changes a Dockerfile or a content hash."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from infra.build.plan import plan_images, targets_for_mode
from infra.render import default_layout, render_mode
from infra.render.write import write_files
from infra.spec import Stack
from tests.render_cases import default_stack


def with_ca(stack: Stack, ca: str | None) -> Stack:
    spec = stack.spec.model_copy(update={"secrets": stack.spec.secrets.model_copy(update={"ca_bundle": ca})})
    return dataclasses.replace(stack, spec=spec)


def hashes(stack: Stack, mode: str, out: Path) -> dict[str, str]:
    write_files(out, render_mode(stack, mode, default_layout(stack, mode)))  # type: ignore[arg-type]
    plan = plan_images(targets_for_mode(stack, mode, out), lambda ref: None)
    return {name: planned.content_hash for name, planned in plan.images.items()}


@pytest.mark.parametrize("mode", ["docker-cpu", "docker-gpu"])
def test_a_ca_bundle_changes_no_dockerfile_and_no_content_hash(tmp_path: Path, mode: str) -> None:
    stack = default_stack()
    plain = render_mode(stack, mode, default_layout(stack, mode))  # type: ignore[arg-type]
    proxied = render_mode(with_ca(stack, "certs/ca.pem"), mode, default_layout(stack, mode))  # type: ignore[arg-type]
    dockerfiles = [rel for rel in plain if rel.startswith("dockerfiles/")]
    assert dockerfiles
    for rel in dockerfiles:
        assert plain[rel] == proxied[rel], f"{rel} depends on whether a CA bundle is configured"
    without = hashes(stack, mode, tmp_path / "without")
    assert without == hashes(with_ca(stack, "certs/ca.pem"), mode, tmp_path / "with")


def test_every_network_step_can_use_a_ca_bundle_when_one_is_given() -> None:
    files = render_mode(default_stack(), "docker-cpu", default_layout(default_stack(), "docker-cpu"))
    base = files["dockerfiles/base.Dockerfile"]
    assert "--mount=type=secret,id=ca_bundle" in base
    assert "set -- -o Acquire::https::CAInfo=/run/secrets/ca_bundle" in base and 'apt-get "$@" update' in base
    ml = files["dockerfiles/base-ml.Dockerfile"]
    assert "--mount=type=secret,id=ca_bundle" in ml and "export PIP_CERT=/run/secrets/ca_bundle" in ml


def test_the_summary_names_a_step_by_its_command_not_by_the_ca_line() -> None:
    from infra.cli.build_view import short_step

    step = ("[stage-0 3/5] RUN --mount=type=cache,target=/root/.cache/pip,sharing=locked "
            "--mount=type=secret,id=ca_bundle     if [ -s /run/secrets/ca_bundle ]; "
            "then export PIP_CERT=/run/secrets/ca_bundle; fi  && pip install       faster-whisper==1.2.1")
    assert short_step(step) == "RUN pip install faster-whisper==1.2.1"


HOST_VARIABLES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT")


@pytest.fixture
def bare_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A host that trusts nothing in particular: no CA variables, no pip config files (pip's os.devnull rule)."""
    import os

    for variable in HOST_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    return tmp_path


def pem(folder: Path, name: str) -> Path:
    path = folder / name
    path.write_text("-----BEGIN CERTIFICATE-----\nMIIFAKE\n-----END CERTIFICATE-----\n")
    return path


def test_without_a_configured_bundle_the_one_the_host_trusts_is_used_in_order(
        bare_host: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from infra.build.cabundle import find_ca_bundle

    stack = default_stack()
    assert find_ca_bundle(stack) is None
    conf = bare_host / "pip.conf"
    conf.write_text(f"[global]\ncert = {pem(bare_host, 'from-pip-conf.pem')}\ntimeout = 60\n")
    monkeypatch.setenv("PIP_CONFIG_FILE", str(conf))
    found = find_ca_bundle(stack)
    assert found and found.path == bare_host / "from-pip-conf.pem" and found.source == f"pip config {conf}"
    for variable in reversed(HOST_VARIABLES):
        monkeypatch.setenv(variable, str(pem(bare_host, f"{variable}.pem")))
        found = find_ca_bundle(stack)
        assert found and found.path == bare_host / f"{variable}.pem" and found.source == variable
    monkeypatch.setenv("SSL_CERT_FILE", str(bare_host / "missing.pem"))
    assert find_ca_bundle(stack).source == "REQUESTS_CA_BUNDLE", "a variable naming no file is passed over"
    configured = find_ca_bundle(with_ca(stack, str(pem(bare_host, "spec.pem"))))
    assert configured and configured.path == bare_host / "spec.pem" and configured.source == "secrets.ca_bundle"


def test_pip_config_files_are_read_in_pips_order(bare_host: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from infra.build.cabundle import find_ca_bundle

    monkeypatch.delenv("PIP_CONFIG_FILE")
    monkeypatch.setenv("XDG_CONFIG_DIRS", str(bare_host / "xdg"))
    monkeypatch.setenv("HOME", str(bare_host / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(bare_host / "home" / ".config"))
    user = bare_host / "home" / ".config" / "pip" / "pip.conf"
    user.parent.mkdir(parents=True)
    user.write_text(f"[global]\ncert = {pem(bare_host, 'user.pem')}\n")
    found = find_ca_bundle(default_stack())
    assert found and found.path == bare_host / "user.pem", "the user's file beats the global ones"
    user.write_text(f"[global]\ncert = {pem(bare_host, 'user.pem')}\n[install]\ncert = {pem(bare_host, 'install.pem')}\n")
    assert find_ca_bundle(default_stack()).path == bare_host / "install.pem", "pip install reads [install] last"


def test_the_build_passes_the_found_bundle_as_a_secret_by_path_only(bare_host: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from infra.build.run import _build_secrets
    from infra.build.cabundle import find_ca_bundle

    stack = default_stack()
    assert not any("ca_bundle" in s for s in _build_secrets(stack, find_ca_bundle(stack)))
    monkeypatch.setenv("SSL_CERT_FILE", str(pem(bare_host, "host.pem")))
    assert f"id=ca_bundle,src={bare_host / 'host.pem'}" in _build_secrets(stack, find_ca_bundle(stack))


@pytest.mark.parametrize("line", [
    "WARNING: Retrying after connection broken by 'SSLError(SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED] "
    "certificate verify failed: self-signed certificate in certificate chain (_ssl.c:992)'))': /simple/six/",
    "Could not fetch URL https://pypi.org/simple/six/: There was a problem confirming the ssl certificate: x - skipping",
    "E: Failed to fetch https://deb.example/dists/bookworm/InRelease  Certificate verification failed: "
    "The certificate is NOT trusted. The certificate issuer is unknown.",
    "curl: (60) SSL certificate problem: unable to get local issuer certificate",
])
def test_a_certificate_failure_ends_with_the_fix(line: str, tmp_path: Path) -> None:
    from infra.build.cabundle import CaBundle, certificate_hint

    tail = ["#7 12.3 Collecting six", line, "ERROR: No matching distribution found for six==1.17.0"]
    hint = certificate_hint(tail, None)
    assert hint and "\n" not in hint
    assert "secrets.ca_bundle in infra.yaml" in hint and "INFRA_CA_BUNDLE=/path/ca.pem" in hint
    used = certificate_hint(tail, CaBundle(tmp_path / "ca.pem", "SSL_CERT_FILE"))
    assert used and str(tmp_path / "ca.pem") in used and "SSL_CERT_FILE" in used
    assert certificate_hint(["ERROR: No matching distribution found for six==9"], None) is None
