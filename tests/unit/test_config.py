"""The default spec, spec discovery, the schema and the CLI frame."""

from __future__ import annotations

import json
from pathlib import Path

from infra import __version__
from infra.spec import load_stack
from infra.spec.load import dotted
from tests.conftest import REPO


def test_default_spec_is_valid_and_orders_parents_first() -> None:
    stack = load_stack(REPO / "infra.yaml")
    assert set(stack.images) == {"base", "base-ml", "ffmpeg", "asr", "diarization", "pyannote-vad", "subtitles",
                                 "serve"}
    assert list(stack.spec.stages) == ["demux", "vad", "asr", "diarize", "subtitles", "mux"]
    assert stack.images_for_mode("native") == ["base", "ffmpeg"]
    cpu = stack.images_for_mode("docker-cpu")
    for name in cpu:
        parent = stack.images[name].parent
        assert parent is None or cpu.index(parent) < cpu.index(name)
    assert stack.image_ref("asr", "docker-cpu") == "speech-asr:latest-cpu"
    assert stack.image_ref("asr", "docker-cpu", registry="127.0.0.1:5000/ns") == "127.0.0.1:5000/ns/speech-asr:latest-cpu"


def test_no_image_carries_torch_packages_under_pip() -> None:
    """torch-dependent packages go under torch_pip, so the mounted policy leaves them out."""
    stack = load_stack(REPO / "infra.yaml")
    for name, image in stack.images.items():
        assert not any(p.split("=")[0].split("[")[0] in {"torch", "pyannote.audio", "silero-vad", "resemblyzer"}
                       for p in image.pip), name


def test_nearest_spec_is_found_from_a_subfolder(project: Path, run_cli) -> None:
    sub = project / "in" / "deeper"
    sub.mkdir(parents=True)
    result = run_cli("config", "validate", "--json", cwd=sub)
    assert result.code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["spec"] == str(project / "infra.yaml")
    assert summary["embedded"] is False


def test_builtin_spec_is_used_outside_a_project(tmp_path: Path, run_cli) -> None:
    result = run_cli("config", "validate", "--json", cwd=tmp_path)
    assert result.code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["embedded"] is True
    assert summary["modes"]["native"] == ["base", "ffmpeg"]


def test_schema_is_json_schema_for_both_files(run_cli, tmp_path: Path) -> None:
    project = json.loads(run_cli("config", "schema", cwd=tmp_path).stdout)
    assert project["additionalProperties"] is False
    assert {"project", "bases", "modes", "stages"} <= set(project["properties"])
    image = json.loads(run_cli("config", "schema", "image").stdout)
    assert "parent" in image["properties"]
    bad = run_cli("config", "schema", "imag")
    assert bad.code == 2 and "unknown schema 'imag'" in bad.stderr


def test_version_and_usage_errors(run_cli) -> None:
    result = run_cli("--version")
    assert result.code == 0 and result.stdout.strip() == f"infra {__version__}"
    result = run_cli("no-such-command")
    assert result.code == 2
    assert "No such command" in result.stderr
    assert "Traceback" not in result.stderr


def test_dotted_paths() -> None:
    assert dotted(("stages", "asr", "after", 0)) == "stages.asr.after[0]"
    assert dotted(("modes", 1)) == "modes[1]"
    assert dotted(()) == "(top level)"
