"""Security properties of the rendered Dockerfiles, asserted directly (not only through goldens)."""

from __future__ import annotations

import dataclasses
import re
import shlex
from pathlib import Path

import pytest

from infra.spec.models import ImageSpec
from tests.dockerfile_parse import instructions, run_flags_and_command
from tests.render_cases import CASES, MODES, default_stack, render

APT_CACHES = {"type=cache,target=/var/cache/apt,sharing=locked", "type=cache,target=/var/lib/apt,sharing=locked"}
PIP_CACHE = "type=cache,target=/root/.cache/pip,sharing=locked"


def dockerfiles(case: str, mode: str) -> dict[str, str]:
    return {rel: text for rel, text in render(CASES[case](), mode).items() if rel.startswith("dockerfiles/")}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", list(CASES))
def test_dockerfile_conventions(case: str, mode: str) -> None:
    files = dockerfiles(case, mode)
    assert files
    for name, text in files.items():
        check_conventions(f"{case}/{mode}/{name}", text)


def check_conventions(name: str, text: str) -> None:
    assert not re.search(r"^\s*#\s*syntax\s*=", text, re.I | re.M), f"{name}: a syntax line makes BuildKit pull"
    assert "--no-cache-dir" not in text and "PIP_NO_CACHE_DIR" not in text
    steps = instructions(text)
    users = [s.rest for s in steps if s.keyword == "USER"]
    assert users, f"{name}: every image sets its user"
    uid = users[-1].split(":")[0]
    assert uid not in ("0", "root") and int(uid) >= 1000, f"{name} runs as {users[-1]}"
    for step in steps:
        assert step.keyword not in ("ADD",), "COPY only"
        if step.keyword in ("ARG", "ENV", "LABEL"):
            assert not re.search(r"TOKEN|SECRET|PASSWORD|CERT", step.rest, re.I), step
        if step.keyword != "RUN":
            continue
        flags, command = run_flags_and_command(step.rest)
        if "apt-get" in command and "install" in command:
            assert APT_CACHES <= set(flags), step
        if "pip install" in command:
            assert PIP_CACHE in flags, step
    writes = [i for i, s in enumerate(steps) if s.keyword in ("RUN", "COPY")]
    copies = [i for i, s in enumerate(steps) if s.keyword == "COPY"]
    runs = [i for i, s in enumerate(steps) if s.keyword == "RUN"]
    if copies:
        assert max(runs, default=-1) < min(copies), "COPY comes after every RUN"
        assert steps[writes[-1]].rest.startswith("--from=stages "), "the stage code is the last layer"


def test_stage_code_only_in_the_images_stages_run_in() -> None:
    files = render(default_stack(), "docker-cpu")
    with_code = {rel.split("/")[1].removesuffix(".Dockerfile") for rel, text in files.items()
                 if rel.startswith("dockerfiles/") and "COPY --from=stages" in text}
    assert with_code == {"ffmpeg", "pyannote-vad", "asr", "diarization", "subtitles", "serve"}
    serve = files["dockerfiles/serve.Dockerfile"]          # infra itself: all of it, and nothing compiled
    assert ('COPY --from=stages --chown=0:0 --exclude=**/__pycache__ --exclude=**/*.pyc [".", "/opt/infra/stages/"]'
            in serve)


def test_values_are_shell_quoted_even_past_validation() -> None:
    """Quoting does not rely on the spec's validation: unvalidated values still come out as one word."""
    stack = default_stack()
    nasty = "ffmpeg; touch /pwned"
    label = "O'Brien & co (ops) <x>|y"
    image = ImageSpec.model_construct(**{**stack.images["ffmpeg"].model_dump(), "apt": [nasty],
                                         "labels": {"team": label}, "env": {"GREETING": "a b; c"}})
    stack = dataclasses.replace(stack, images={**stack.images, "ffmpeg": image})
    text = render(stack, "native")["dockerfiles/ffmpeg.Dockerfile"]
    steps = instructions(text)
    apt = next(s for s in steps if s.keyword == "RUN" and "apt-get" in s.rest)
    assert nasty in shlex.split(run_flags_and_command(apt.rest)[1])
    labels = shlex.split(next(s for s in steps if s.keyword == "LABEL").rest)
    assert f"team={label}" in labels
    env = shlex.split(next(s for s in steps if s.keyword == "ENV").rest)
    assert "GREETING=a b; c" in env


def test_pins_with_shell_characters_are_quoted() -> None:
    text = render(default_stack(), "docker-cpu")["dockerfiles/base-ml.Dockerfile"]
    assert "'numpy>=1.26,<3'" in text


def test_no_secret_value_in_any_rendered_file(project: Path, run_cli, monkeypatch: pytest.MonkeyPatch) -> None:
    token = "hf_FAKEtoken0123456789abcdefXYZ"
    serve_tokens = ("serve-FAKE-from-env-0123456789", "serve-FAKE-from-file-0123456789")
    monkeypatch.setenv("INFRA_SERVE_TOKEN", serve_tokens[0])
    (project / "config").mkdir()
    (project / "config" / "secrets.json").write_text(f'{{"INFRA_SERVE_TOKEN": "{serve_tokens[1]}"}}')
    ca_body = "MIIFAKECERTIFICATEBODYfor0infra0tests0only"
    (project / "certs").mkdir()
    (project / "certs" / "ca.pem").write_text(f"-----BEGIN CERTIFICATE-----\n{ca_body}\n-----END CERTIFICATE-----\n")
    text = (project / "infra.yaml").read_text().replace("  ca_bundle: null", "  ca_bundle: certs/ca.pem")
    text += "serve:\n  enabled: true\n"
    (project / "infra.yaml").write_text(text)
    monkeypatch.setenv("HF_TOKEN", token)
    result = run_cli("render", cwd=project)
    assert result.code == 0, result.stderr
    rendered = [p for p in (project / ".infra" / "out").rglob("*") if p.is_file()]
    assert len(rendered) == 27
    for path in rendered:
        content = path.read_text()
        assert token not in content and ca_body not in content, path
        assert not any(t in content for t in serve_tokens), path
    base = (project / ".infra/out/docker-cpu/dockerfiles/base-ml.Dockerfile").read_text()
    assert "--mount=type=secret,id=ca_bundle" in base and "export PIP_CERT=/run/secrets/ca_bundle; fi" in base
    bake = (project / ".infra/out/docker-cpu/docker-bake.json").read_text()
    assert '"id=ca_bundle,src=certs/ca.pem"' in bake
    compose = (project / ".infra/out/docker-cpu/compose.yaml").read_text()
    assert 'SSL_CERT_FILE: "/run/secrets/ca_bundle"' in compose and 'file: "../../../certs/ca.pem"' in compose
    assert 'INFRA_SERVE_TOKEN: "${INFRA_SERVE_TOKEN:-}"' in compose        # passed through when compose runs


@pytest.mark.parametrize("mode", MODES)
def test_mounted_policy_keeps_torch_out_of_every_image(mode: str) -> None:
    stack = CASES["default"]()
    torch_pip = {p for image in stack.images.values() for p in image.torch_pip}
    files = render(stack, mode)
    for rel, text in files.items():
        if not rel.startswith("dockerfiles/"):
            continue
        for step in instructions(text):
            if step.keyword == "RUN" and "pip install" in step.rest:
                words = shlex.split(run_flags_and_command(step.rest)[1])
                assert not any(w.startswith("torch") or w in torch_pip for w in words), (rel, words)
    root = files["dockerfiles/base.Dockerfile"]
    assert "site.addsitedir(\"/opt/infra/native-site\")" in root
    assert "/opt/infra/native-site" in files["compose.yaml"]


@pytest.mark.parametrize(("mode", "index"), [("docker-cpu", "https://download.pytorch.org/whl/cpu"),
                                             ("docker-gpu", "https://pypi.org/simple")])
def test_baked_policy_installs_the_torch_build_of_the_mode(mode: str, index: str) -> None:
    files = render(CASES["baked"](), mode)
    base_ml = files["dockerfiles/base-ml.Dockerfile"]
    assert f"ARG TORCH_INDEX_URL={index}" in base_ml
    assert 'pip install --index-url "${TORCH_INDEX_URL}" torch==2.13.0' in base_ml
    assert "pyannote.audio==4.0.7" in files["dockerfiles/diarization.Dockerfile"]
    assert "pip install" not in files["dockerfiles/base.Dockerfile"]
    assert "addsitedir" not in files["dockerfiles/base.Dockerfile"]
    assert "native-site" not in files["compose.yaml"]
    assert "nvidia" not in "".join(t for r, t in files.items() if r.startswith("dockerfiles/")), "no CUDA base image"
