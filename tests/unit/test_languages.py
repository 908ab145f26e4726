"""Languages: the job's language and task checked before anything starts (infra/spec/languages.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.errors import BadInputError
from infra.jobs.prepare import JobRequest, check_request
from infra.spec.languages import LANGUAGES_FILE, check_language, check_model_language, english_only, whisper_languages


def test_whisper_languages_come_from_the_carried_file() -> None:
    codes = whisper_languages()
    assert codes == tuple(json.loads(LANGUAGES_FILE.read_text())["codes"])
    assert {"hi", "en", "ur", "ta", "bn", "mr", "yue"} <= set(codes) and len(codes) == len(set(codes))


@pytest.mark.parametrize("language", [None, "auto", "hi", "en", "yue"])
def test_languages_whisper_knows_pass(language: str | None) -> None:
    assert check_language(language) == language


@pytest.mark.parametrize("language", ["xx", "hin", "HI", "english", "", "hi-IN"])
def test_other_language_codes_are_refused(language: str) -> None:
    with pytest.raises(BadInputError, match=r"is not a language Whisper knows") as caught:
        check_language(language)
    assert "\n" not in caught.value.message and caught.value.exit_code == 2


def test_english_only_models_are_named_so() -> None:
    assert english_only("tiny.en") and english_only("whisper/base.en")
    assert not english_only("base") and not english_only("large-v3")


@pytest.mark.parametrize("language, task, refused", [
    (None, "transcribe", None), ("en", "transcribe", None),
    ("hi", "transcribe", "knows English only and cannot transcribe language hi"),
    ("auto", "transcribe", "knows English only and cannot transcribe languages detected per segment"),
    (None, "translate", "knows English only and cannot translate"),
    ("en", "translate", "knows English only and cannot translate"),
])
def test_an_english_only_model_takes_english_and_transcribe_only(language: str | None, task: str,
                                                                refused: str | None) -> None:
    if refused is None:
        check_model_language(language, task, "tiny.en")
        return
    with pytest.raises(BadInputError, match=refused):
        check_model_language(language, task, "tiny.en")


def test_a_multilingual_model_takes_any_language_and_translate() -> None:
    for language in (None, "auto", "hi", "en"):
        check_model_language(language, "translate", "base")


def test_the_request_keeps_auto_and_refuses_before_the_media_is_read() -> None:
    checked = check_request(JobRequest(media=Path("absent.mp4"), user="t", language="auto", whisper_model="base",
                                       task="translate"))
    assert checked.language == "auto"
    with pytest.raises(BadInputError, match="tiny.en knows English only"):
        check_request(JobRequest(media=Path("absent.mp4"), user="t", language="hi", whisper_model="tiny.en"))
    with pytest.raises(BadInputError, match="is not a task"):
        check_request(JobRequest(media=Path("absent.mp4"), user="t", task="dub"))


@pytest.mark.parametrize("args, expected", [
    (["--language", "xx"], "--language 'xx' is not a language Whisper knows"),
    (["--model", "tiny.en", "--language", "hi"], "--model tiny.en knows English only and cannot transcribe"),
    (["--model", "tiny.en", "--task", "translate"], "--model tiny.en knows English only and cannot translate"),
    (["--model", "tiny.en", "--language", "auto"], "cannot transcribe languages detected per segment"),
])
def test_the_cli_refuses_in_one_line_with_exit_2(project: Path, run_cli, args: list[str], expected: str) -> None:
    (project / "film.mp4").write_bytes(b"not read: the options are refused first")
    result = run_cli("job", "prepare", "film.mp4", *args, cwd=project)
    assert result.code == 2, (result.stdout, result.stderr)
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and expected in errors[0] and "Traceback" not in result.stderr, result.stderr
    assert not (project / "jobs").exists()
