"""The ASGI app: the JSON API over :class:`~infra.serve.service.JobService`, its errors, and its token.

Routes (the OpenAPI schema is at /openapi.json):

- ``POST /api/jobs``: a film, as a multipart upload (``file``) or a path inside the workspace (``path``),
  with ``language``, ``task``, ``model``, ``mode``, ``name``; answers 202 with the job.
- ``GET /api/jobs``, ``GET /api/jobs/{id}``: jobs with each stage's status and progress.
- ``GET /api/jobs/{id}/srt|vtt|mp4``: the results; ``GET /api/jobs/{id}/logs/{stage}``: a log's tail.
- ``POST /api/jobs/{id}/cancel``, ``POST /api/jobs/{id}/retry``.
- ``GET /healthz``: unauthenticated, for health checks.

Every error is a JSON body ``{"error": "...", "hint": "..."}`` with a 4xx code (400 bad input, 401 token,
404 unknown (routes too), 405 method, 409 conflict, 413 too large) or 500, and the service stays up. A body
over the upload limit is refused before a route reads it (infra/serve/limits.py). With a token set, every
route but /healthz asks for it, /openapi.json included (``Authorization: Bearer TOKEN``, or ``?token=`` for
links a browser follows); it is compared in constant time and never logged or echoed.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from infra.errors import BadInputError, InfraError
from infra.serve import compat, page
from infra.serve.limits import BodyLimit
from infra.serve.service import ConflictError, JobOptions, JobService, NotFoundError, TooLargeError

MEDIA_TYPES = {"srt": "application/x-subrip", "vtt": "text/vtt", "mp4": "video/mp4"}


def status_of(exc: InfraError) -> int:
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, TooLargeError):
        return 413
    if isinstance(exc, ConflictError):
        return 409
    if isinstance(exc, BadInputError):
        return 400
    return 500


def error_body(message: str, hint: str | None = None) -> dict[str, str]:
    return {"error": message, **({"hint": hint} if hint else {})}


def create_app(service: JobService, token: str | None = None) -> FastAPI:
    """The app for one workspace's service; ``token`` None means no token (a loopback bind only)."""
    app = FastAPI(title="infra", summary="Films in, subtitles out: the speech pipeline over HTTP.",
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = service
    app.add_middleware(BodyLimit, upload_limit=service.max_upload_bytes)

    @app.exception_handler(InfraError)
    async def infra_error(request: Request, exc: InfraError) -> JSONResponse:
        return JSONResponse(error_body(exc.message, exc.hint), status_code=status_of(exc))

    @app.exception_handler(StarletteHTTPException)        # FastAPI's own, and the router's 404 and 405
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(error_body(str(exc.detail)), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def broken(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(error_body("the service failed on this request", "its log says why"), status_code=500)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query"))
        return JSONResponse(error_body(f"{where}: {first.get('msg', 'invalid')}".strip(": ")), status_code=400)

    def authorized(request: Request) -> None:
        if token is None:
            return
        given = request.headers.get("authorization", "")
        value = given[7:] if given.lower().startswith("bearer ") else request.query_params.get("token", "")
        if not value or not hmac.compare_digest(value.encode(), token.encode()):
            raise HTTPException(401, "a valid token is required (Authorization: Bearer TOKEN)",
                                headers={"WWW-Authenticate": "Bearer"})

    guard = [Depends(authorized)]
    app.state.guard = guard          # other route modules (compat, page) protect their routes with it

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/openapi.json", include_in_schema=False, dependencies=guard)
    def openapi() -> dict[str, Any]:
        return app.openapi()

    @app.post("/api/jobs", status_code=202, dependencies=guard)
    def submit(file: Annotated[UploadFile | None, File()] = None, path: Annotated[str | None, Form()] = None,
               language: Annotated[str | None, Form()] = None, task: Annotated[str, Form()] = "transcribe",
               model: Annotated[str | None, Form()] = None, mode: Annotated[str | None, Form()] = None,
               name: Annotated[str | None, Form()] = None) -> dict[str, Any]:
        """Submit a film: upload it (``file``) or name a file inside the workspace (``path``)."""
        if (file is None) == (path is None):
            raise BadInputError("give a file (multipart upload) or a path inside the workspace, one of them")
        options = JobOptions(language=language or None, task=task, model=model or None, mode=mode or None,
                             name=name or None)
        service.check(options)                 # bad options keep the upload out of the workspace
        film = service.confined(path) if path is not None else service.save_upload(file.file, file.filename or "")
        job_id = service.submit(film, options)
        return service.job(job_id)

    @app.get("/api/jobs", dependencies=guard)
    def jobs() -> list[dict[str, Any]]:
        return service.jobs()

    @app.get("/api/jobs/{job_id}", dependencies=guard)
    def job(job_id: str) -> dict[str, Any]:
        return service.job(job_id)

    @app.get("/api/jobs/{job_id}/logs/{stage}", dependencies=guard, response_class=PlainTextResponse)
    def log(job_id: str, stage: str) -> str:
        return service.log_tail(job_id, stage)

    @app.get("/api/jobs/{job_id}/{kind}", dependencies=guard, response_class=FileResponse)
    def result(job_id: str, kind: str) -> FileResponse:
        path = service.result(job_id, kind)
        return FileResponse(path, media_type=MEDIA_TYPES[kind], filename=f"{job_id}.{kind}")

    @app.post("/api/jobs/{job_id}/cancel", dependencies=guard)
    def cancel(job_id: str) -> dict[str, Any]:
        return service.cancel(job_id)

    @app.post("/api/jobs/{job_id}/retry", dependencies=guard)
    def retry(job_id: str) -> dict[str, Any]:
        return service.retry(job_id)

    page.register(app, service)
    compat.register(app, service)
    return app
