"""docker-bake.json for one mode: a target per image, parents wired as named contexts.

Built as a dict and written with ``json.dumps(sort_keys=True)``, so the bytes
depend only on the spec. buildx resolves a target's ``context`` against the
folder bake runs in and its ``dockerfile`` against that context, so the file is
meant to be run from the project: ``docker buildx bake -f .infra/out/<mode>/docker-bake.json``.
"""

from __future__ import annotations

import json
import posixpath
from typing import Any

from infra.spec import Stack
from infra.spec.models import Mode
from infra.render import paths
from infra.render.dockerfile import TORCH_INDEX_ARG, code_images, torch_index, wheelhouse_images

DEFAULT_GROUP = "default"


def build_bake(stack: Stack, mode: Mode, layout: paths.Layout, dockerfiles: dict[str, str]) -> dict[str, Any]:
    """The bake definition as data; ``dockerfiles`` are the rendered texts (to see which secrets they use)."""
    spec = stack.spec
    names = stack.images_for_mode(mode)
    code = code_images(stack, mode)
    wheels = wheelhouse_images(stack, mode)
    targets: dict[str, Any] = {}
    for name in names:
        image = stack.images[name]
        context = posixpath.join(layout.images, name)
        target: dict[str, Any] = {
            "context": context,
            "dockerfile": posixpath.relpath(posixpath.join(layout.from_project, layout.dockerfile(name)), context),
            "tags": [stack.image_ref(name, mode)],
        }
        contexts = {}
        if image.parent is not None:
            contexts[image.parent] = f"target:{image.parent}"
        if name in code:
            contexts[paths.STAGES_CONTEXT] = layout.stages
            contexts[paths.PROTOCOL_CONTEXT] = layout.package
        if name in wheels:
            contexts[paths.WHEELHOUSE_CONTEXT] = layout.project_path(spec.native_env.wheelhouse)
        if contexts:
            target["contexts"] = contexts
        text = dockerfiles[name]
        if f"ARG {TORCH_INDEX_ARG}=" in text:
            target["args"] = {TORCH_INDEX_ARG: torch_index(stack, mode)}
        secrets = []
        if f"id={paths.CA_SECRET}" in text and spec.secrets.ca_bundle is not None:
            secrets.append(f"id={paths.CA_SECRET},src={spec.secrets.ca_bundle}")
        if f"id={paths.PIP_CONF_SECRET}," in text and spec.secrets.pip_config is not None:
            secrets.append(f"id={paths.PIP_CONF_SECRET},src={spec.secrets.pip_config}")
        if f"id={paths.HF_SECRET}" in text:
            secrets.append(f"id={paths.HF_SECRET},env={spec.secrets.hf_token_env}")
        if secrets:
            target["secret"] = secrets
        targets[name] = target
    groups = {DEFAULT_GROUP: {"targets": list(names)}, mode: {"targets": list(names)}}
    return {"group": groups, "target": targets}


def render_bake(stack: Stack, mode: Mode, layout: paths.Layout, dockerfiles: dict[str, str]) -> str:
    """docker-bake.json for ``mode``: sorted keys, two-space indent, a final newline."""
    return json.dumps(build_bake(stack, mode, layout, dockerfiles), indent=2, sort_keys=True) + "\n"
