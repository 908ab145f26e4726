"""Run the app with uvicorn: one access line per request, with the path but never the query (a ``?token=``
would otherwise reach the log)."""

from __future__ import annotations

import logging
import time

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from infra.errors import OperationError
from infra.serve.app import create_app
from infra.serve.service import JobService
from infra.serve.settings import ServeSettings
from infra.spec import Stack

log = logging.getLogger("infra.serve")


class AccessLog:
    """method, path (as sent, no query string), status, milliseconds."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [0]

        async def sending(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            log.info("%s %s %d %.0f ms", scope["method"], shown_path(scope), status[0],
                     (time.perf_counter() - start) * 1000)


def shown_path(scope: Scope) -> str:
    """The request's path as it came (still percent-encoded, so no control character reaches the log), never its
    query string."""
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if isinstance(raw, bytes) else scope["path"]
    return path.split("?", 1)[0].encode("ascii", "backslashreplace").decode("ascii")


def check_port(host: str, port: int) -> None:
    """One line, not uvicorn's log, when the address cannot be bound (the port is taken, the address is not
    this machine's)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]"), port))
        except OSError as exc:
            raise OperationError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                                 hint="--port chooses another port") from None


def run_server(stack: Stack, settings: ServeSettings) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    check_port(settings.host, settings.port)
    service = JobService(stack, settings.films_at_once, settings.max_upload_bytes, settings.stack_mode)
    app = create_app(service, settings.token)
    where = f"http://{settings.host}:{settings.port}/"
    log.info("infra serve: %s (workspace %s; %s)", where, stack.workdir,
             f"token from {settings.token_source}" if settings.token else "no token: loopback only")
    try:
        uvicorn.run(AccessLog(app), host=settings.host, port=settings.port, access_log=False, log_level="warning")
    finally:
        service.close()
