"""`infra subs check`: each rule caught with its cue number, notes for cues the timing could not help, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from infra.errors import BadInputError
from infra.quality.subtitles import Rules, check_file, read_subtitles
from tests.conftest import REPO

GOOD_SRT = ("1\n00:00:01,000 --> 00:00:03,000\nSpeaker 1: Hello there.\n\n"
            "2\n00:00:03,083 --> 00:00:07,000\n- Speaker 1: Are you coming?\n- Speaker 2: Yes, in a minute.\n\n")
GOOD_VTT = ("WEBVTT\n\nNOTE made by hand\n\n"
            "first\n00:00:01.000 --> 00:00:03.000 align:start\n<v Speaker 1>Hello there.\n\n"
            "00:03.083 --> 00:07.000\n<v Speaker 1>- Are you coming?</v>\n<v Speaker 2>- Yes, in a minute.</v>\n\n")


def srt(*cues: tuple[str, str, str]) -> str:
    return "".join(f"{i}\n{a} --> {b}\n{text}\n\n" for i, (a, b, text) in enumerate(cues, start=1))


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def found(path: Path, rules: Rules = Rules()) -> list[tuple[int, str]]:
    return [(b.cue, b.rule) for b in check_file(path, rules).breaches]


def test_files_that_keep_the_rules_pass(tmp_path: Path) -> None:
    crlf = "\ufeff" + GOOD_SRT.replace("\n", "\r\n")
    for name, text in (("a.srt", GOOD_SRT), ("a.vtt", GOOD_VTT), ("bom.srt", crlf)):
        report = check_file(write(tmp_path, name, text))
        assert report.breaches == () and report.notes == () and report.cues == 2, name
    assert read_subtitles(write(tmp_path, "a.vtt", GOOD_VTT))[1][0].start_ms == 1000
    assert check_file(write(tmp_path, "none.srt", "")).cues == 0            # no speech: an SRT without cues


@pytest.mark.parametrize("cue, rule", [
    (("00:00:01,000", "00:00:04,000", "This line is much longer than forty-two characters"), "max-line"),
    (("00:00:01,000", "00:00:04,000", "one\ntwo\nthree"), "max-lines"),
    (("00:00:01,000", "00:00:01,500", "Hi."), "min-duration"),
    (("00:00:01,000", "00:00:08,500", "Hi."), "max-duration"),
    (("00:00:01,000", "00:00:02,000", "Twenty-five characters ok"), "max-cps"),
    (("00:00:01,000", "00:00:04,000", "Speaker 1: Are you coming?\nSpeaker 2: Yes."), "dialogue"),
    (("00:00:01,000", "00:00:04,000", "<i> </i>"), "empty"),
])
def test_each_rule_is_caught_with_its_cue_number(cue: tuple[str, str, str], rule: str, tmp_path: Path) -> None:
    fine = ("00:00:00,000", "00:00:00,900", "Fine.")
    path = write(tmp_path, "a.srt", srt(fine, cue, ("00:00:20,000", "00:00:22,000", "Fine again.")))
    assert found(path) == [(2, rule)]


def test_gaps_below_two_frames_and_overlaps_are_caught_on_the_cue_before(tmp_path: Path) -> None:
    path = write(tmp_path, "a.srt", srt(("00:00:01,000", "00:00:02,000", "One."),
                                        ("00:00:02,050", "00:00:03,000", "Two."),
                                        ("00:00:02,900", "00:00:04,000", "Three."),
                                        ("00:00:04,083", "00:00:05,000", "Four.")))
    breaches = check_file(path).breaches
    assert [(b.cue, b.rule) for b in breaches] == [(1, "min-gap"), (2, "min-gap")]
    assert str(breaches[1]) == "cue 2: min-gap: cue 3 starts -0.100 s after it ends (at least 0.083 s)"


def test_webvtt_that_names_the_speaker_twice_is_caught(tmp_path: Path) -> None:
    old = "WEBVTT\n\n00:00:01.000 --> 00:00:03.000\n<v Speaker 2>Speaker 2: Oh, hello.\n\n"
    assert found(write(tmp_path, "a.vtt", old)) == [(1, "voice-once")]
    two = "WEBVTT\n\n00:00:01.000 --> 00:00:03.000\n<v Ann>Are you coming?</v>\n<v Bob>Yes.</v>\n\n"
    assert found(write(tmp_path, "b.vtt", two)) == [(1, "dialogue")]


def test_a_fast_cue_is_a_breach_when_it_could_be_held_longer_else_a_note(tmp_path: Path) -> None:
    """34 characters in one second: held as long as the next cue allows is a note; with time free after it, or
    with --strict-cps, a breach."""
    text = "Thirty-four characters, near this."
    fast = ("00:00:01,000", "00:00:02,000", text)
    boxed = write(tmp_path, "boxed.srt", srt(fast, ("00:00:02,083", "00:00:04,000", "Next.")))
    report = check_file(boxed)
    assert report.breaches == () and [(n.cue, n.rule) for n in report.notes] == [(1, "max-cps-boxed")]
    assert found(boxed, Rules(strict_cps=True)) == [(1, "max-cps")]
    free = write(tmp_path, "free.srt", srt(fast, ("00:00:02,500", "00:00:04,000", "Next.")))
    assert found(free) == [(1, "max-cps")]
    assert found(write(tmp_path, "last.srt", srt(fast))) == [(1, "max-cps")]


def test_what_is_shown_is_what_is_counted(tmp_path: Path) -> None:
    """Tags and the voice tag are not shown; a character reference is one character."""
    line = "<i>" + "a" * 40 + "&amp;</i>"                    # 41 characters shown
    vtt = f"WEBVTT\n\n00:00:01.000 --> 00:00:05.000\n<v Speaker 1>{line}\n\n"
    assert found(write(tmp_path, "a.vtt", vtt)) == []
    assert found(write(tmp_path, "a.vtt", vtt), Rules(max_line=40)) == [(1, "max-line")]


@pytest.mark.parametrize("name, content, message", [
    ("missing.srt", None, "no such file"),
    ("notes.txt", "Shopping list\nmilk\neggs\n", "not an SRT or WebVTT file"),
    ("image.srt", b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", "not UTF-8 text"),
    ("a.vtt", "1\n00:00:01,000 --> 00:00:02,000\nHi.\n", "not a WebVTT file"),
    ("empty.txt", "", "not an SRT or WebVTT file"),
    ("comma.srt", "1\n00:00:01.000 --> 00:00:02,000\nHi.\n", "line 2: broken SRT timing"),
    ("minute.srt", "1\n00:61:01,000 --> 00:61:02,000\nHi.\n", "line 2: broken SRT timing"),
    ("arrow.srt", "1\n00:00:01,000 -> 00:00:02,000\nHi.\n", "not an SRT or WebVTT file"),
    ("later.srt", GOOD_SRT + "3\n00:00:07,000 --> 00:00:0x,000\nHi.\n", "line 11: broken SRT timing"),
    ("number.srt", GOOD_SRT + "three\n00:00:07,000 --> 00:00:08,000\nHi.\n", "cue number must be digits"),
    ("b.vtt", "WEBVTT\n\n00:00:01.000 --> 00:00:02\nHi.\n", "line 3: broken WebVTT timing"),
])
def test_bad_input_is_one_line_and_exit_2(name: str, content: str | bytes | None, message: str, tmp_path: Path,
                                          run_cli) -> None:
    path = tmp_path / name if content is None else write(tmp_path, name, content)
    with pytest.raises(BadInputError, match=message):
        check_file(path)
    result = run_cli("subs", "check", str(path))
    assert result.code == 2 and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr
    assert "Traceback" not in result.stderr


def test_the_command_exits_0_when_the_file_passes_and_1_with_a_line_per_breach(tmp_path: Path, run_cli) -> None:
    good = write(tmp_path, "good.srt", GOOD_SRT)
    result = run_cli("subs", "check", str(good))
    assert (result.code, result.stdout) == (0, f"{good}: srt, 2 cues: passes\n")
    bad = write(tmp_path, "bad.srt", srt(("00:00:01,000", "00:00:01,400", "Hi."),
                                         ("00:00:01,450", "00:00:03,000", "Yo.")))
    result = run_cli("subs", "check", str(bad))
    assert result.code == 1
    assert result.stdout.splitlines() == [
        "cue 1: min-duration: lasts 0.400 s (at least 0.83 s)",
        "cue 1: min-gap: cue 2 starts 0.050 s after it ends (at least 0.083 s)",
        f"{bad}: srt, 2 cues: 2 breaches"]
    assert run_cli("subs", "check", str(bad), "--min-duration", "0.3", "--min-gap", "0.04").code == 0


def test_the_command_s_options_and_json(tmp_path: Path, run_cli) -> None:
    good = write(tmp_path, "good.vtt", GOOD_VTT)
    result = run_cli("subs", "check", str(good), "--max-line", "15", "--json")
    assert result.code == 1
    report = json.loads(result.stdout)
    assert report["format"] == "vtt" and report["cues"] == 2 and report["passes"] is False
    assert report["rules"]["max_line"] == 15 and report["rules"]["max_cps"] == 17.0
    assert [(b["cue"], b["rule"]) for b in report["breaches"]] == [(2, "max-line"), (2, "max-line")]
    assert run_cli("subs", "check", str(good), "--max-cps", "0").code == 2          # typer's usage error


def test_the_installed_command_prints_no_traceback_for_bad_input(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "infra", "subs", "check", str(tmp_path / "gone.vtt")], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {tmp_path / 'gone.vtt'}: no such file"]
