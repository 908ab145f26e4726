"""The spoken languages and tasks a job may ask Whisper for, checked before anything starts.

Whisper's language codes are those of faster-whisper's tokenizer (``faster_whisper.tokenizer._LANGUAGE_CODES``),
kept in ``whisper_languages.json`` beside this module because faster-whisper is installed in the ML
environment, not in infra's own (tests/integration/test_languages.py compares the file with the installed
faster-whisper). A job's language is one of them, or ``auto`` (detected for each speech segment, for films
that switch between languages), or none (detected once, on the first speech). An English-only model (its name
ends in ``.en``, as Whisper names them: tiny.en, base.en) transcribes English only: another language, ``auto``
or the translate task is refused with one line.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from infra.errors import BadInputError

LANGUAGES_FILE = Path(__file__).with_name("whisper_languages.json")
AUTO = "auto"                          # detect the language of each speech segment
TASKS = ("transcribe", "translate")    # translate: into English
ENGLISH_ONLY_SUFFIX = ".en"


@cache
def whisper_languages() -> tuple[str, ...]:
    """Whisper's language codes, in its tokenizer's order."""
    return tuple(json.loads(LANGUAGES_FILE.read_text(encoding="utf-8"))["codes"])


def english_only(model: str) -> bool:
    """Whether a Whisper model (``tiny.en`` or ``whisper/tiny.en``) knows English only."""
    return model.endswith(ENGLISH_ONLY_SUFFIX)


def check_language(language: str | None) -> str | None:
    """The language as given when Whisper knows it (or it is ``auto`` or none), else BadInputError."""
    if language is None or language == AUTO or language in whisper_languages():
        return language
    raise BadInputError(f"--language {language!r} is not a language Whisper knows (a code such as hi, en, ur, ta; "
                        f"or {AUTO}, to detect it for each speech segment)")


def check_task(task: str) -> str:
    if task not in TASKS:
        raise BadInputError(f"--task {task!r} is not a task ({', '.join(TASKS)})")
    return task


def check_model_language(language: str | None, task: str, model: str) -> None:
    """An English-only model is given English (or nothing, which it takes as English) and the transcribe task."""
    if not english_only(model):
        return
    if language not in (None, "en"):
        wanted = "languages detected per segment" if language == AUTO else f"language {language}"
        raise BadInputError(f"--model {model} knows English only and cannot transcribe {wanted} "
                            "(choose a multilingual model, e.g. --model base)")
    if task == "translate":
        raise BadInputError(f"--model {model} knows English only and cannot translate "
                            "(choose a multilingual model, e.g. --model base)")
