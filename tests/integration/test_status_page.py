"""The status page in a real browser: Debian's chromium, headless, driven by Playwright, against a real
`infra serve` (uvicorn on a free port, a token from the environment) over a native workspace with Whisper
tiny.en. One film is submitted through the page's form and runs the whole pipeline (a few seconds of
speech); the other test makes a failed job with the CLI, whose film's name is markup.

Chromium comes from scripts/setup.sh --test (Debian's package; Playwright's own browser download is not
used): without it these tests skip, except under CI=true, where that is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from infra.hardware.cache import fingerprint, write_cache
from tests.integration.conftest import free_port
from tests.integration.media_fixtures import detected, media  # noqa: F401

TOKEN = "status-page-token-test-only-93c2"
STAGES = ["demux", "vad", "asr", "diarize", "subtitles", "mux"]
RANK = {"pending": 0, "queued": 1, "running": 2, "done": 3}
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))   # no proxy from the environment
MARKUP_FILM = "<img src=x onerror=alert(1)>.mp4"      # markup that a file name can hold (no '/')
RECORDER = """() => {
  // Every state of every job row the page ever shows, in the order they appear.
  window.seenRows = []; const keys = new Set();
  const record = () => {
    for (const body of document.querySelectorAll("tbody[data-job]")) {
      const cells = [...body.querySelectorAll("td.stage")];
      const stages = Object.fromEntries(cells.map((td) => [td.dataset.stage, td.dataset.status]));
      const entry = { job: body.dataset.job, status: body.dataset.status, stages };
      const key = JSON.stringify(entry);
      if (!keys.has(key)) { keys.add(key); window.seenRows.push(entry); }
    }
  };
  new MutationObserver(record).observe(document.getElementById("jobs"),
                                      { childList: true, subtree: true, attributes: true });
  record();
}"""


def chromium_path() -> str:
    """Debian's chromium and the playwright package, or a skip (a failure under CI=true) that says what is missing."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        import playwright.sync_api  # noqa: F401
        missing = None if found else "chromium is not installed (Debian's package `chromium`)"
    except ImportError:
        missing = "the playwright package is not installed (the test extra)"
    if missing is None:
        return str(found)
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {missing}: run scripts/setup.sh --test")
    pytest.skip(f"{missing}: scripts/setup.sh --test installs it")


@dataclass
class Server:
    url: str
    ws: Path
    env: dict[str, str]

    def infra(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "infra", *args], cwd=self.ws, env=self.env, capture_output=True,
                              text=True, timeout=300)

    def get(self, path: str) -> tuple[int, str]:
        try:
            with DIRECT.open(self.url + path, timeout=30) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def healthy(self) -> bool:
        try:
            return self.get("/healthz")[0] == 200
        except OSError:                     # not listening yet (URLError is an OSError)
            return False


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, ml_env: Path, model_cache: Path, detected) -> Iterator[Server]:  # noqa: F811
    """`infra serve` on a free port, in a fresh workspace with the built-in spec and a token."""
    ws = tmp_path_factory.mktemp("served")
    (ws / ".venv-ml").symlink_to(ml_env)
    (ws / "in").mkdir()
    write_cache(ws / "out" / "hardware_cache.json", detected, fingerprint())
    env = {k: v for k, v in os.environ.items() if k != "INFRA_FILE"}
    env.update(INFRA_CACHE=str(model_cache), INFRA_SERVE_TOKEN=TOKEN)
    port = free_port()
    log = (ws / "serve.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "infra", "serve", "--port", str(port)], cwd=ws, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    running = Server(f"http://127.0.0.1:{port}", ws, env)
    try:
        deadline = time.monotonic() + 60
        while not running.healthy():
            assert proc.poll() is None, (ws / "serve.log").read_text()
            assert time.monotonic() < deadline, "infra serve did not answer /healthz within 60 s"
            time.sleep(0.2)
        yield running
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    assert TOKEN not in (ws / "serve.log").read_text()                # the token never reaches the log


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # straight to the service, whatever proxy the environment names; as root, only without the sandbox
        args = ["--no-proxy-server", *(["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])]
        launched = playwright.chromium.launch(executable_path=executable, headless=True, args=args)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any, server: Server) -> Iterator[Any]:
    """A fresh tab on /?token=TOKEN; dialogs (an alert() that ran) and script errors are collected."""
    context = browser.new_context(accept_downloads=True)
    tab = context.new_page()
    tab.dialogs, tab.errors = [], []
    tab.on("dialog", lambda dialog: (tab.dialogs.append(dialog.message), dialog.dismiss()))
    tab.on("pageerror", lambda error: tab.errors.append(str(error)))
    response = tab.goto(f"{server.url}/?token={TOKEN}")
    assert response.status == 200
    tab.evaluate(RECORDER)
    yield tab
    context.close()


def submit_message(page: Any) -> str:
    """Wait for the form's answer (a job, or an error) and return it."""
    page.wait_for_function("() => !document.querySelector('#submit-form button').disabled && "
                           "!document.getElementById('submit-message').textContent.endsWith('…')", timeout=120_000)
    return page.text_content("#submit-message")


def test_a_film_submitted_through_the_page_is_followed_to_done_and_its_srt_downloaded(
        page: Any, server: Server, media: dict) -> None:  # noqa: F811
    page.set_input_files("input[name=file]", str(media["speech"]))
    page.fill("input[name=language]", "en")
    page.fill("input[name=model]", "tiny.en")
    page.select_option("select[name=mode]", "native")
    page.click("#submit-form button")
    answer = submit_message(page)
    job_id = re.match(r"^job (\d{8}-\d{4}): ", answer).group(1)
    page.wait_for_selector(f'tbody[data-job="{job_id}"][data-status="done"]', timeout=300_000)

    # The row changed in place, without a reload, from not started through part of the way to done.
    seen = [entry for entry in page.evaluate("window.seenRows") if entry["job"] == job_id]
    assert seen[0]["status"] != "done" and seen[-1]["status"] == "done"
    assert seen[-1]["stages"] == {stage: "done" for stage in STAGES}
    assert any("done" in e["stages"].values() and set(e["stages"].values()) != {"done"} for e in seen), seen
    for stage in STAGES:                     # no stage ever goes back
        ranks = [RANK[e["stages"][stage]] for e in seen]
        assert ranks == sorted(ranks), (stage, seen)
    body = page.locator(f'tbody[data-job="{job_id}"]')
    assert body.locator("span.media").inner_text() == media["speech"].name
    assert body.locator("a.result").all_inner_texts() == ["SRT", "WebVTT", "MP4"]

    with page.expect_download() as download:
        body.locator('a.result[data-kind="srt"]').click()
    srt = Path(download.value.path()).read_text()
    assert download.value.suggested_filename == f"{job_id}.srt"
    job_dir = server.ws / (server.ws / "jobs" / job_id).read_text().strip()
    assert srt == (job_dir / "subtitles.srt").read_text()
    assert re.match(r"1\n00:00:\d\d,\d{3} --> 00:00:\d\d,\d{3}\n", srt), srt
    assert "short film" in srt.lower() and "pipeline" in srt.lower(), srt
    assert page.dialogs == [] and page.errors == []


def test_what_a_film_brings_is_shown_as_text_also_its_failure_and_log(
        page: Any, server: Server, media: dict) -> None:  # noqa: F811
    film = server.ws / "in" / MARKUP_FILM
    shutil.copy(media["speech"], film)
    prepared = server.infra("job", "prepare", str(film), "--mode", "native", "--model", "tiny.en", "--language", "en")
    assert prepared.returncode == 0, prepared.stderr
    job_id = re.match(r"(\d{8}-\d{4}) ", prepared.stdout).group(1)
    film.write_text("This is no longer a film.\n")             # its demux stage fails, naming the film
    failed = server.infra("job", "run", job_id)
    assert failed.returncode != 0 and "stage demux failed" in failed.stderr, failed.stderr

    # The open page finds the failed job by itself, with its error and the tail of its log.
    log = f'tbody[data-job="{job_id}"] tr.failure[data-stage="demux"] pre.log'
    page.wait_for_function(f"() => (document.querySelector('{log}') || {{}}).textContent", timeout=60_000)
    body = page.locator(f'tbody[data-job="{job_id}"]')
    assert body.get_attribute("data-status") == "failed"
    assert body.locator("span.media").inner_text() == MARKUP_FILM
    assert body.locator("tr.failure .error").inner_text().startswith(f"ffmpeg cannot decode {MARKUP_FILM}: ")
    assert f"demux: ffmpeg cannot decode {MARKUP_FILM}" in page.locator(log).inner_text()

    # The form's errors too: a path that names markup, an upload named <script>...
    page.fill("input[name=path]", "in/<img src=x onerror=alert(2)>.mkv")
    page.click("#submit-form button")
    assert submit_message(page) == "in/<img src=x onerror=alert(2)>.mkv: no such file in the workspace"
    page.fill("input[name=path]", "")
    page.set_input_files("input[name=file]", files=[{"name": "<script>alert(1)</script>.mp4", "mimeType": "video/mp4",
                                                     "buffer": b"This is not a film.\n"}])
    page.click("#submit-form button")
    refused = submit_message(page)            # the service names an upload by a safe name of its own
    assert page.get_attribute("#submit-message", "class") == "error" and "not a media file" in refused, refused

    assert page.locator("img").count() == 0 and page.evaluate("document.scripts.length") == 1
    assert page.dialogs == [] and page.errors == []
    # The page as the server renders it escapes the same; without the token there is no page, and the token
    # is never written into it.
    status, html = server.get(f"/?token={TOKEN}")
    assert status == 200 and "&lt;img src=x onerror=alert(1)&gt;.mp4" in html and "<img" not in html
    assert TOKEN not in html
    status, refusal = server.get("/")
    assert status == 401 and TOKEN not in refusal
