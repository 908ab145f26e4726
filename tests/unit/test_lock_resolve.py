"""`infra lock`'s resolving, without a daemon or an index: apt's answers parsed, pip's report read, the options pip
gets, and the whole run over a spec whose images have apt lines only, with apt answered by a stand-in."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from infra.build.lock import LockResult, lock_stack
from infra.build.lockapt import MARK, BaseFacts, added_pins, apt_script, ask_apt, installs, parse_answer
from infra.build.lockpip import PipTarget, _failure, parse_report, pip_environment
from infra.engine.capture import Captured
from infra.engine.fake import FakeEngine
from infra.errors import BadInputError, OperationError
from infra.spec import load_stack
from infra.spec.lock import PipPin, read_lock
from infra.spec.lockmatch import image_inputs

SIMULATION = """\
NOTE: This is only a simulation!
Reading package lists...
Inst libaom3 (3.6.0-1+deb12u2 Debian:12.15/oldstable [amd64])
Inst libc6 [2.36-9] (2.36-9+deb12u13 Debian:12.15/oldstable [amd64])
Inst ffmpeg (7:5.1.9-0+deb12u1 Debian:12.15/oldstable [amd64])
Conf libaom3 (3.6.0-1+deb12u2 Debian:12.15/oldstable [amd64])
"""


def fake_apt(versions: dict[str, str] | None = None, missing: str | None = None, update_fails: bool = False):
    """Answers the lock's container script as apt in a bookworm base would: each package at its version (1.0-1
    unless given) with one dependency, lib<name>0; ``missing`` is a package apt does not know."""
    calls: list[tuple[str, list[str]]] = []

    def run(ref: str, command: list[str]) -> Captured:
        calls.append((ref, command))
        if update_fails:
            return Captured(3, "", "E: Failed to fetch http://deb.debian.org/debian/dists/bookworm/InRelease")
        out = [f"{MARK} facts 3.11 2.36 x86_64"]
        for line in command[2].splitlines():
            if line.startswith(f"echo {MARK} image "):
                out.append(" ".join(shlex.split(line)[1:]))
            elif line.startswith("apt-get install --simulate"):
                packages = shlex.split(line.split(" -q ", 1)[1].split(" 2>&1")[0])
                if missing in packages:
                    out += [f"E: Unable to locate package {missing}", f"{MARK} failed"]
                    continue
                for p in packages:
                    out.append(f"Inst {p} ({(versions or {}).get(p, '1.0-1')} Debian:12/stable [amd64])")
                    out.append(f"Inst lib{p}0 (2.0-1 Debian:12/stable [all])")
        return Captured(0, "\n".join(out) + "\n", "")

    run.calls = calls  # type: ignore[attr-defined]
    return run


def test_apt_answers_are_read_per_image_with_upgrades_and_the_base_facts() -> None:
    script = apt_script({"base": ["tini"], "ffmpeg": ["tini", "ffmpeg"]})
    assert script.count("apt-get -q update") == 1 and script.count("--simulate --no-install-recommends") == 2
    stdout = f"{MARK} facts 3.11 2.36 x86_64\n{MARK} image ffmpeg\n{SIMULATION}"
    facts, sections = parse_answer(stdout)
    assert facts == BaseFacts("3.11", (2, 36), "x86_64")
    assert installs(sections["ffmpeg"]) == {"libaom3": "3.6.0-1+deb12u2", "libc6": "2.36-9+deb12u13",
                                            "ffmpeg": "7:5.1.9-0+deb12u1"}
    assert parse_answer(f"{MARK} facts - - -\n")[0] == BaseFacts()     # a base without Python


def test_each_image_pins_what_it_adds_over_its_parent() -> None:
    order = ["base", "ffmpeg", "plain", "extra"]
    parents = {"base": None, "ffmpeg": "base", "plain": "base", "extra": "ffmpeg"}
    answer = {"base": {"tini": "1", "libc6": "2"},
              "ffmpeg": {"tini": "1", "libc6": "2", "ffmpeg": "7", "libaom3": "3"},
              "extra": {"tini": "1", "libc6": "3", "ffmpeg": "7", "libaom3": "3", "sox": "14"}}
    assert added_pins(order, parents, answer) == {
        "base": {"libc6": "2", "tini": "1"},
        "ffmpeg": {"ffmpeg": "7", "libaom3": "3"},
        "plain": {},                                                  # no apt line: holds its parent's
        "extra": {"libc6": "3", "sox": "14"},                         # an upgrade of the parent's counts
    }


def test_apt_refusals_name_the_image_and_an_unreachable_archive_is_an_operation_error() -> None:
    where = {"ffmpeg": "images/ffmpeg/image.yaml"}
    with pytest.raises(BadInputError, match=r"^images/ffmpeg/image.yaml: apt: Unable to locate package ffmpegg "
                                            r"\(in base:1\)$"):
        ask_apt("base:1", {"ffmpeg": ["tini", "ffmpegg"]}, fake_apt(missing="ffmpegg"), where)
    with pytest.raises(OperationError, match="apt-get update in base:1 failed: E: Failed to fetch") as caught:
        ask_apt("base:1", {"ffmpeg": ["ffmpeg"]}, fake_apt(update_fails=True), where)
    assert not isinstance(caught.value, BadInputError)


def test_pip_report_pins_what_the_ancestors_do_not_hold() -> None:
    report = {"install": [
        {"metadata": {"name": "faster_whisper", "version": "1.2.1"},
         "download_info": {"archive_info": {"hashes": {"sha256": "1" * 64}}}},
        {"metadata": {"name": "NumPy", "version": "2.4.6"},
         "download_info": {"archive_info": {"hashes": {"sha256": "2" * 64}}}},
        {"metadata": {"name": "Typing.Extensions", "version": "4.16.0"}, "download_info": {}},
    ]}
    assert parse_report(report, {"numpy": "2.4.6"}) == {
        "faster-whisper": PipPin(version="1.2.1", sha256="1" * 64),
        "typing-extensions": PipPin(version="4.16.0"),
    }


def test_pip_is_told_the_image_platform_only_when_the_host_differs(monkeypatch: pytest.MonkeyPatch) -> None:
    import platform
    import sys

    target = PipTarget(python="3.11", machine="x86_64", glibc=(2, 36))
    tags = target.platforms()
    assert tags[0] == "manylinux_2_36_x86_64" and tags[-1] == "manylinux1_x86_64"
    assert "manylinux2014_x86_64" in tags and "manylinux_2_17_x86_64" in tags and len(tags) == 35
    monkeypatch.setattr(sys, "version_info", (3, 11, 7))
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(platform, "libc_ver", lambda: ("glibc", "2.36"))
    assert target.host_matches() and target.flags(Path("/x")) == []
    monkeypatch.setattr(platform, "libc_ver", lambda: ("glibc", "2.41"))      # a newer host: its wheels may not load
    flags = target.flags(Path("/x"))
    assert flags[:8] == ["--target", "/x/target", "--python-version", "3.11", "--implementation", "cp", "--abi",
                         "cp311"]
    assert "--platform=manylinux_2_36_x86_64" in flags and "--platform=manylinux_2_37_x86_64" not in flags
    assert flags[-1] == "--only-binary=:all:"


def test_pip_sees_no_host_configuration_but_the_spec_pip_conf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_FIND_LINKS", "/opt/wheels")
    monkeypatch.setenv("PIP_INDEX_URL", "https://elsewhere.example/simple")
    env = pip_environment(None)
    assert not {k for k in env if k.startswith("PIP_")} - {"PIP_CONFIG_FILE", "PIP_DISABLE_PIP_VERSION_CHECK",
                                                           "PIP_NO_INPUT"}
    assert env["PIP_CONFIG_FILE"] == "/dev/null"
    assert pip_environment(Path("/p/pip.conf"))["PIP_CONFIG_FILE"] == "/p/pip.conf"


def test_pip_failures_are_bad_input_when_the_request_cannot_be_met() -> None:
    unresolvable = _failure("ERROR: Could not find a version that satisfies the requirement nope==9\n"
                            "ERROR: No matching distribution found for nope==9\n", "images/x/image.yaml")
    assert isinstance(unresolvable, BadInputError)
    assert unresolvable.message == ("images/x/image.yaml: pip: Could not find a version that satisfies the "
                                    "requirement nope==9; No matching distribution found for nope==9")
    offline = _failure("WARNING: Retrying...\nERROR: HTTPSConnectionPool: Max retries exceeded\n",
                       "images/x/image.yaml")
    assert type(offline) is OperationError and "Max retries exceeded" in offline.message


def apt_only(project: Path) -> Path:
    """The project with every pip line taken out, so that locking needs apt alone."""
    for image in (project / "images").iterdir():
        lines = (image / "image.yaml").read_text().splitlines()
        (image / "image.yaml").write_text("\n".join(x for x in lines if not x.startswith("pip:")) + "\n")
    return project


def test_lock_writes_every_image_once_per_base_and_keeps_the_file_when_nothing_changed(project: Path) -> None:
    stack = load_stack(apt_only(project) / "infra.yaml")
    base = stack.base_ref("docker-cpu")
    engine = FakeEngine(images={base: {}})
    run = fake_apt({"ffmpeg": "7:5.1.9-0+deb12u1"})
    events = list(lock_stack(stack, None, engine, run))
    result = events[-1]
    assert isinstance(result, LockResult) and result.written and result.path == project / "infra.lock"
    assert len(run.calls) == 1 and run.calls[0][0] == base                 # one container for the one base
    assert [(b.base, b.images, b.apt, b.pip) for b in result.bases] == [("bookworm", 8, 4, 0)]
    lock = read_lock(project / "infra.lock", "infra.lock")
    assert lock is not None and list(lock.bases) == ["bookworm"]
    images = lock.bases["bookworm"].images
    assert images["base"].apt == {"tini": "1.0-1", "libtini0": "2.0-1"}
    assert images["ffmpeg"].apt == {"ffmpeg": "7:5.1.9-0+deb12u1", "libffmpeg0": "2.0-1"}
    assert images["asr"].apt == {} and images["asr"].inputs == image_inputs(stack, "docker-cpu", "asr")
    rendered = load_stack(project / "infra.yaml")
    assert rendered.lock == lock
    before = (project / "infra.lock").stat().st_mtime_ns
    again = list(lock_stack(stack, ["docker-cpu"], engine, fake_apt({"ffmpeg": "7:5.1.9-0+deb12u1"})))[-1]
    assert isinstance(again, LockResult) and not again.written
    assert (project / "infra.lock").stat().st_mtime_ns == before
    assert not list(project.glob(".infra.lock.*"))


def test_lock_drops_images_the_spec_no_longer_has_and_replaces_an_unreadable_lock(project: Path) -> None:
    stack = load_stack(apt_only(project) / "infra.yaml")
    engine = FakeEngine(images={stack.base_ref("docker-cpu"): {}})
    list(lock_stack(stack, ["native"], engine, fake_apt()))
    first = read_lock(project / "infra.lock", "x")
    assert first is not None and sorted(first.bases["bookworm"].images) == ["base", "ffmpeg"]
    (project / "infra.lock").write_text("version: [\n")
    events = list(lock_stack(stack, ["docker-cpu"], engine, fake_apt()))
    assert "infra.lock cannot be read; writing a new one" in events
    assert len(read_lock(project / "infra.lock", "x").bases["bookworm"].images) == 8  # type: ignore[union-attr]


def test_lock_refuses_the_built_in_spec_and_an_unknown_mode(tmp_path: Path) -> None:
    from infra.spec.load import load_stack as load

    stack = load(None, cwd=tmp_path, with_lock=False)
    assert stack.embedded
    with pytest.raises(BadInputError, match="writes the lock beside the spec"):
        list(lock_stack(stack, None, FakeEngine(), fake_apt()))
    project_stack = load_stack(Path(__file__).resolve().parents[2] / "infra.yaml", with_lock=False)
    with pytest.raises(BadInputError, match="not a mode"):
        list(lock_stack(project_stack, ["docker-tpu"], FakeEngine(), fake_apt()))  # type: ignore[list-item]
