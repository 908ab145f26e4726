"""`infra serve` as a real process for the integration tests: uvicorn on a free port, in a subprocess, over a
workspace that can run jobs natively (the native environment linked in, a warm hardware cache, Whisper tiny.en
in $INFRA_CACHE)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from infra.hardware.cache import fingerprint, write_cache
from infra.hardware.snapshot import HardwareSnapshot
from tests.integration.conftest import free_port

FLAGS = {"model": "tiny.en", "language": "en", "mode": "native"}


def native_workspace(ws: Path, ml_env: Path, detected: HardwareSnapshot) -> Path:
    """A workspace with the built-in spec that runs jobs natively: .venv-ml linked, the hardware cache warm."""
    ws.mkdir(parents=True, exist_ok=True)
    (ws / ".venv-ml").symlink_to(ml_env)
    write_cache(ws / "out" / "hardware_cache.json", detected, fingerprint())
    return ws


@dataclass
class Server:
    """One `infra serve` process; ``stop`` ends it and returns what it printed."""

    ws: Path
    port: int
    proc: subprocess.Popen[str]
    token: str | None = None
    host: str = "127.0.0.1"
    output: str = ""
    session: requests.Session = field(default_factory=requests.Session)

    def __post_init__(self) -> None:
        self.session.trust_env = False        # no proxy from the environment between the tests and the service

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def headers(self, token: str | None = None) -> dict[str, str]:
        token = token or self.token
        return {"Authorization": f"Bearer {token}"} if token else {}

    def get(self, path: str, token: str | None = None, **kwargs: Any) -> requests.Response:
        headers = {**self.headers(token), **kwargs.pop("headers", {})}
        return self.session.get(self.url + path, headers=headers, timeout=60, **kwargs)

    def post(self, path: str, token: str | None = None, **kwargs: Any) -> requests.Response:
        headers = {**self.headers(token), **kwargs.pop("headers", {})}
        return self.session.post(self.url + path, headers=headers, timeout=120, **kwargs)

    def healthy(self) -> bool:
        try:
            return self.session.get(self.url + "/healthz", timeout=5).json() == {"status": "ok"}
        except (requests.RequestException, ValueError):
            return False

    def wait_for(self, job_id: str, statuses: tuple[str, ...], timeout_s: float = 240) -> dict[str, Any]:
        """The job once its status is one of ``statuses`` and no film of it runs here."""
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.get(f"/api/jobs/{job_id}").json()
            if job["status"] in statuses and not job["running_here"]:
                return job
            assert time.monotonic() < deadline, f"job {job_id} is still {job['status']}: {job}"
            time.sleep(0.25)

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.output = self.proc.communicate(timeout=90)[0]
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.output = self.proc.communicate()[0]
        self.session.close()
        return self.output


def serve_env(model_cache: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("INFRA_FILE", "INFRA_SERVE_TOKEN")}   # the built-in spec
    env["INFRA_CACHE"] = str(model_cache)
    env.update(extra)
    return env


def start_server(ws: Path, env: dict[str, str], *args: str, token: str | None = None,
                 host: str = "127.0.0.1") -> Server:
    """`infra serve --port FREE ARGS` in ``ws``; returns once /healthz answers on ``host``."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "infra", "serve", "--port", str(port), *args], cwd=ws, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    server = Server(ws, port, proc, token, host)
    deadline = time.monotonic() + 60
    while not server.healthy():
        if proc.poll() is not None or time.monotonic() > deadline:
            output = server.stop()
            pytest.fail(f"infra serve did not start: {output[-3000:]}")
        time.sleep(0.2)
    return server
