"""Baked torch from a local wheelhouse: a bind mount for the one RUN, a named context in bake, no index."""

from __future__ import annotations

import dataclasses
import json

from tests.render_cases import baked_stack, render


def wheelhouse_stack():
    stack = baked_stack()
    env = stack.spec.native_env.model_copy(update={"wheelhouse": "/opt/wheels"})
    return dataclasses.replace(stack, spec=stack.spec.model_copy(update={"native_env": env}))


def test_torch_comes_from_the_wheelhouse_through_a_bind_mount() -> None:
    files = render(wheelhouse_stack(), "docker-cpu")
    base_ml = files["dockerfiles/base-ml.Dockerfile"]
    assert "--mount=type=bind,from=wheelhouse,target=/opt/infra/wheelhouse" in base_ml
    assert "pip install --find-links /opt/infra/wheelhouse torch==2.13.0" in base_ml
    assert "TORCH_INDEX_URL" not in base_ml
    assert "COPY --from=wheelhouse" not in base_ml, "the wheels never become a layer"
    diarization = files["dockerfiles/diarization.Dockerfile"]
    assert "pip install --find-links /opt/infra/wheelhouse \\\n      torch==2.13.0 \\\n      pyannote.audio==4.0.7" \
        in diarization
    bake = json.loads(files["docker-bake.json"])
    assert bake["target"]["base-ml"]["contexts"]["wheelhouse"] == "/opt/wheels"
    assert "wheelhouse" not in bake["target"]["asr"].get("contexts", {})
    assert "args" not in bake["target"]["base-ml"]


def test_without_a_wheelhouse_torch_comes_from_the_mode_index() -> None:
    files = render(baked_stack(), "docker-cpu")
    assert 'pip install --index-url "${TORCH_INDEX_URL}" torch==2.13.0' in files["dockerfiles/base-ml.Dockerfile"]
    assert "wheelhouse" not in files["docker-bake.json"]
