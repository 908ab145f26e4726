"""The status page: ``GET /``, one HTML page over the JSON API, for following a season at a glance.

The server renders the whole page (Jinja2, autoescaped: file names, errors and logs are user input and
reach the page only as text): a row per job and a column per stage, each stage's progress and the
running stage's ETA, a failed stage's error with the tail of its log, links to the SRT, WebVTT and MP4,
and a form to submit a film (an upload, or a path inside the workspace). A little plain JavaScript in the
page (no build step, nothing loaded from elsewhere) then polls ``/api/jobs`` and redraws the rows with
DOM calls (text only, never HTML), submits the form, and fetches the log tails of failed stages.

With a token the page is opened as ``/?token=TOKEN``: the route asks for it like every API route, and the
script reads it from the address bar and sends it on (``Authorization`` header; ``?token=`` on download
links). The token is never written into the page. The response forbids every script but the page's own
(a nonce per response in a Content-Security-Policy) and sends no referrer.
"""

from __future__ import annotations

import secrets
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template

from infra.errors import InfraError
from infra.serve.service import RESULT_KINDS, JobService

TEMPLATES = Path(__file__).parent / "templates"
RESULT_LABELS = {"srt": "SRT", "vtt": "WebVTT", "mp4": "MP4"}
ACTIVE = ("queued", "running")      # and any job whose film this service runs (running_here)


@cache
def template() -> Template:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    return env.get_template("status.html")


def clock(seconds: float | None) -> str:
    """12 -> '0:12', 3725 -> '1:02:05'; '' when unknown."""
    if seconds is None:
        return ""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def columns(service: JobService, jobs: list[dict[str, Any]]) -> list[str]:
    """The spec's stages in its order, then any stage a job has that the spec no longer defines."""
    names = list(service.stack.spec.stages)
    for job in jobs:
        names += [s["name"] for s in job.get("stages", []) if s["name"] not in names]
    return names


def cell(stage: dict[str, Any] | None) -> dict[str, Any]:
    """What one stage shows: its status, and while it runs how far it is and its ETA."""
    if stage is None:
        return {"status": "", "text": "", "percent": None, "eta": ""}
    progress = stage.get("progress") or {}
    fraction = progress.get("fraction")
    percent = round(100 * fraction) if fraction is not None and stage.get("status") == "running" else None
    eta = clock(progress.get("eta_s")) if stage.get("status") == "running" else ""
    text = f"{percent}%" if percent is not None else str(stage.get("status") or "")
    return {"status": stage.get("status") or "", "text": text, "percent": percent, "eta": eta}


def row(job: dict[str, Any], names: list[str], tails: dict[str, str]) -> dict[str, Any]:
    """One job as the page shows it (the script builds the same from /api/jobs); ``tails``: failed stages' logs."""
    stages = {s["name"]: s for s in job.get("stages", [])}
    running = [s for s in stages.values()
               if s.get("status") == "running" and (s.get("progress") or {}).get("eta_s") is not None]
    return {"id": job.get("id") or "", "name": job.get("name") or "", "media": job.get("media") or "",
            "status": job.get("status") or "", "detail": job.get("detail") or "",
            "cells": [{"stage": name, **cell(stages.get(name))} for name in names],
            "eta": "; ".join(f"{s['name']} {clock(s['progress']['eta_s'])}" for s in running),
            "results": [{"kind": kind, "label": RESULT_LABELS[kind], "url": url}
                        for kind, url in (job.get("results") or {}).items() if kind in RESULT_KINDS],
            "failures": [{"stage": name, "error": s.get("error") or "", "log": tails.get(name, "")}
                         for name, s in stages.items() if s.get("status") == "failed"]}


def failed_tails(service: JobService, job: dict[str, Any]) -> dict[str, str]:
    tails = {}
    for stage in job.get("stages", []):
        if stage.get("status") == "failed":
            try:
                tails[stage["name"]] = service.log_tail(job["id"], stage["name"])
            except InfraError:              # the page still shows the error without its log
                tails[stage["name"]] = ""
    return tails


def security_headers(nonce: str) -> dict[str, str]:
    policy = (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; connect-src 'self'; "
              "img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
    return {"Content-Security-Policy": policy, "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store"}


def render(service: JobService, nonce: str) -> str:
    jobs = service.jobs()
    names = columns(service, jobs)
    active = any(job.get("status") in ACTIVE or job.get("running_here") for job in jobs)
    rows = [row(job, names, failed_tails(service, job)) for job in reversed(jobs)]      # newest first
    return template().render(project=service.stack.spec.project, stages=names, modes=list(service.stack.spec.modes),
                             rows=rows, active=active, nonce=nonce, max_upload=service.max_upload_bytes)


def register(app: FastAPI, service: JobService) -> None:
    """GET / (behind the app's token, like the API)."""

    @app.get("/", include_in_schema=False, dependencies=app.state.guard, response_class=HTMLResponse)
    def status_page() -> HTMLResponse:
        nonce = secrets.token_urlsafe(16)
        return HTMLResponse(render(service, nonce), headers=security_headers(nonce))
