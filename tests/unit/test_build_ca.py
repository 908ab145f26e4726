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
