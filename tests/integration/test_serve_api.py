"""`infra serve`'s JSON API against a real service process running real jobs (natively, Whisper tiny.en).

Two films run in the whole module: a short clip uploaded five times at once (one job, one run), and a longer
one submitted by its path, cancelled while it runs and retried. Everything else asks about them.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.media_fixtures import detected, media  # noqa: F401
from tests.integration.serve_process import FLAGS, Server, native_workspace, serve_env, start_server

CUE = re.compile(r"(\d+)\n(\d\d:\d\d:\d\d,\d\d\d) --> (\d\d:\d\d:\d\d,\d\d\d)\n((?:.+\n)+)")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, ml_env: Path, model_cache: Path, detected,  # noqa: F811
           media) -> Iterator[dict[str, Any]]:  # noqa: F811
    """A service over a workspace three folders down (so that ../../.. of an upload's name lands in ``base``),
    with in/films/long.mp4 (the speech clip three times) and in/films/tone.wav."""
    base = tmp_path_factory.mktemp("serve-api")
    ws = native_workspace(base / "a" / "b" / "ws", ml_env, detected)
    films = ws / "in" / "films"
    films.mkdir(parents=True)
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-stream_loop", "2", "-i", str(media["speech"]),
                    "-c", "copy", str(films / "long.mp4")], check=True, capture_output=True, timeout=60)
    shutil.copy(media["tone"], films / "tone.wav")
    server = start_server(ws, serve_env(model_cache))
    state: dict[str, Any] = {"server": server, "ws": ws, "base": base, "media": media}
    yield state
    server.stop()


def stage_headers(job_dir: Path) -> dict[str, int]:
    """How many times each stage started (one '=== ' line per start in its log)."""
    return {log.stem: sum(line.startswith("=== ") for line in log.read_text().splitlines())
            for log in sorted((job_dir / "logs").glob("*.log"))}


def job_dir(ws: Path, job_id: str) -> Path:
    return ws / (ws / "jobs" / job_id).read_text().strip()


def test_the_openapi_schema_names_the_routes(served: dict) -> None:
    schema = served["server"].get("/openapi.json").json()
    assert schema["openapi"].startswith("3.")
    paths = schema["paths"]
    for path, method in (("/api/jobs", "post"), ("/api/jobs", "get"), ("/api/jobs/{job_id}", "get"),
                         ("/api/jobs/{job_id}/{kind}", "get"), ("/api/jobs/{job_id}/logs/{stage}", "get"),
                         ("/api/jobs/{job_id}/cancel", "post"), ("/api/jobs/{job_id}/retry", "post")):
        assert method in paths.get(path, {}), (path, method)
    form = paths["/api/jobs"]["post"]["requestBody"]["content"]
    fields = schema["components"]["schemas"][form["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[1]]
    assert {"file", "path", "language", "task", "model", "mode", "name"} <= set(fields["properties"])
    assert "/healthz" not in paths


def test_five_uploads_of_one_film_at_once_are_one_job_and_one_run(served: dict) -> None:
    """Five requests upload the same bytes together (one names the file ../../../../../../escape.mp4, which
    would be outside): every answer is the same job, it runs once, and nothing lands outside the workspace."""
    server: Server = served["server"]
    ws, base = served["ws"], served["base"]
    outside_before = sorted(p for p in base.rglob("*") if ws not in p.parents and p != ws)
    names = ["speech.mp4"] * 4 + ["../../../../../../escape.mp4"]
    answers: list[Any] = [None] * len(names)

    def upload(i: int) -> None:
        with served["media"]["speech"].open("rb") as film:
            answers[i] = server.post("/api/jobs", files={"file": (names[i], film, "video/mp4")}, data=FLAGS)

    threads = [threading.Thread(target=upload, args=(i,)) for i in range(len(names))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert all(a is not None and a.status_code == 202 for a in answers), [a and a.text for a in answers]
    ids = {a.json()["id"] for a in answers}
    assert len(ids) == 1, ids
    job_id = ids.pop()
    job = server.wait_for(job_id, ("done", "failed"))
    assert job["status"] == "done", job
    assert [s["name"] for s in job["stages"]] == ["demux", "vad", "asr", "diarize", "subtitles", "mux"]
    assert all(s["status"] == "done" and s["wall_s"] > 0 for s in job["stages"])
    assert job["results"] == {k: f"/api/jobs/{job_id}/{k}" for k in ("srt", "vtt", "mp4")}
    assert [j["id"] for j in server.get("/api/jobs").json()] == [job_id]
    assert stage_headers(job_dir(ws, job_id)) == {s: 1 for s in ("asr", "demux", "diarize", "mux", "subtitles", "vad")}
    assert len(list((ws / "jobs" / "index").iterdir())) == 1
    kept = sorted(p.name for p in (ws / "in" / "uploads").rglob("*") if p.is_file())
    assert kept == ["escape.mp4", "speech.mp4"]              # one folder (one hash), no temporary file left
    assert sorted(p for p in base.rglob("*") if ws not in p.parents and p != ws) == outside_before
    served["short"] = job_id


def test_srt_webvtt_and_mp4_come_back(served: dict, tmp_path: Path) -> None:
    server: Server = served["server"]
    job_id = served["short"]
    srt = server.get(f"/api/jobs/{job_id}/srt")
    assert srt.status_code == 200 and srt.headers["content-type"].startswith("application/x-subrip")
    assert f'filename="{job_id}.srt"' in srt.headers["content-disposition"]
    cues = CUE.findall(srt.text)
    assert cues and [int(c[0]) for c in cues] == list(range(1, len(cues) + 1))
    assert "film" in srt.text.lower()
    vtt = server.get(f"/api/jobs/{job_id}/vtt")
    assert vtt.status_code == 200 and vtt.headers["content-type"].startswith("text/vtt")
    assert vtt.text.startswith("WEBVTT") and " --> " in vtt.text
    mp4 = server.get(f"/api/jobs/{job_id}/mp4")
    assert mp4.status_code == 200 and mp4.headers["content-type"] == "video/mp4"
    (tmp_path / "got.mp4").write_bytes(mp4.content)
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_type,codec_name", "-of", "json",
                            str(tmp_path / "got.mp4")], capture_output=True, text=True, check=True)
    streams = {(s["codec_type"], s["codec_name"]) for s in json.loads(probe.stdout)["streams"]}
    assert ("subtitle", "mov_text") in streams and any(kind == "audio" for kind, _ in streams)
    log = server.get(f"/api/jobs/{job_id}/logs/asr")
    assert log.status_code == 200 and log.text.startswith("=== ")


def test_a_path_in_the_workspace_to_a_film_done_before_is_its_job(served: dict) -> None:
    """The uploaded file by its absolute path, and a copy of the same bytes by a relative path: the same job,
    answered at once, and nothing runs again."""
    server: Server = served["server"]
    ws, job_id = served["ws"], served["short"]
    uploaded = next((ws / "in" / "uploads").rglob("speech.mp4"))
    shutil.copy(uploaded, ws / "in" / "films" / "copy.mp4")
    for path in (str(uploaded), "in/films/copy.mp4", "./in/films/../films/copy.mp4"):
        answer = server.post("/api/jobs", data={"path": path, **FLAGS})
        assert answer.status_code == 202, answer.text
        assert answer.json()["id"] == job_id and answer.json()["status"] == "done"
    assert len(server.get("/api/jobs").json()) == 1
    assert max(stage_headers(job_dir(ws, job_id)).values()) == 1


def test_cancel_a_running_job_then_retry_it(served: dict) -> None:
    """The long film runs (its stages report progress in the job list); the tone, submitted meanwhile, waits for
    its turn and is cancelled there (it never runs); the long film is cancelled while it runs (stopped, its
    finished stages kept), then retried: it resumes and finishes."""
    server: Server = served["server"]
    ws = served["ws"]
    first = server.post("/api/jobs", data={"path": "in/films/long.mp4", **FLAGS})
    assert first.status_code == 202, first.text
    long_id = first.json()["id"]
    waiting = server.post("/api/jobs", data={"path": "in/films/tone.wav", **FLAGS})
    assert waiting.status_code == 202, waiting.text
    assert waiting.json()["status"] == "prepared" and waiting.json()["running_here"]
    tone_id = waiting.json()["id"]
    seen = None
    for _ in range(600):
        listed = {j["id"]: j for j in server.get("/api/jobs").json()}
        running = [s for s in listed[long_id]["stages"] if s["status"] == "running" and s["progress"]]
        if running:
            seen = running[0]
            break
        assert listed[long_id]["status"] in ("prepared", "running"), listed[long_id]
        threading.Event().wait(0.1)
    assert seen is not None, "no stage of the long film showed progress"
    assert seen["progress"]["total_s"] > 0 and 0 <= (seen["progress"]["fraction"] or 0) <= 1

    cancelled = server.post(f"/api/jobs/{tone_id}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    tone = server.wait_for(tone_id, ("stopped",), timeout_s=30)
    assert all(s["status"] == "pending" for s in tone["stages"])
    assert not (job_dir(ws, tone_id) / "logs").exists() or stage_headers(job_dir(ws, tone_id)) == {}

    assert server.post(f"/api/jobs/{long_id}/cancel").status_code == 200
    stopped = server.wait_for(long_id, ("stopped", "done", "failed"), timeout_s=120)
    assert stopped["status"] == "stopped", stopped
    statuses = {s["name"]: s["status"] for s in stopped["stages"]}
    assert "stopped" in statuses.values() and statuses["mux"] != "done"
    before = stage_headers(job_dir(ws, long_id))
    again = server.post(f"/api/jobs/{long_id}/cancel")
    assert again.status_code == 409 and "not running here" in again.json()["error"]
    assert server.get(f"/api/jobs/{long_id}/srt").status_code == 404

    retried = server.post(f"/api/jobs/{long_id}/retry")
    assert retried.status_code == 200 and retried.json()["id"] == long_id, retried.text
    done = server.wait_for(long_id, ("done", "failed", "stopped"))
    assert done["status"] == "done", done
    after = stage_headers(job_dir(ws, long_id))
    for stage, status in statuses.items():      # finished stages were kept, the others ran once more
        assert after[stage] == before.get(stage, 0) + (status != "done"), (stage, before, after)
    assert server.get(f"/api/jobs/{long_id}/srt").status_code == 200
    assert server.post(f"/api/jobs/{long_id}/retry").status_code == 409     # done: nothing to retry


def test_unknown_jobs_and_results_are_404_json(served: dict) -> None:
    server: Server = served["server"]
    for method, path in (("get", "/api/jobs/20990101-0001"), ("get", "/api/jobs/nope"),
                         ("get", "/api/jobs/20990101-0001/srt"), ("get", "/api/jobs/20990101-0001/logs/asr"),
                         ("post", "/api/jobs/20990101-0001/cancel"), ("post", "/api/jobs/20990101-0001/retry"),
                         ("get", f"/api/jobs/{served['short']}/wav"),
                         ("get", f"/api/jobs/{served['short']}/logs/nosuchstage"), ("get", "/api/nothing")):
        answer = getattr(server, method)(path)
        assert answer.status_code == 404, (path, answer.text)
        assert answer.headers["content-type"] == "application/json" and answer.json()["error"], path
    assert server.healthy()
