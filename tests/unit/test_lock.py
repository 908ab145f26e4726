"""The package lock on the spec's side: the file (reading, writing, refusals), matching it against the spec, and
what render makes of it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from infra.errors import BadInputError, ConfigError
from infra.render.dockerfile import render_dockerfile
from infra.spec import load_stack
from infra.spec.lock import ImageLock, Lock, PipPin, dump_lock, lock_path, read_lock
from infra.spec.lockmatch import image_inputs, locked_image
from tests.render_cases import locked_stack

SHA = "a" * 64


def write_lock(project: Path) -> Lock:
    """The made-up lock of the golden 'locked' case, written beside the project's spec as `infra lock` would."""
    lock = locked_stack().lock
    assert lock is not None
    (project / "infra.lock").write_text(dump_lock(lock, "infra.lock", "infra.yaml", "images"))
    return lock


def test_the_file_round_trips_sorted_with_its_header_and_one_line_per_pin(project: Path) -> None:
    lock = write_lock(project)
    text = (project / "infra.lock").read_text()
    assert text.startswith("# infra.lock: the exact Debian and Python packages")
    assert "run `infra lock` again" in text.split("version:")[0]
    assert read_lock(project / "infra.lock", "infra.lock") == lock
    assert dump_lock(lock, "infra.lock", "infra.yaml", "images") == text      # the same lock, the same bytes
    data = yaml.safe_load(text)
    assert list(data) == ["version", "bases"]
    images = data["bases"]["bookworm"]["images"]
    assert list(images) == sorted(images)
    assert images["asr"]["pip"]["faster-whisper"].startswith("1.0.0 sha256:")
    assert images["diarization"]["pip"]["scikit-learn"] == "1.0.0"             # a pin without a hash
    assert "pip" not in images["subtitles"] and "apt" not in images["subtitles"]


def test_a_pin_without_a_hash_and_apt_words_keep_every_requested_package() -> None:
    entry = ImageLock(inputs="x", apt={"libz1": "1:1.2-3", "ffmpeg": "7:5.1"}, pip={"av": "18.1.0"})
    assert entry.pip == {"av": PipPin(version="18.1.0")} and not entry.pip_hashed
    assert entry.pip_lines() == ("av==18.1.0",)
    # ffmpeg pinned; python3 pins nothing (the base holds it) and is still asked for, as the spec wrote it
    assert entry.apt_words(["ffmpeg", "python3"]) == ("ffmpeg=7:5.1", "libz1=1:1.2-3", "python3")


@pytest.mark.parametrize(("text", "expected"), [
    ("bases: {a: b]\nversion: 1\n", "infra.lock: line 1: invalid YAML"),
    ("- a\n", "infra.lock: not a lock"),
    ("version: 2\nbases: {}\n", "infra.lock: version:"),
    ("version: 1\nbases: {b: {ref: r, images: {x: {inputs: i, pip: {av: '1.0 md5:00'}}}}}\n",
     "not 'VERSION sha256:HEX'"),
    ("version: 1\nbases: {b: {ref: r, images: {x: {inputs: i, pip: {av: '1.0 sha256:zz'}}}}}\n", "not a sha256"),
    ("version: 1\nbases: {b: {ref: r, images: {x: {inputs: i, apt: {ffmpeg: 'a b'}}}}}\n", "ffmpeg=a b"),
    ("version: 1\nbases: {b: {ref: r, images: {x: {inputs: i, pip: {Av_x: '1.0'}}}}}\n", "not a normalised"),
    ("version: 1\nbases: {}\nextra: 1\n", "extra: Extra inputs are not permitted"),
])
def test_a_broken_lock_is_one_line_per_problem_naming_the_file(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "infra.lock").write_text(text)
    with pytest.raises(ConfigError) as caught:
        read_lock(tmp_path / "infra.lock", "infra.lock")
    assert any(expected in line for line in caught.value.lines), caught.value.lines
    assert all(line.startswith("infra.lock: ") for line in caught.value.lines)
    assert "infra lock" in (caught.value.hint or "")


def test_the_spec_loads_its_lock_and_infra_lock_can_skip_a_broken_one(project: Path) -> None:
    assert load_stack(project / "infra.yaml").lock is None
    lock = write_lock(project)
    assert lock_path(project / "infra.yaml") == project / "infra.lock"
    assert load_stack(project / "infra.yaml").lock == lock
    (project / "infra.lock").write_text("version: [\n")
    with pytest.raises(ConfigError):
        load_stack(project / "infra.yaml")
    assert load_stack(project / "infra.yaml", with_lock=False).lock is None


def test_an_image_matches_until_its_packages_or_its_parents_change(project: Path) -> None:
    write_lock(project)
    stack = load_stack(project / "infra.yaml")
    entry = locked_image(stack, "docker-cpu", "asr")
    assert entry is not None and "faster-whisper" in entry.pip
    assert locked_image(dataclasses.replace(stack, lock=None), "docker-cpu", "asr") is None

    base_ml = project / "images/base-ml/image.yaml"
    base_ml.write_text(base_ml.read_text().replace('pip: ["numpy>=1.26,<3"]', 'pip: ["numpy>=2,<3"]'))
    changed = load_stack(project / "infra.yaml")
    assert image_inputs(changed, "docker-cpu", "ffmpeg") == image_inputs(stack, "docker-cpu", "ffmpeg")
    for name in ("base-ml", "asr"):                   # the image, and its child through the parent's fingerprint
        assert image_inputs(changed, "docker-cpu", name) != image_inputs(stack, "docker-cpu", name)
        with pytest.raises(BadInputError) as caught:
            locked_image(changed, "docker-cpu", name)
        message = caught.value.message
        assert "\n" not in message and message.endswith("run `infra lock` to refresh it")
        assert message.startswith("infra.lock does not match images/base-ml/image.yaml" if name == "base-ml"
                                  else "infra.lock does not match images/asr/image.yaml")
    # reordering a list changes nothing that is installed, so the lock still matches
    asr = project / "images/base-ml/image.yaml"
    asr.write_text(asr.read_text().replace('pip: ["numpy>=2,<3"]', 'pip: ["numpy>=1.26,<3"]'))
    vad = project / "images/pyannote-vad/image.yaml"
    vad.write_text(vad.read_text().replace("pip: [onnxruntime>=1.17, faster-whisper==1.2.1]",
                                           "pip: [faster-whisper==1.2.1, onnxruntime>=1.17]"))
    assert locked_image(load_stack(project / "infra.yaml"), "docker-cpu", "pyannote-vad") is not None


def test_an_image_added_after_the_lock_is_refused(project: Path) -> None:
    write_lock(project)
    (project / "images/extra").mkdir()
    (project / "images/extra/image.yaml").write_text("parent: base\napt: [sox]\n")
    stack = load_stack(project / "infra.yaml")
    with pytest.raises(BadInputError) as caught:
        locked_image(stack, "docker-cpu", "extra")
    assert caught.value.message == ("infra.lock has no entry for image 'extra' on base 'bookworm' (docker-cpu): "
                                    "the lock is older than the spec; run `infra lock` to refresh it")


def test_render_installs_exactly_what_the_lock_pins() -> None:
    stack = locked_stack()
    base = render_dockerfile(stack, "docker-cpu", "base")
    assert " \\\n      libtini0=1.0-1+b1 \\\n      tini=1.0-1 \\\n && rm -rf " in base
    asr = render_dockerfile(stack, "docker-cpu", "asr")
    assert "'faster-whisper==1.0.0 --hash=sha256:" in asr and "'faster-whisper-support==1.0.0 --hash=sha256:" in asr
    assert asr.count("pip install") == 1 and "| pip install --require-hashes -r /dev/stdin" in asr
    diarization = render_dockerfile(stack, "docker-cpu", "diarization")     # pins without hashes
    assert "      scikit-learn==1.0.0 \\\n" in diarization and "| pip install -r /dev/stdin" in diarization
    assert "--require-hashes" not in diarization and "scikit-learn>=1.3" not in diarization
    subtitles = render_dockerfile(stack, "docker-cpu", "subtitles")         # nothing to install
    assert "pip install" not in subtitles and "apt-get" not in subtitles


def test_render_and_its_cli_refuse_a_stale_lock_in_one_line(project: Path, run_cli) -> None:
    write_lock(project)
    assert run_cli("render", "--mode", "docker-cpu", cwd=project).code == 0
    dockerfile = project / ".infra/out/docker-cpu/dockerfiles/ffmpeg.Dockerfile"
    assert "ffmpeg=1.0-1" in dockerfile.read_text()
    before = dockerfile.read_bytes()
    ffmpeg = project / "images/ffmpeg/image.yaml"
    ffmpeg.write_text(ffmpeg.read_text().replace("apt: [ffmpeg]", "apt: [ffmpeg, sox]"))
    result = run_cli("render", "--mode", "docker-cpu", cwd=project)
    assert result.code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == ["error: infra.lock does not match images/ffmpeg/image.yaml (its packages, its parent's or its "
                     "base changed since the lock was made); run `infra lock` to refresh it"]
    assert dockerfile.read_bytes() == before                                # nothing half-written


def test_without_a_lock_render_installs_the_spec_lines_as_written(project: Path) -> None:
    stack = load_stack(project / "infra.yaml")
    asr = render_dockerfile(stack, "docker-cpu", "asr")
    assert " && pip install \\\n      faster-whisper==1.2.1\n" in asr and "/dev/stdin" not in asr
    assert render_dockerfile(stack, "docker-cpu", "ffmpeg").count("      ffmpeg \\\n && rm -rf ") == 1


@pytest.mark.parametrize("mode", ["native", "docker-cpu", "docker-gpu"])
def test_every_image_leaves_out_what_differs_from_build_to_build(mode: str) -> None:
    stack = locked_stack()
    for name in stack.images_for_mode(mode):
        text = render_dockerfile(stack, mode, name)
        assert "\nARG SOURCE_DATE_EPOCH=315532800\n" in text                  # hash-based .pyc, dated /etc/shadow
        if "apt-get" in text:
            assert text.count("install -y") == text.count("rm -rf /var/log/apt/* /var/log/*.log "
                                                          "/var/cache/ldconfig/aux-cache /var/cache/debconf/*-old")
        if "pip install" in text:
            assert "type=cache,target=/root/.cache/pip" in text              # pip's cache never reaches a layer
