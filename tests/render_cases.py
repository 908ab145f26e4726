"""Stacks to render in tests: the default spec as shipped, and a variant with torch baked,
a CA bundle and a registry, so that every branch of the templates has a golden file."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from infra.spec import Stack, load_stack
from infra.render import default_layout, render_mode
from tests.conftest import REPO

GOLDEN = REPO / "tests" / "golden"
MODES = ("native", "docker-cpu", "docker-gpu")


def default_stack() -> Stack:
    return load_stack(REPO / "infra.yaml")


def baked_stack() -> Stack:
    stack = default_stack()
    spec = stack.spec
    spec = spec.model_copy(update={
        "registry": "registry.example.com/speech",
        "native_env": spec.native_env.model_copy(update={"torch": "baked"}),
        "secrets": spec.secrets.model_copy(update={"ca_bundle": "config/ca-bundle.pem"}),
    })
    return dataclasses.replace(stack, spec=spec)


CASES = {"default": default_stack, "baked": baked_stack}


def render(stack: Stack, mode: str, out: Path | None = None) -> dict[str, str]:
    return render_mode(stack, mode, default_layout(stack, mode, out))  # type: ignore[arg-type]
