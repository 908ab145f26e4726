"""Bad specs: every case exits 2 with one line per problem naming the file and dotted path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml


def edit_yaml(path: Path, change: Callable[[dict], None]) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def set_key(rel: str, dotted_key: str, value: object) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        def change(data: dict) -> None:
            *parents, last = dotted_key.split(".")
            node = data
            for key in parents:
                node = node.setdefault(key, {})
            node[last] = value

        edit_yaml(root / rel, change)

    return apply


def write(rel: str, text: str) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)

    return apply


def both(*steps: Callable[[Path], None]) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        for step in steps:
            step(root)

    return apply


CASES = {
    "malformed yaml": (write("infra.yaml", "project: speech\nmodes: [native\n"),
                       ["infra.yaml: line 3, column 1: invalid YAML"]),
    "top level not a mapping": (write("infra.yaml", "- a\n- b\n"),
                                ["infra.yaml: the top level must be a mapping of keys, not a list"]),
    "unknown top-level key": (set_key("infra.yaml", "projet", "x"),
                              ["infra.yaml: unknown key 'projet' (did you mean 'project'?)"]),
    "unknown nested key": (set_key("infra.yaml", "stages.asr.imagee", "asr"),
                           ["infra.yaml: stages.asr: unknown key 'imagee' (did you mean 'image'?)"]),
    "unknown image key": (set_key("images/asr/image.yaml", "pip_packages", ["x"]),
                          ["images/asr/image.yaml: unknown key 'pip_packages'"]),
    "wrong type": (set_key("infra.yaml", "python", 3.11),
                   ["infra.yaml: python: input should be a valid string, got 3.11"]),
    "wrong type in list": (set_key("images/asr/image.yaml", "apt", "ffmpeg"),
                           ["images/asr/image.yaml: apt: input should be a valid list"]),
    "missing required key": (write("infra.yaml", "python: '3.11'\nbases: {b: {image: debian}}\nmodes: {native: {base: b}}\n"),
                             ["infra.yaml: project: required"]),
    "unknown parent": (set_key("images/asr/image.yaml", "parent", "base-mll"),
                       ["images/asr/image.yaml: parent: unknown image 'base-mll' (known: base, base-ml, diarization, "
                        "ffmpeg, pyannote-vad, serve, subtitles); did you mean 'base-ml'?"]),
    "own parent": (set_key("images/asr/image.yaml", "parent", "asr"),
                   ["images/asr/image.yaml: parent: an image cannot be its own parent"]),
    "parent cycle": (both(set_key("images/base/image.yaml", "parent", "ffmpeg"),
                          set_key("images/base/image.yaml", "modes", ["native", "docker-cpu", "docker-gpu"])),
                     ["parent: dependency cycle"]),
    "unknown mode in image": (set_key("images/asr/image.yaml", "modes", ["docker-cpuu"]),
                              ["images/asr/image.yaml: modes[0]: input should be 'native', 'docker-cpu' or 'docker-gpu'"]),
    "unknown mode in infra.yaml": (set_key("infra.yaml", "modes.docker-tpu", {"base": "bookworm"}),
                                   ["infra.yaml: modes: unknown key 'docker-tpu'"]),
    "mode not defined": (both(write("infra.yaml", (Path(__file__).parents[2] / "infra.yaml").read_text()
                                    .replace("  docker-gpu:\n    base: bookworm\n    gpu: true\n", "")),),
                         ["images/asr/image.yaml: modes[1]: mode 'docker-gpu' is not defined in infra.yaml"]),
    "parent missing in mode": (set_key("images/asr/image.yaml", "modes", ["native", "docker-cpu"]),
                               ["images/asr/image.yaml: modes[0]: 'native' needs parent 'base-ml' in that mode"]),
    "gpu-only image in cpu mode": (set_key("images/asr/image.yaml", "gpu_only", True),
                                   ["images/asr/image.yaml: modes[0]: a gpu_only image cannot be built in docker-cpu"]),
    "unknown base": (set_key("infra.yaml", "modes.native.base", "bookwrm"),
                     ["infra.yaml: modes.native.base: unknown base 'bookwrm' (known: bookworm, python-slim)"]),
    "base with two sources": (set_key("infra.yaml", "bases.python-slim.debootstrap", {"suite": "bookworm"}),
                              ["infra.yaml: bases.python-slim: give exactly one of 'image'"]),
    "suite ships another python": (set_key("infra.yaml", "bases.bookworm.debootstrap.suite", "trixie"),
                                   ["infra.yaml: bases.bookworm.debootstrap.suite: Debian trixie ships Python 3.13, "
                                    "but python is 3.11"]),
    "bad registry": (set_key("infra.yaml", "registry", "https://reg.example.com"),
                     ["infra.yaml: registry: 'https://reg.example.com' is not a registry host"]),
    "pip shell metacharacters": (set_key("images/asr/image.yaml", "pip", ["faster-whisper; rm -rf /"]),
                                 ["images/asr/image.yaml: pip: pip package 'faster-whisper; rm -rf /' is not allowed"]),
    "apt shell metacharacters": (set_key("images/ffmpeg/image.yaml", "apt", ["ffmpeg && curl x"]),
                                 ["images/ffmpeg/image.yaml: apt: apt package 'ffmpeg && curl x' is not allowed"]),
    "duplicate package": (set_key("images/asr/image.yaml", "pip", ["a", "a"]),
                          ["images/asr/image.yaml: pip: pip package listed twice: a"]),
    "missing listed file": (set_key("images/asr/image.yaml", "files", ["worker.py"]),
                            ["images/asr/image.yaml: files[0]: 'worker.py' not found in images/asr/"]),
    "file outside the folder": (set_key("images/asr/image.yaml", "files", ["../base/image.yaml"]),
                                ["images/asr/image.yaml: files: '../base/image.yaml' must be a path inside the image folder"]),
    "missing template": (set_key("images/asr/image.yaml", "template", "Dockerfile.j2"),
                         ["images/asr/image.yaml: template: 'Dockerfile.j2' not found in images/asr/"]),
    "folder without image.yaml": (write("images/extra/README", "x"), ["images/extra/image.yaml: not found"]),
    "invalid image folder name": (write("images/Bad_Name/image.yaml", "{}"),
                                  ["images/Bad_Name/image.yaml: 'Bad_Name' is not a valid image name"]),
    "stage with unknown image": (set_key("infra.yaml", "stages.asr.image", "whisper"),
                                 ["infra.yaml: stages.asr.image: unknown image 'whisper'"]),
    "stage after unknown stage": (set_key("infra.yaml", "stages.asr.after", ["vadd"]),
                                  ["infra.yaml: stages.asr.after[0]: unknown stage 'vadd'", "did you mean 'vad'?"]),
    "stage cycle": (set_key("infra.yaml", "stages.demux.after", ["mux"]), ["infra.yaml: stages.", "dependency cycle"]),
    "stage image not in docker mode": (set_key("images/asr/image.yaml", "modes", ["docker-gpu"]),
                                       ["infra.yaml: stages.asr.image: 'asr' is not built in mode docker-cpu"]),
    "stage output outside job dir": (set_key("infra.yaml", "stages.mux.outputs", ["../x.mp4"]),
                                     ["infra.yaml: stages.mux.outputs: '../x.mp4' must be a path inside the job directory"]),
    "stage memory not a size": (set_key("infra.yaml", "stages.asr.memory", "lots"),
                                ["infra.yaml: stages.asr.memory: 'lots' is not a size"]),
    "unknown env delivery": (set_key("infra.yaml", "native_env.delivery", "nfs"),
                             ["infra.yaml: native_env.delivery:"]),
    "claim timeout too short": (set_key("infra.yaml", "claim_timeout_s", 0), ["infra.yaml: claim_timeout_s:"]),
    "empty command": (set_key("infra.yaml", "stages.mux.command", []),
                      ["infra.yaml: stages.mux.command: list should have at least 1 item"]),
    "label with shell quoting": (set_key("images/asr/image.yaml", "labels", {"team": "a$(id)"}),
                                 ["images/asr/image.yaml: labels: value of 'team' contains control or shell-quoting"]),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_spec_exits_2_with_file_and_path(case: str, project: Path, run_cli) -> None:
    mutate, expected = CASES[case]
    mutate(project)
    result = run_cli("-f", str(project / "infra.yaml"), "config", "validate", cwd=project)
    assert result.code == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors, result.stderr
    for fragment in expected:
        assert any(fragment in line for line in errors), f"{fragment!r} not in {errors}"
    assert result.stdout == ""


def test_every_problem_is_reported_in_one_run(project: Path, run_cli) -> None:
    set_key("images/asr/image.yaml", "parent", "nope")(project)
    set_key("infra.yaml", "stages.mux.image", "nope")(project)
    set_key("images/ffmpeg/image.yaml", "apt", ["bad pkg"])(project)
    result = run_cli("config", "validate", cwd=project)
    assert result.code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, "cross-file checks run only when every file parses"
    assert "images/ffmpeg/image.yaml: apt:" in errors[0]
    set_key("images/ffmpeg/image.yaml", "apt", ["ffmpeg"])(project)
    result = run_cli("config", "validate", cwd=project)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2
    assert any(line.startswith("error: images/asr/image.yaml: parent: unknown image 'nope'") for line in errors)
    assert any(line.startswith("error: infra.yaml: stages.mux.image: unknown image 'nope'") for line in errors)


def test_missing_spec_file(tmp_path: Path, run_cli) -> None:
    result = run_cli("-f", "nope.yaml", "config", "validate", cwd=tmp_path)
    assert result.code == 2
    assert result.stderr.splitlines()[0] == "error: nope.yaml: not found"


def test_spec_that_is_a_directory(project: Path, run_cli) -> None:
    result = run_cli("-f", "images", "config", "validate", cwd=project)
    assert result.code == 2
    assert "error: images: is a directory, not a YAML file" in result.stderr


def test_debug_shows_the_traceback(tmp_path: Path, run_cli) -> None:
    from infra.errors import ConfigError

    with pytest.raises(ConfigError):
        run_cli("--debug", "-f", "nope.yaml", "config", "validate", cwd=tmp_path)
