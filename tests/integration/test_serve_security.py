"""`infra serve`'s security against a real service process: where it binds, its token on every route, the
upload limit, uploads that are not media, paths and names that try to leave the workspace, and that the token
reaches no response and no log. No film runs here: each test proves that something is refused, that nothing
was written or read, and that the service is still up.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from infra.serve.app import create_app
from infra.serve.service import JobService
from infra.spec import load_stack
from tests.integration.conftest import free_port
from tests.integration.media_fixtures import detected, media  # noqa: F401
from tests.integration.serve_process import FLAGS, Server, native_workspace, serve_env, start_server

LIMIT = 1 << 20             # --max-upload 1M


def network_address() -> str:
    """One of this machine's addresses that is not loopback."""
    found = subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()
    ipv4 = [a for a in found if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", a) and not a.startswith("127.")]
    if not ipv4:
        pytest.skip("this machine has no network address but loopback")
    return ipv4[0]


def files_of(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` (links not followed) with its size and mtime: what 'nothing written' compares."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            st = os.lstat(os.path.join(folder, name))
            found[os.path.relpath(os.path.join(folder, name), root)] = (st.st_size, st.st_mtime_ns)
    return found


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory, ml_env: Path, model_cache: Path, detected,  # noqa: F811
            media) -> Iterator[dict[str, Any]]:  # noqa: F811
    """A service with a token from the workspace's secrets file and a 1 MiB upload limit, over a workspace
    that holds one prepared job and links that lead out of it; beside it, outside, a film and a secret."""
    base = tmp_path_factory.mktemp("serve-sec")
    ws = native_workspace(base / "ws", ml_env, detected)
    token = "tk-" + secrets.token_hex(20)
    (ws / "config").mkdir()
    (ws / "config" / "secrets.json").write_text(json.dumps({"INFRA_SERVE_TOKEN": token}))
    shutil.copy(media["speech"], base / "outside.mp4")
    (base / "secret.txt").write_text("root:x:0:0 not for the service\n")
    (ws / "in" / "films").mkdir(parents=True)
    shutil.copy(media["tone"], ws / "in" / "films" / "tone.wav")
    (ws / "in" / "link.mp4").symlink_to(base / "outside.mp4")
    (ws / "in" / "up").symlink_to(base, target_is_directory=True)
    env = serve_env(model_cache)
    prepared = subprocess.run([sys.executable, "-m", "infra", "job", "prepare", "in/films/tone.wav", "--mode", "native",
                               "--model", "tiny.en", "--language", "en"], cwd=ws, env=env, capture_output=True,
                              text=True, timeout=120)
    assert prepared.returncode == 0, prepared.stdout + prepared.stderr
    job_id = re.search(r"\d{8}-\d{4}", prepared.stdout).group(0)
    server = start_server(ws, env, "--max-upload", "1M", token=token)
    seen: list[str] = []                  # every response: status line, headers, body
    server.session.hooks["response"].append(
        lambda r, *a, **k: seen.append(f"{r.status_code} {dict(r.headers)} {r.content.decode('latin-1')}"))
    yield {"server": server, "ws": ws, "base": base, "token": token, "job": job_id, "seen": seen, "media": media}
    server.stop()


def refused(server: Server, answer: requests.Response | tuple[int, dict[str, str], bytes], *codes: int) -> dict:
    """The answer is one of ``codes`` with a JSON error body, and the service still answers /healthz."""
    status, headers, body = (answer.status_code, dict(answer.headers), answer.content) \
        if isinstance(answer, requests.Response) else answer
    assert status in codes, (status, body[:300])
    assert headers.get("content-type", headers.get("Content-Type")) == "application/json", headers
    error = json.loads(body)
    assert isinstance(error["error"], str) and error["error"]
    assert server.healthy()
    return error


def raw(state: dict, method: str, path: str, token: str | None = None) -> tuple[int, dict[str, str], bytes]:
    """A request whose path goes out byte for byte (no client normalizes its ../ or %2e)."""
    server: Server = state["server"]
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request(method, path, headers={"Authorization": f"Bearer {token or state['token']}"})
        response = conn.getresponse()
        answer = (response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()
    state["seen"].append(f"{answer[0]} {answer[1]} {answer[2].decode('latin-1')}")
    return answer


def test_it_binds_to_loopback_unless_told(tmp_path: Path, model_cache: Path) -> None:
    address = network_address()
    server = start_server(tmp_path, serve_env(model_cache))
    try:
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://{address}:{server.port}/healthz", timeout=5)
        assert server.get("/api/jobs").json() == []               # loopback, no token asked
    finally:
        output = server.stop()
    assert f"infra serve: http://127.0.0.1:{server.port}/ " in output and "no token: loopback only" in output


def test_a_network_address_without_a_token_is_refused_in_one_line(tmp_path: Path, model_cache: Path) -> None:
    for host in ("0.0.0.0", "::", network_address()):
        port = free_port()
        result = subprocess.run([sys.executable, "-m", "infra", "serve", "--host", host, "--port", str(port)],
                                cwd=tmp_path, env=serve_env(model_cache), capture_output=True, text=True, timeout=60)
        assert result.returncode == 2 and result.stdout == "", result.stdout + result.stderr
        assert result.stderr.splitlines() == [
            f"error: --host {host} serves the network, so a token is required",
            "hint: set INFRA_SERVE_TOKEN in the environment or in config/secrets.json"]
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)


def test_a_network_address_with_a_token_from_the_environment(tmp_path: Path, model_cache: Path) -> None:
    address = network_address()
    token = "env-" + secrets.token_hex(16)
    server = start_server(tmp_path, serve_env(model_cache, INFRA_SERVE_TOKEN=token), "--host", "0.0.0.0",
                          token=token)
    try:
        outside = f"http://{address}:{server.port}"
        assert requests.get(outside + "/healthz", timeout=5).json() == {"status": "ok"}
        assert requests.get(outside + "/api/jobs", timeout=5).status_code == 401
        wrong = requests.get(outside + "/api/jobs", headers={"Authorization": "Bearer nope"}, timeout=5)
        assert wrong.status_code == 401
        answer = requests.get(outside + "/api/jobs", headers={"Authorization": f"Bearer {token}"}, timeout=5)
        assert answer.status_code == 200 and answer.json() == [] and token not in answer.text
    finally:
        output = server.stop()
    assert "token from environment variable INFRA_SERVE_TOKEN" in output and token not in output


def fill(route: str, job_id: str) -> str:
    """A route's path with its parameters filled in: the job id, a result kind, a stage, else 'x'."""
    values = {"job_id": job_id, "kind": "srt", "stage": "asr"}
    return re.sub(r"\{(\w+)(:\w+)?\}", lambda m: values.get(m.group(1), "x"), route)


def test_every_route_but_healthz_asks_for_the_token(guarded: dict) -> None:
    """Every route the app has (its own and those other modules register), every method: no token, a wrong one
    (header or query) is 401 with a JSON body; the right one (header or query) gets past the check."""
    server: Server = guarded["server"]
    service = JobService(load_stack(None, cwd=guarded["ws"]))
    try:
        app = create_app(service, guarded["token"])
    finally:
        service.close()
    routes = [(method, route.path) for route in app.routes
              for method in sorted(getattr(route, "methods", None) or ()) if method != "HEAD"]
    assert ("GET", "/openapi.json") in routes and ("POST", "/api/jobs") in routes
    assert ("GET", "/healthz") in routes
    wrong = "tk-" + secrets.token_hex(20)
    for method, route in routes:
        if route == "/healthz":
            continue
        # The prepared job when the token is refused; an unknown one with the right token, so that nothing runs.
        path = fill(route, guarded["job"])
        for headers, query in (({}, ""), ({"Authorization": f"Bearer {wrong}"}, ""), ({}, f"?token={wrong}"),
                               ({"Authorization": f"Basic {guarded['token']}"}, ""),
                               ({"Authorization": f"Bearer {guarded['token']}x"}, "")):
            answer = server.session.request(method, server.url + path + query, headers=headers, timeout=30)
            error = refused(server, answer, 401)
            assert "token" in error["error"] and answer.headers["www-authenticate"] == "Bearer", (method, path)
        right, path = guarded["token"], fill(route, "20990101-0001")
        for headers, query in (({"Authorization": f"Bearer {right}"}, ""), ({}, f"?token={right}")):
            answer = server.session.request(method, server.url + path + query, headers=headers, timeout=30)
            assert answer.status_code != 401 and answer.status_code < 500, (method, path, answer.text[:300])
    assert requests.get(server.url + "/healthz", timeout=5).status_code == 200


def test_uploads_over_the_limit_are_413_and_leave_nothing(guarded: dict) -> None:
    """Over the limit by a little (the route counts the file), by a lot with a Content-Length (refused before
    the body is read), and by a lot in chunks with no length (counted as it comes)."""
    server: Server = guarded["server"]
    ws = guarded["ws"]
    before = files_of(ws)
    speech = guarded["media"]["speech"].read_bytes()
    for size, said in ((LIMIT + 10, "big.mp4: larger than"), (3 * LIMIT, "the request is larger than")):
        body = (speech * (size // len(speech) + 1))[:size]
        answer = server.post("/api/jobs", files={"file": ("big.mp4", body, "video/mp4")}, data=FLAGS)
        assert refused(server, answer, 413)["error"] == f"{said} the upload limit of 1048576 bytes"
    boundary = "b-" + secrets.token_hex(8)
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.mp4\"\r\n"
            "Content-Type: video/mp4\r\n\r\n").encode()

    def chunks() -> Iterator[bytes]:
        yield head
        for _ in range(48):
            yield b"\0" * (64 << 10)
        yield f"\r\n--{boundary}--\r\n".encode()

    answer = server.post("/api/jobs", data=chunks(),
                         headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert answer.request.headers.get("Transfer-Encoding") == "chunked"
    assert refused(server, answer, 413)["error"] == "the request is larger than the upload limit of 1048576 bytes"
    assert files_of(ws) == before


def test_uploads_that_are_not_media_are_400_and_leave_nothing(guarded: dict) -> None:
    server: Server = guarded["server"]
    ws = guarded["ws"]
    before = files_of(ws)
    for name, body in (("notes.mp4", guarded["media"]["notes"].read_bytes()), ("empty.mp4", b""),
                       ("noise.mkv", secrets.token_bytes(50_000)), ("page.html", b"<html><body>hi</body></html>")):
        answer = server.post("/api/jobs", files={"file": (name, body, "video/mp4")}, data=FLAGS)
        assert name in refused(server, answer, 400)["error"]
    # Good media with a bad option is refused before the upload is kept.
    for bad in ({"task": "dance"}, {"language": "english!"}, {"model": "../../etc"}, {"mode": "mainframe"},
                {"name": "../../x"}):
        with guarded["media"]["speech"].open("rb") as film:
            answer = server.post("/api/jobs", files={"file": ("speech.mp4", film, "video/mp4")}, data={**FLAGS, **bad})
        refused(server, answer, 400)
    # Neither a file nor a path, or both.
    refused(server, server.post("/api/jobs", data=FLAGS), 400)
    with guarded["media"]["speech"].open("rb") as film:
        refused(server, server.post("/api/jobs", files={"file": ("s.mp4", film)}, data={"path": "in/films/tone.wav"}),
                400)
    assert files_of(ws) == before
    assert [j["id"] for j in server.get("/api/jobs").json()] == [guarded["job"]]


def test_paths_outside_the_workspace_are_refused_and_not_read(guarded: dict) -> None:
    """Every way out of the workspace a path can take, and the secrets file inside it: refused with a 4xx, no
    job made, and the files they point at never opened (their access time stays where the test set it)."""
    server: Server = guarded["server"]
    ws, base = guarded["ws"], guarded["base"]
    targets = [base / "outside.mp4", base / "secret.txt", ws / "config" / "secrets.json"]
    for target in targets:
        os.utime(target, (1, time.time()))
    before = files_of(ws)
    outside = str(base / "outside.mp4")
    for path in ("../outside.mp4", outside, "in/../../outside.mp4", f"{ws}/../outside.mp4", "in/link.mp4",
                 "in/up/outside.mp4", "in/up/secret.txt", "./in/up/ws/../outside.mp4", "/etc/passwd",
                 "/proc/self/environ", "%2e%2e/outside.mp4", "..%2Foutside.mp4", "....//outside.mp4",
                 "..\\outside.mp4", "~/outside.mp4", f"file://{outside}", "config/secrets.json",
                 "config/../config/secrets.json", "", ".", "in", "/", "a\0b", "x" * 5000, "in/films/tone.wav/.."):
        answer = server.post("/api/jobs", data={"path": path, **FLAGS})
        error = refused(server, answer, 400, 404)
        assert "root:x" not in answer.text and guarded["token"] not in answer.text, path
        assert error["error"].endswith(("not inside the workspace", "no such file in the workspace",
                                        "not a path to a file in the workspace", "one of them")), (path, error)
    assert [os.stat(t).st_atime for t in targets] == [1, 1, 1]
    assert files_of(ws) == before
    assert [j["id"] for j in server.get("/api/jobs").json()] == [guarded["job"]]


def test_job_ids_results_and_log_names_cannot_walk_out(guarded: dict) -> None:
    """Paths sent byte for byte: dot segments, encoded slashes and dots, NUL bytes, in the job id, the result
    kind and the log's stage name; nothing answers with a file."""
    server: Server = guarded["server"]
    job = guarded["job"]
    job_json = (guarded["ws"] / (guarded["ws"] / "jobs" / job).read_text().strip() / "job.json").read_text()
    paths = ["/api/jobs/../../etc/passwd", "/api/jobs/..%2F..%2Fetc%2Fpasswd", "/api/jobs/%2e%2e", "/api/jobs/..",
             "/api/jobs/%2e%2e/srt", "/api/jobs/..%2F..%2Fx", "/api/jobs/..%5C..%5Cjob.json", "/api/jobs/%00",
             f"/api/jobs/{job}/..%2Fjob.json", f"/api/jobs/{job}/%2e%2e%2fjob.json", f"/api/jobs/{job}/..",
             f"/api/jobs/{job}/%2e%2e", f"/api/jobs/{job}/job.json", f"/api/jobs/{job}/srt%00.json",
             f"/api/jobs/{job}/logs/..%2F..%2Fjob.json", f"/api/jobs/{job}/logs/..%2Fjob", f"/api/jobs/{job}/logs/..",
             f"/api/jobs/{job}/logs/%2e%2e%2fjob", f"/api/jobs/{job}/logs/asr%00", f"/api/jobs/{job}/logs/job.json",
             f"/api/jobs/{job}%2F..%2F..%2Fjob.json/srt", f"/api/jobs/{job}%2F..", f"/api/jobs/../jobs/{job}/job.json",
             "/api/jobs/20261202-0001%2F..%2F..%2F..%2Fconfig%2Fsecrets.json", f"/api/jobs/{job}/logs/../../job.json"]
    for path in paths:
        for method in ("GET", "POST"):
            answer = raw(guarded, method, path)
            refused(server, answer, 400, 404, 405)
            body = answer[2].decode("latin-1")
            assert "root:x" not in body and '"stages"' not in body and job_json[:200] not in body, path
    for path in ("/api/jobs/../../x/cancel", f"/api/jobs/{job}/../../../x/retry", "/api/jobs/..%2F..%2Fx/cancel"):
        refused(server, raw(guarded, "POST", path), 404, 405)
    assert raw(guarded, "GET", f"/api/jobs/{job}")[0] == 200          # the real one is there


def test_the_token_is_in_no_response_and_no_log(guarded: dict) -> None:
    """Runs last: a request with the right token in the query, then the service is stopped; neither any response
    this module saw nor anything the service printed (the access log included) holds the token."""
    server: Server = guarded["server"]
    token = guarded["token"]
    assert server.session.get(f"{server.url}/api/jobs?token={token}", timeout=30).status_code == 200
    assert server.session.get(f"{server.url}/api/jobs/{guarded['job']}?token={token}", timeout=30).status_code == 200
    assert len(guarded["seen"]) > 100
    assert not [s for s in guarded["seen"] if token in s]
    output = server.stop()
    assert f"GET /api/jobs/{guarded['job']} 200" in output and "POST /api/jobs 413" in output
    assert "token from config/secrets.json (INFRA_SERVE_TOKEN)" in output
    assert token not in output and "token=" not in output
    assert "Traceback" not in output
