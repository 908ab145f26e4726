"""Batch runs without stages: the run key, the media hash cache, folders of films, skip, resume, the film lock."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from infra.errors import BadInputError
from infra.hardware.cache import HardwareState
from infra.jobproto import JobBusyError, run_lock, write_json_atomic
from infra.jobs import fingerprint
from infra.jobs.batch import Batch, FilmBusyError, LocalRunner, index_folder, read_entry
from infra.jobs.films import expand_inputs
from infra.jobs.fingerprint import RunSettings, media_digest, model_digest, run_key, stage_code_digest
from infra.jobs.prepare import JobRequest, check_request
from infra.spec import load_stack
from infra.workspace import Workspace
from tests.hardware_data import snapshot

SETTINGS = RunSettings(workflow="subtitles", whisper_model="tiny.en", compute_type="int8", language="en",
                       task="transcribe", start_s=None, end_s=None)


# --- the run key ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("change", [{"workflow": "transcribe"}, {"whisper_model": "base"}, {"compute_type": "float32"},
                                    {"language": None}, {"language": "hi"}, {"task": "translate"},
                                    {"start_s": 10.0, "end_s": 20.0}, {"start_s": 10.0, "end_s": 21.0},
                                    {"audio_track": 1}, {"audio_language": "hin"}])
def test_the_key_changes_with_each_setting(change: dict) -> None:
    clip = replace(SETTINGS, start_s=10.0, end_s=20.0)
    keys = {run_key("a" * 64, settings, "code", "models") for settings in (SETTINGS, clip, replace(SETTINGS, **change))}
    assert len(keys) == 3 or change == {"start_s": 10.0, "end_s": 20.0} and len(keys) == 2


def test_the_key_changes_with_the_media_the_code_and_the_models() -> None:
    base = run_key("a" * 64, SETTINGS, "code", "models")
    assert run_key("a" * 64, SETTINGS, "code", "models") == base
    assert len({base, run_key("b" * 64, SETTINGS, "code", "models"), run_key("a" * 64, SETTINGS, "code2", "models"),
                run_key("a" * 64, SETTINGS, "code", "models2")}) == 4


def test_a_copy_of_a_film_elsewhere_has_the_same_digest_and_an_edited_one_not(tmp_path: Path) -> None:
    film = tmp_path / "a" / "film.mp4"
    film.parent.mkdir()
    film.write_bytes(os.urandom(300_000))
    copy = tmp_path / "b" / "renamed.mkv"
    copy.parent.mkdir()
    shutil.copy(film, copy)
    cache = tmp_path / "hashes"
    assert media_digest(film, cache).sha256 == media_digest(copy, cache).sha256
    edited = tmp_path / "edited.mp4"
    edited.write_bytes(film.read_bytes()[:-1] + b"\0")
    assert media_digest(edited, cache).sha256 != media_digest(film, cache).sha256


# --- the hash cache ------------------------------------------------------------------------------------------

def test_the_second_lookup_takes_the_cache_and_does_not_read_the_file(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    film = tmp_path / "film.mp4"
    film.write_bytes(b"first version " * 1000)
    cache = tmp_path / "hashes"
    first = media_digest(film, cache)
    assert not first.cached and first.sha256 == fingerprint.file_sha256(film)
    st = film.stat()
    entry = json.loads(fingerprint.hash_cache_entry(cache, st).read_text())
    assert (entry["size"], entry["mtime_ns"], entry["sha256"]) == (st.st_size, st.st_mtime_ns, first.sha256)

    def no_reading(path: Path) -> str:
        raise AssertionError(f"{path} was read although the cache knows it")

    monkeypatch.setattr(fingerprint, "file_sha256", no_reading)
    assert media_digest(film, cache) == fingerprint.MediaDigest(first.sha256, cached=True)
    # Same size, same mtime, other bytes: the cache still answers, which shows that the file is not read.
    film.write_bytes(b"other version " * 1000)
    os.utime(film, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert media_digest(film, cache).sha256 == first.sha256
    monkeypatch.undo()
    os.utime(film, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))     # touched: read again
    again = media_digest(film, cache)
    assert not again.cached and again.sha256 == fingerprint.file_sha256(film) != first.sha256


def test_a_spoiled_cache_entry_is_read_again(tmp_path: Path) -> None:
    film = tmp_path / "film.wav"
    film.write_bytes(b"RIFF" * 100)
    cache = tmp_path / "hashes"
    right = media_digest(film, cache).sha256
    fingerprint.hash_cache_entry(cache, film.stat()).write_text("{not json")
    assert media_digest(film, cache) == fingerprint.MediaDigest(right, cached=False)


# --- code and model digests ----------------------------------------------------------------------------------

def test_the_stage_code_digest_follows_the_stage_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from infra import resources

    (tmp_path / "stages" / "__pycache__").mkdir(parents=True)
    (tmp_path / "stages" / "asr.py").write_text("print('asr')\n")
    monkeypatch.setattr(resources, "data_root", lambda: tmp_path)
    stage_code_digest.cache_clear()
    try:
        first = stage_code_digest()
        (tmp_path / "stages" / "__pycache__" / "asr.cpython-311.pyc").write_bytes(b"\0")
        stage_code_digest.cache_clear()
        assert stage_code_digest() == first
        (tmp_path / "stages" / "asr.py").write_text("print('asr, better')\n")
        stage_code_digest.cache_clear()
        assert stage_code_digest() != first
    finally:
        stage_code_digest.cache_clear()


def test_the_model_digest_sees_a_model_fetched_or_replaced(tmp_path: Path) -> None:
    absent = model_digest(tmp_path, "tiny.en")
    folder = tmp_path / "whisper" / "tiny.en"
    folder.mkdir(parents=True)
    (folder / "model.bin").write_bytes(b"w" * 100)
    present = model_digest(tmp_path, "tiny.en")
    assert present != absent and model_digest(tmp_path, "tiny.en") == present
    assert model_digest(tmp_path, "base") == model_digest(tmp_path / "nothing", "base")
    (folder / "model.bin").write_bytes(b"w" * 101)
    assert model_digest(tmp_path, "tiny.en") != present
    bigger = model_digest(tmp_path, "tiny.en")
    (tmp_path / "pyannote" / "segmentation-3.0").mkdir(parents=True)
    (tmp_path / "pyannote" / "segmentation-3.0" / "pytorch_model.bin").write_bytes(b"p")
    assert model_digest(tmp_path, "tiny.en") != bigger


# --- films from the command line -----------------------------------------------------------------------------

def test_a_folder_gives_its_media_files_sorted(tmp_path: Path) -> None:
    films = tmp_path / "films"
    (films / "season 2").mkdir(parents=True)
    (films / ".hidden").mkdir()
    for name in ("b.mkv", "a.MP4", "c.wav", "notes.txt", ".partial.mp4", "season 2/e01.mp4", ".hidden/x.mp4"):
        (films / name).write_bytes(b"x")
    (films / "folder.mp4").mkdir()
    assert expand_inputs([films]) == [films / "a.MP4", films / "b.mkv", films / "c.wav"]
    assert expand_inputs([films], recursive=True) == [films / "a.MP4", films / "b.mkv", films / "c.wav",
                                                      films / "season 2" / "e01.mp4"]
    # files named one by one are taken as they are, in the order given, each once
    other = tmp_path / "extra.bin"
    other.write_bytes(b"x")
    assert expand_inputs([other, films, films / "b.mkv"]) == [other, films / "a.MP4", films / "b.mkv",
                                                             films / "c.wav"]


def test_a_folder_skips_the_workspace_outputs(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "film.mp4").write_bytes(b"x")
    (tmp_path / "out" / "2026" / "job").mkdir(parents=True)
    (tmp_path / "out" / "2026" / "job" / "subtitled.mp4").write_bytes(b"x")
    assert expand_inputs([tmp_path], recursive=True, outputs=tmp_path / "out") == [tmp_path / "in" / "film.mp4"]


@pytest.mark.parametrize("make, message", [
    (lambda root: root / "missing.mp4", "missing.mp4: no such file or folder"),
    (lambda root: (root / "empty").mkdir() or root / "empty", "empty: no media files in this folder (--recursive"),
])
def test_paths_that_name_no_film(tmp_path: Path, make, message: str) -> None:
    with pytest.raises(BadInputError, match=message.replace("(", r"\(")):
        expand_inputs([make(tmp_path)])


def test_infra_run_with_bad_paths_says_so_in_one_line_and_exits_2(project: Path, run_cli) -> None:
    (project / "films").mkdir()
    (project / "films" / "readme.txt").write_text("no films here\n")
    for args, line in ((["nope.mp4"], "error: nope.mp4: no such file or folder"),
                       (["films"], "error: films: no media files in this folder (--recursive looks in its subfolders)"),
                       (["films", "--recursive"], "error: films: no media files in this folder")):
        result = run_cli("run", *args, cwd=project)
        assert result.code == 2, result.stderr
        assert [ln for ln in result.stderr.splitlines() if ln.startswith("error:")] == [line]
        assert result.stdout == ""
    assert not (project / "jobs").exists()


# --- skip, resume, the lock ----------------------------------------------------------------------------------

class Calls:
    def __init__(self) -> None:
        self.jobs: list[str] = []

    def __call__(self, job_id: str) -> None:
        self.jobs.append(job_id)


def make_job(project: Path, stack, job_id: str) -> Path:
    """A finished job as the pipeline leaves it (every stage done, every output there), made by hand."""
    job_dir = project / "out" / "2026" / "01" / "01" / "tester" / job_id
    job_dir.mkdir(parents=True)
    (project / "jobs").mkdir(exist_ok=True)
    (project / "jobs" / job_id).write_text(str(job_dir.relative_to(project)) + "\n")
    stages = [{"name": n, "after": list(s.after), "status": "done"} for n, s in stack.spec.stages.items()]
    for spec in stack.spec.stages.values():
        for output in spec.outputs:
            (job_dir / output).parent.mkdir(parents=True, exist_ok=True)
            (job_dir / output).write_text("x")
    (job_dir / "job.json").write_text(json.dumps({"id": job_id, "status": "done", "stages": stages,
                                                  "input": {"duration_s": 12.5}, "config": {"mode": "native"}}))
    return job_dir


@pytest.fixture
def batch_setup(project: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """A workspace with one finished job for film.mp4 (made by hand: no stage runs here) and its index entry."""
    monkeypatch.setenv("INFRA_CACHE", str(project / "models"))
    stack = load_stack(project / "infra.yaml")
    hardware = HardwareState(snapshot(), "cache", project / "out" / "hardware_cache.json", 3600, 0.0, "test")
    checked = check_request(JobRequest(media=Path("x"), mode="native", whisper_model="tiny.en", user="tester"))
    film = project / "film.mp4"
    film.write_bytes(b"a film's bytes " * 100)
    calls = Calls()
    batch = Batch(stack, checked, hardware, LocalRunner(calls))
    job_id = "20260101-0001"
    job_dir = make_job(project, stack, job_id)
    key = batch.film_key(film)
    folder = index_folder(Workspace(project), key)
    batch.record(folder, key, film, job_id, "done")
    return {"stack": stack, "batch": batch, "calls": calls, "film": film, "job_id": job_id, "dir": job_dir,
            "key": key, "folder": folder, "hardware": hardware, "checked": checked}


def outcomes(batch: Batch, films: list[Path]) -> list:
    return [e.outcome for e in batch.run(films) if e.kind == "outcome"]


def test_a_finished_film_is_skipped_without_running_anything(batch_setup: dict) -> None:
    before = (batch_setup["folder"] / "entry.json").read_text()
    [outcome] = outcomes(batch_setup["batch"], [batch_setup["film"]])
    assert (outcome.status, outcome.job_id, outcome.duration_s) == ("skipped", batch_setup["job_id"], 12.5)
    assert outcome.srt == batch_setup["dir"] / "subtitles.srt" and outcome.error is None
    assert batch_setup["calls"].jobs == []
    assert (batch_setup["folder"] / "entry.json").read_text() == before
    assert outcome.as_dict()["srt"] == str(batch_setup["dir"] / "subtitles.srt")


def test_a_copy_of_the_film_under_another_name_is_skipped_too(batch_setup: dict, tmp_path: Path) -> None:
    copy = tmp_path / "the same film.mkv"
    shutil.copy(batch_setup["film"], copy)
    [outcome] = outcomes(batch_setup["batch"], [copy])
    assert (outcome.status, outcome.job_id, outcome.film) == ("skipped", batch_setup["job_id"], copy)


def test_a_finished_job_whose_outputs_are_gone_is_resumed(batch_setup: dict) -> None:
    srt = batch_setup["dir"] / "subtitles.srt"
    srt.unlink()

    def run_stages(job_id: str) -> None:            # what the pipeline would do: make the missing output again
        batch_setup["calls"](job_id)
        srt.write_text("1\n")

    resuming = Batch(batch_setup["stack"], batch_setup["checked"], batch_setup["hardware"], LocalRunner(run_stages))
    events = list(resuming.run([batch_setup["film"]]))
    assert [e.kind for e in events] == ["film", "resumed", "outcome"]
    assert batch_setup["calls"].jobs == [batch_setup["job_id"]]       # the same job, not a new one
    assert (events[-1].outcome.status, events[-1].outcome.srt) == ("done", srt)
    entry = read_entry(batch_setup["folder"])
    assert (entry["job"], entry["status"], entry["pid"]) == (batch_setup["job_id"], "done", os.getpid())


def test_other_settings_make_another_key(batch_setup: dict) -> None:
    other = Batch(batch_setup["stack"], replace(batch_setup["checked"], language="hi"), batch_setup["hardware"],
                  LocalRunner(batch_setup["calls"]))
    assert other.film_key(batch_setup["film"]) != batch_setup["key"]
    assert batch_setup["batch"].film_key(batch_setup["film"]) == batch_setup["key"]


def test_force_prepares_a_new_job(batch_setup: dict) -> None:
    """--force does not look at the finished job; the new job's prepare refuses the fake film, and that is recorded."""
    forced = Batch(batch_setup["stack"], batch_setup["checked"], batch_setup["hardware"],
                   LocalRunner(batch_setup["calls"]), force=True)
    [outcome] = outcomes(forced, [batch_setup["film"]])
    assert outcome.status == "failed" and "not a media file ffprobe can read" in outcome.error.message
    assert batch_setup["calls"].jobs == []
    assert read_entry(batch_setup["folder"])["status"] == "failed"


def test_a_film_another_run_holds_is_busy_and_the_others_go_on(batch_setup: dict, tmp_path: Path) -> None:
    second = tmp_path / "second.mp4"
    second.write_bytes(b"another film " * 100)
    with run_lock(batch_setup["folder"]):
        results = outcomes(batch_setup["batch"], [batch_setup["film"], second])
    assert [o.status for o in results] == ["busy", "failed"]
    assert isinstance(results[0].error, FilmBusyError)
    assert results[0].error.message == (f"{batch_setup['film']}: another `infra run` is running this film "
                                        f"(job {batch_setup['job_id']}, pid {os.getpid()})")


def test_wait_waits_for_the_other_run_and_then_finds_the_film_done(batch_setup: dict) -> None:
    waiting = Batch(batch_setup["stack"], batch_setup["checked"], batch_setup["hardware"],
                    LocalRunner(batch_setup["calls"]), wait=True)
    held, release = threading.Event(), threading.Event()

    def other_run() -> None:
        with run_lock(batch_setup["folder"]):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=other_run)
    thread.start()
    held.wait(10)
    kinds = []
    for event in waiting.run([batch_setup["film"]]):
        kinds.append(event.kind)
        if event.kind == "waiting":
            assert event.detail == f"job {batch_setup['job_id']}, pid {os.getpid()}"
            time.sleep(0.2)
            release.set()
        if event.kind == "outcome":
            assert event.outcome.status == "skipped"
    thread.join()
    assert kinds == ["film", "waiting", "outcome"]


class Overlapping:
    """A runner like --submit's: every film is started before the first is waited for; it checks the locks."""

    overlaps = True

    def __init__(self, folders: list[Path]) -> None:
        self.folders, self.calls = folders, []

    def start(self, job_id: str) -> None:
        self.calls.append(("start", job_id))

    def finish(self, job_id: str) -> None:
        self.calls.append(("finish", job_id))
        for folder in self.folders:                # every film's lock is still held while the first is waited for
            with pytest.raises(JobBusyError):
                with run_lock(folder):
                    pass


def test_submitted_films_all_start_before_the_first_is_waited_for(batch_setup: dict, tmp_path: Path) -> None:
    project = batch_setup["film"].parent
    second = tmp_path / "second.mp4"
    second.write_bytes(b"another film " * 100)
    second_dir = make_job(project, batch_setup["stack"], "20260101-0002")
    key = batch_setup["batch"].film_key(second)
    second_folder = index_folder(Workspace(project), key)
    batch_setup["batch"].record(second_folder, key, second, "20260101-0002", "failed")
    for job_dir in (batch_setup["dir"], second_dir):
        (job_dir / "subtitles.srt").unlink()        # not done any more: each film's job resumes
    runner = Overlapping([batch_setup["folder"], second_folder])
    submitting = Batch(batch_setup["stack"], batch_setup["checked"], batch_setup["hardware"], runner)
    results = outcomes(submitting, [batch_setup["film"], second])
    assert runner.calls == [("start", "20260101-0001"), ("start", "20260101-0002"),
                            ("finish", "20260101-0001"), ("finish", "20260101-0002")]
    # the runner did not bring the subtitles back: the films are not done, and the locks are free again
    assert [(o.status, o.job_id) for o in results] == [("failed", "20260101-0001"), ("failed", "20260101-0002")]
    assert "an output is missing" in results[0].error.message
    for folder in (batch_setup["folder"], second_folder):
        with run_lock(folder):
            assert read_entry(folder)["status"] == "failed"


def test_the_submit_runner_queues_the_job_and_waits_for_the_workers(batch_setup: dict) -> None:
    """No stack here: the test plays the workers, finishing the job the runner queued (or failing it)."""
    from infra.errors import OperationError
    from infra.jobs.batch import SubmitRunner

    project = batch_setup["film"].parent
    job_file = batch_setup["dir"] / "job.json"
    job = json.loads(job_file.read_text())
    job.update(status="prepared", workspace=str(project), input={"file": str(batch_setup["film"]), "duration_s": 1})
    for entry in job["stages"]:
        entry["status"] = "pending"
    job_file.write_text(json.dumps(job))
    seen: list[list[str]] = []
    runner = SubmitRunner(batch_setup["stack"], timeout_s=20,
                          notify=lambda data: seen.append([s.get("status") for s in data["stages"]]))
    runner.start(batch_setup["job_id"])
    queued = project / "jobs" / "queue" / "demux" / batch_setup["job_id"]
    assert json.loads(queued.read_text())["stage"] == "demux"

    def workers(outcome: str) -> None:
        time.sleep(0.6)
        data = json.loads(job_file.read_text())
        for entry in data["stages"]:
            entry["status"] = "done" if outcome == "done" or entry["name"] != "asr" else "failed"
        data["status"] = outcome
        write_json_atomic(job_file, data)

    thread = threading.Thread(target=workers, args=("done",))
    thread.start()
    runner.finish(batch_setup["job_id"])
    thread.join()
    assert seen[0][0] == "queued" and set(seen[-1]) == {"done"}

    thread = threading.Thread(target=workers, args=("failed",))
    thread.start()
    data = json.loads(job_file.read_text())
    data["status"] = "queued"
    write_json_atomic(job_file, data)
    with pytest.raises(OperationError, match=f"job {batch_setup['job_id']} failed at asr"):
        runner.finish(batch_setup["job_id"])
    thread.join()
