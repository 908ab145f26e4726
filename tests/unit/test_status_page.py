"""The status page (infra/serve/page.py) over a real JobService on a copy of the default spec, through
starlette's TestClient: its token, its headers, and what it renders. The page in a browser, with a real
job, is tests/integration/test_status_page.py."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from infra.serve.app import create_app
from infra.serve.page import clock, row, template
from infra.serve.service import JobService
from infra.spec import load_stack

TOKEN = "page-token-test-only-6f1d"
MARKUP = "<script>alert(1)</script>"


@pytest.fixture
def service(project: Path) -> Iterator[JobService]:
    running = JobService(load_stack(project / "infra.yaml"))
    yield running
    running.close()


@pytest.fixture
def client(service: JobService) -> TestClient:
    return TestClient(create_app(service, TOKEN))


def test_the_page_asks_for_the_token_and_never_writes_it_into_the_page(client: TestClient) -> None:
    for headers, url in (({}, "/"), ({}, "/?token=wrong"), ({"Authorization": "Bearer wrong"}, "/")):
        refused = client.get(url, headers=headers)
        assert refused.status_code == 401, url
        assert refused.headers["content-type"] == "application/json" and TOKEN not in refused.text
        assert "token" in refused.json()["error"]
    for headers, url in (({}, f"/?token={TOKEN}"), ({"Authorization": f"Bearer {TOKEN}"}, "/")):
        page = client.get(url, headers=headers)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert TOKEN not in page.text and "<h1>speech</h1>" in page.text


def test_without_a_token_the_page_is_open(service: JobService) -> None:
    page = TestClient(create_app(service, None)).get("/")
    assert page.status_code == 200 and "<form id=\"submit-form\"" in page.text


def test_only_the_pages_own_script_and_style_may_run(client: TestClient) -> None:
    first, second = (client.get("/", headers={"Authorization": f"Bearer {TOKEN}"}) for _ in range(2))
    policy = first.headers["content-security-policy"]
    nonce = re.search(r"script-src 'nonce-([^']+)'", policy).group(1)
    assert f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; connect-src 'self'" in policy
    assert re.findall(r"<script[^>]*>", first.text) == [f'<script nonce="{nonce}">']
    assert re.findall(r"<style[^>]*>", first.text) == [f'<style nonce="{nonce}">']
    assert nonce not in second.headers["content-security-policy"]          # one per response
    assert first.headers["referrer-policy"] == "no-referrer" and first.headers["cache-control"] == "no-store"
    assert not re.search(r"(src|href)=\"(https?:)?//", first.text)           # nothing loaded from elsewhere


def test_an_empty_workspace_shows_the_form_and_a_column_per_stage(client: TestClient) -> None:
    text = client.get("/", headers={"Authorization": f"Bearer {TOKEN}"}).text
    assert re.findall(r'<th data-stage="([^"]+)">', text) == ["demux", "vad", "asr", "diarize", "subtitles", "mux"]
    assert '<p id="empty">No jobs in this workspace yet.</p>' in text
    assert re.findall(r'<option value="([^"]*)">', text) == \
        ["transcribe", "translate", "", "native", "docker-cpu", "docker-gpu"]
    assert "data-max-upload=\"17179869184\"" in text and 'name="file"' in text and 'name="path"' in text


def job(status: str, stages: list[dict], **extra: object) -> dict:
    return {"id": "20261202-0007", "status": status, "name": None, "media": f"{MARKUP}.mp4", "stages": stages,
            "results": {}, **extra}


def test_what_a_job_brings_is_rendered_as_text() -> None:
    failed = job("failed", [{"name": "demux", "status": "failed", "error": f"ffmpeg cannot decode {MARKUP}.mp4"},
                            {"name": "vad", "status": "pending"}])
    html = template().render(project="speech", stages=["demux", "vad"], modes=["native"], active=False, nonce="n0",
                             max_upload=1, rows=[row(failed, ["demux", "vad"], {"demux": f"{MARKUP}\n<b>log</b>"})])
    assert MARKUP not in html and "<b>log</b>" not in html
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert f'<span class="media">{escaped}.mp4</span>' in html
    assert f'<span class="error">ffmpeg cannot decode {escaped}.mp4</span>' in html
    assert f'<pre class="log">{escaped}\n&lt;b&gt;log&lt;/b&gt;</pre>' in html
    assert html.count("<script") == 1


def test_a_running_stage_shows_its_progress_and_eta_and_a_done_job_its_results() -> None:
    running = job("running", [{"name": "demux", "status": "done"},
                              {"name": "asr", "status": "running",
                               "progress": {"done_s": 30, "total_s": 120, "eta_s": 95.4, "fraction": 0.25}}])
    shown = row(running, ["demux", "vad", "asr"], {})
    assert [c["text"] for c in shown["cells"]] == ["done", "", "25%"]
    assert shown["cells"][2] == {"stage": "asr", "status": "running", "text": "25%", "percent": 25, "eta": "1:35"}
    assert shown["eta"] == "asr 1:35" and shown["failures"] == []
    done = job("done", [{"name": "asr", "status": "done"}],
               results={"srt": "/api/jobs/20261202-0007/srt", "mp4": "/api/jobs/20261202-0007/mp4"})
    assert [(r["label"], r["url"]) for r in row(done, ["asr"], {})["results"]] == \
        [("SRT", "/api/jobs/20261202-0007/srt"), ("MP4", "/api/jobs/20261202-0007/mp4")]


def test_clock() -> None:
    assert [clock(s) for s in (None, 0, 12.4, 95.5, 3725)] == ["", "0:00", "0:12", "1:36", "1:02:05"]
