"""Is a mode ready to run? stale_images, check_native_env and `infra up`'s refusals, against the in-memory engine."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest

from infra.errors import BadInputError, OperationError
from infra.spec import Stack, load_stack
from infra.stack.compose import stack_up
from infra.stack.readiness import check_native_env, render_to_disk, service_images, stale_images
from tests.fake_stack import COMPATIBLE, OLD_PYTHON, make_native_env, spec_engine

MODE = "docker-cpu"


@pytest.fixture
def stack(project: Path) -> Stack:
    stack = load_stack(project / "infra.yaml")
    make_native_env(stack)
    return stack


class ComposeRecorder:
    """Stands in for infra.engine.compose.Compose: records what `up` would have started."""

    started: ClassVar[list[Path]] = []

    def __init__(self, engine: object, file: Path) -> None:
        self.file = file

    def up(self, scales: dict[str, int] | None = None, wait_timeout: int = 120) -> None:
        ComposeRecorder.started.append(self.file)

    def down(self, volumes: bool = False) -> None:
        pass

    def ps(self) -> list[str]:
        return ["running"]


@pytest.fixture
def compose(monkeypatch: pytest.MonkeyPatch) -> type[ComposeRecorder]:
    ComposeRecorder.started = []
    monkeypatch.setattr("infra.engine.compose.Compose", ComposeRecorder)
    return ComposeRecorder


def test_stale_images_are_the_missing_and_the_changed_with_their_children(stack: Stack) -> None:
    rendered = render_to_disk(stack, MODE)
    assert stale_images(stack, MODE, rendered, spec_engine(stack, MODE, current=False)) == \
        ["base", "base-ml", "ffmpeg", "subtitles", "asr", "diarization", "pyannote-vad", "serve"]

    engine = spec_engine(stack, MODE)
    assert stale_images(stack, MODE, rendered, engine) == []
    assert len(engine.calls_to("inspect_images")) == 1          # one engine call for every image

    (stack.images_dir / "base-ml" / "note.txt").write_text("changed\n")
    assert stale_images(stack, MODE, rendered, engine) == ["base-ml", "asr", "diarization", "pyannote-vad"]


def test_native_env_check_probes_each_image_once_per_image_id(stack: Stack) -> None:
    engine = spec_engine(stack, MODE, default_python_output=COMPATIBLE)
    images = service_images(stack, MODE)
    check_native_env(stack, MODE, images, engine)
    assert sorted(c[1] for c in engine.calls_to("run_python")) == sorted(stack.image_ref(n, MODE) for n in images)

    check_native_env(stack, MODE, images, engine)                     # the facts are cached by image id
    assert len(engine.calls_to("run_python")) == len(images)

    engine.add_image(stack.image_ref("asr", MODE), engine.images[stack.image_ref("asr", MODE)].labels)   # a rebuilt asr
    engine.python_output["asr"] = OLD_PYTHON
    with pytest.raises(BadInputError, match=r"speech-asr:latest-cpu cannot load the native environment .*Python 3\.9"):
        check_native_env(stack, MODE, images, engine)


def test_native_env_check_is_skipped_when_images_carry_torch(project: Path) -> None:
    spec = project / "infra.yaml"
    spec.write_text(spec.read_text().replace("torch: mounted", "torch: baked"))
    stack = load_stack(spec)
    engine = spec_engine(stack, MODE)                           # no env, no probe answers: nothing may be asked
    check_native_env(stack, MODE, service_images(stack, MODE), engine)
    assert not engine.calls_to("run_python")


def test_up_refuses_stale_images_without_build_before_starting_anything(stack: Stack, compose) -> None:
    engine = spec_engine(stack, MODE, except_=("asr", "subtitles"), default_python_output=COMPATIBLE)
    with pytest.raises(BadInputError) as caught:
        list(stack_up(stack, MODE, engine=engine))
    assert caught.value.message == f"images not built or out of date for {MODE}: subtitles, asr"
    assert f"infra up --mode {MODE} --build" in (caught.value.hint or "")
    assert compose.started == [] and not engine.builds and not engine.runs and not engine.calls_to("run_python")


def test_up_with_build_builds_the_stale_then_starts(stack: Stack, compose) -> None:
    engine = spec_engine(stack, MODE, except_=("asr",), default_python_output=COMPATIBLE)
    events = list(stack_up(stack, MODE, build=True, engine=engine))
    assert [b.ref for b in engine.builds] == [stack.image_ref("asr", MODE)]
    assert compose.started == [render_to_disk(stack, MODE).compose_file]
    assert events[-1] == ["running"]


def test_up_starts_nothing_when_a_build_fails_or_an_image_cannot_load_the_env(stack: Stack, compose) -> None:
    engine = spec_engine(stack, MODE, except_=("asr",), fail_builds={"asr"}, default_python_output=COMPATIBLE)
    with pytest.raises(OperationError, match="build failed for asr; nothing was started"):
        list(stack_up(stack, MODE, build=True, engine=engine))

    engine = spec_engine(stack, MODE, python_output={"ffmpeg": OLD_PYTHON}, default_python_output=COMPATIBLE)
    with pytest.raises(BadInputError, match="speech-ffmpeg:latest-cpu cannot load the native environment"):
        list(stack_up(stack, MODE, engine=engine))
    assert compose.started == []
