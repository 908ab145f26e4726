"""The whisper-asr-webservice API over the pipeline: ``POST /asr`` and ``POST /detect-language``, for the clients
that speak it (Bazarr's Whisper provider among them) to get the pipeline's subtitles, with speakers, unchanged.

The contract, as that project (onerahmet/openai-whisper-asr-webservice) defines it and its clients call it:

- ``POST /asr``: the media as a multipart field ``audio_file``; query parameters ``task`` (transcribe,
  translate), ``language`` (a Whisper language code; none: detect), ``output`` (txt by default, vtt, srt,
  tsv, json), ``encode`` (true by default: the upload is any media FFmpeg reads; false: raw 16-bit
  little-endian mono PCM at 16 kHz, which is what Bazarr sends), ``word_timestamps``, ``vad_filter``,
  ``initial_prompt``, ``diarize``, ``min_speakers``, ``max_speakers``. The answer is the transcript as
  ``text/plain`` with ``Asr-Engine`` and ``Content-Disposition: attachment; filename="<upload>.<output>"``.
- ``POST /detect-language``: ``audio_file`` and ``encode``; the answer is JSON ``detected_language`` (the
  language's name), ``language_code`` and ``confidence``, from the first 30 s.
- ``video_file`` (a path on the client's machine that Bazarr sends with "pass video name") names the job.

Each request is a job of the pipeline, run as any other (submit, then wait: the answer comes when the job is
done; the same media with the same settings is one job, run once). srt and vtt are the pipeline's own
subtitles; txt, tsv and json are built from the job's asr.json and diarization.json (compat_format.py).
``/detect-language`` runs a job on the first 30 s (decoded here with FFmpeg, or cut from the PCM) with the
language left to Whisper's detection, and answers with what asr.json records (``und`` when nobody speaks).
The parameters the pipeline has no setting for are accepted and listed in an ``Infra-Ignored`` header:
``initial_prompt``; ``vad_filter=false`` and ``diarize=false`` (the pipeline always finds speech first and
always labels speakers); ``min_speakers``, ``max_speakers``. ``Infra-Job`` names the job.

The Whisper model and the mode of these jobs: ``INFRA_SERVE_MODEL`` and ``INFRA_SERVE_MODE`` when set, else
the machine's recommendation, as for `infra run`. An English-only model (``*.en``) refuses another
language and translation. The routes ask for the service's token like the others, and also take it as the
password of HTTP Basic auth, which a client whose endpoint is ``http://user:TOKEN@host:9000`` sends.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import Annotated, Any, Literal
from urllib.parse import quote

import anyio
from fastapi import Depends, FastAPI, File, Query, Request, UploadFile
from fastapi.responses import JSONResponse, Response

from infra.errors import BadInputError, OperationError
from infra.serve.compat_format import (LANGUAGES, SAMPLE_BYTES, SAMPLE_RATE, PcmAsWav, built_output,
                                       looks_like_a_container)
from infra.serve.service import JobOptions, JobService, TooLargeError
from infra.spec.languages import english_only

ENGINE = "faster_whisper"          # what the pipeline's asr stage runs, in that API's words
MODEL_ENV = "INFRA_SERVE_MODEL"
MODE_ENV = "INFRA_SERVE_MODE"
DETECT_S = 30
WAIT_S = 24 * 3600.0
POLL_S = 0.05
THREADS = 64                       # requests waiting for their jobs at once (threads that mostly sleep)
CHUNK = 1 << 20
NAME_DROP = re.compile(r"[^A-Za-z0-9 ._+-]+")
SUBTITLE_FILES = {"srt": "subtitles.srt", "vtt": "subtitles.vtt"}
Task = Literal["transcribe", "translate"]
Output = Literal["txt", "vtt", "srt", "tsv", "json"]


@dataclass(frozen=True)
class Defaults:
    """What the routes' jobs use that the API cannot choose: None is the machine's recommendation."""

    model: str | None = None
    mode: str | None = None

    @property
    def english_only(self) -> bool:
        return bool(self.model and english_only(self.model))


@dataclass(frozen=True)
class AsrParams:
    task: str = "transcribe"
    language: str | None = None
    output: str = "txt"
    encode: bool = True
    word_timestamps: bool = False
    vad_filter: bool = False
    initial_prompt: str | None = None
    diarize: bool = False
    min_speakers: int | None = None
    max_speakers: int | None = None
    video_file: str | None = None


def defaults_from_env(environ: dict[str, str] | None = None) -> Defaults:
    """INFRA_SERVE_MODEL and INFRA_SERVE_MODE, checked as `infra run --model/--mode` would check them."""
    from infra.jobs.prepare import JobRequest, check_request

    env = os.environ if environ is None else environ
    model, mode = env.get(MODEL_ENV, "").strip() or None, env.get(MODE_ENV, "").strip() or None
    try:
        check_request(JobRequest(media=Path("."), mode=mode, whisper_model=model))
    except BadInputError as exc:
        raise BadInputError(f"{MODEL_ENV}/{MODE_ENV}: {exc.message}", exc.hint) from None
    return Defaults(model, mode)


def job_language(language: str | None, task: str, defaults: Defaults) -> str | None:
    """The request's language as the job's (None: detect), refused when Whisper or the model cannot do it."""
    code = (language or "").strip().lower() or None
    if code is not None and code not in LANGUAGES:
        raise BadInputError(f"language {language!r} is not a language Whisper knows",
                            hint="a code such as en, de, fr, hi (or none, to detect it)")
    if defaults.english_only and code not in (None, "en"):
        raise BadInputError(f"language {code}: the model {defaults.model} knows English only",
                            hint=f"set {MODEL_ENV} to a multilingual model for other languages")
    if defaults.english_only and task == "translate" and code != "en":
        raise BadInputError(f"task translate: the model {defaults.model} knows English only and cannot translate",
                            hint=f"set {MODEL_ENV} to a multilingual model")
    return code


def job_name(video_file: str | None, filename: str | None) -> str | None:
    """The job's name: the video's file name (Bazarr's video_file), else the upload's, made a valid job name."""
    for given in (video_file, filename):
        stem = PureWindowsPath(given or "").stem        # takes / and \ both as separators
        name = NAME_DROP.sub("_", stem).strip(" ._+-")[:80].rstrip(" ._+-")
        if name:
            return name
    return None


def job_options(params: AsrParams, defaults: Defaults, filename: str | None) -> JobOptions:
    return JobOptions(language=job_language(params.language, params.task, defaults), task=params.task,
                      model=defaults.model, mode=defaults.mode, name=job_name(params.video_file, filename))


def ignored(params: AsrParams, given: set[str]) -> list[str]:
    """The parameters the request set that the pipeline does not follow (see the module docstring)."""
    out = []
    if params.initial_prompt:
        out.append("initial_prompt")
    if "vad_filter" in given and not params.vad_filter:
        out.append("vad_filter")
    if "diarize" in given and not params.diarize:
        out.append("diarize")
    out += [name for name in ("min_speakers", "max_speakers") if getattr(params, name) is not None]
    return out


def answer_headers(filename: str | None, output: str, job_id: str, skipped: list[str]) -> dict[str, str]:
    headers = {"Asr-Engine": ENGINE, "Content-Disposition": f'attachment; filename="{quote(filename or "")}.{output}"',
               "Infra-Job": job_id}
    if skipped:
        headers["Infra-Ignored"] = ", ".join(skipped)
    return headers


# -- the work of a request, in a thread ---------------------------------------------------------------------
def remaining(stream: Any) -> int:
    """Bytes from where ``stream`` stands to its end (it stays where it was)."""
    here = stream.tell()
    end = stream.seek(0, os.SEEK_END)
    stream.seek(here)
    return end - here


def kept_pcm(service: JobService, upload: UploadFile, seconds: float | None) -> Path:
    """Raw PCM (encode=false) kept as a WAV upload, all of it or its first ``seconds``."""
    name = upload.filename or "audio_file"
    size = remaining(upload.file)
    if seconds is not None:
        size = min(size, int(seconds * SAMPLE_RATE) * SAMPLE_BYTES)
    head = upload.file.read(12)
    upload.file.seek(-len(head), os.SEEK_CUR)
    if size == 0:
        raise BadInputError(f"{name}: the upload is empty")
    if looks_like_a_container(head):
        raise BadInputError(f"{name}: encode=false takes raw PCM, but this is a media file",
                            hint="send it with encode=true")
    if size % SAMPLE_BYTES:
        raise BadInputError(f"{name}: encode=false takes 16-bit PCM, but {size} bytes are not whole samples")
    return service.save_upload(PcmAsWav(upload.file, size), f"{Path(name).stem or 'audio_file'}.wav")


def kept_start(service: JobService, upload: UploadFile, seconds: float) -> Path:
    """Media (encode=true) decoded by FFmpeg into a WAV of its first ``seconds``, kept as an upload."""
    name = upload.filename or "audio_file"
    folder = service.ws.root / "in" / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".detect-", dir=folder) as tmp:
        copy, start = Path(tmp) / "upload", Path(tmp) / "start.wav"
        with open(copy, "wb") as out:
            size = 0
            while chunk := upload.file.read(CHUNK):
                size += len(chunk)
                if size > service.max_upload_bytes:
                    raise TooLargeError(f"{name}: larger than the upload limit of {service.max_upload_bytes} bytes")
                out.write(chunk)
        if size == 0:
            raise BadInputError(f"{name}: the upload is empty")
        ffmpeg = shutil.which("ffmpeg")
        if ffmpeg is None:
            raise OperationError("ffmpeg not found on PATH: /detect-language needs it", hint="apt-get install ffmpeg")
        done = subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-y", "-i", str(copy), "-map", "0:a:0", "-t",
                               str(seconds), "-ac", "1", "-ar", str(SAMPLE_RATE), "-c:a", "pcm_s16le", str(start)],
                              capture_output=True, text=True, timeout=300)
        if done.returncode != 0 or not start.is_file():
            last = next((ln for ln in reversed(done.stderr.splitlines()) if ln.strip()), "")
            raise BadInputError(f"{name}: not media with an audio stream that FFmpeg can decode "
                                f"({last.replace(str(copy), name).strip()})")
        with open(start, "rb") as wav:
            return service.save_upload(wav, f"{Path(name).stem or 'audio_file'}.wav")


def done_job(service: JobService, film: Path, options: JobOptions) -> tuple[str, Path]:
    """Submit the film, wait for its job; its id and directory once it is done, or OperationError."""
    from infra.jobs.prepare import job_dir_of

    job_id = service.submit(film, options)
    view = service.wait(job_id, WAIT_S, poll_s=POLL_S)
    if view["status"] != "done":
        failed = next((s for s in view["stages"] if s.get("status") == "failed"), None)
        why = f"stage {failed['name']}: {failed.get('error') or 'failed'}" if failed else "it did not finish"
        raise OperationError(f"job {job_id} is {view['status']}: {why}", hint=f"GET /api/jobs/{job_id} shows it")
    return job_id, job_dir_of(service.ws, job_id)


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise OperationError(f"{path.name} of the job cannot be read ({exc})") from None
    return data if isinstance(data, dict) else {}


def transcript(service: JobService, upload: UploadFile, params: AsrParams, options: JobOptions) -> tuple[str, str]:
    """The job's id and its answer in ``params.output``."""
    service.check(options)                          # before anything is kept
    film = service.save_upload(upload.file, upload.filename or "audio_file") if params.encode else \
        kept_pcm(service, upload, None)
    job_id, job_dir = done_job(service, film, options)
    if params.output in SUBTITLE_FILES:
        return job_id, (job_dir / SUBTITLE_FILES[params.output]).read_text(encoding="utf-8")
    return job_id, built_output(params.output, read_json(job_dir / "asr.json"),
                                read_json(job_dir / "diarization.json"), params.word_timestamps)


def detected(service: JobService, upload: UploadFile, encode: bool, defaults: Defaults) -> tuple[str, dict[str, Any]]:
    """The job's id and the language Whisper hears in the first DETECT_S seconds."""
    options = JobOptions(language=None, model=defaults.model, mode=defaults.mode,
                         name=job_name(None, upload.filename))
    service.check(options)
    film = kept_start(service, upload, DETECT_S) if encode else kept_pcm(service, upload, DETECT_S)
    job_id, job_dir = done_job(service, film, options)
    asr = read_json(job_dir / "asr.json")
    code = asr.get("language")
    if not code:
        return job_id, {"detected_language": "undetermined", "language_code": "und", "confidence": 0.0}
    return job_id, {"detected_language": LANGUAGES.get(code, code), "language_code": code,
                    "confidence": float(asr.get("language_probability") or 0.0)}


# -- the routes ---------------------------------------------------------------------------------------------
def basic_or_bearer(app: FastAPI) -> list[Any]:
    """The app's token check, which also takes the token as the password of HTTP Basic auth."""
    check = app.state.guard[0].dependency

    def authorized(request: Request) -> None:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                password = base64.b64decode(value.strip(), validate=True).partition(b":")[2]
            except (binascii.Error, ValueError):
                password = b""
            headers = [(k, v) for k, v in request.scope["headers"] if k.lower() != b"authorization"]
            request = Request({**request.scope, "headers": [*headers, (b"authorization", b"Bearer " + password)]})
        check(request)
    return [Depends(authorized)]


def register(app: FastAPI, service: JobService) -> None:
    """Add POST /asr and POST /detect-language to ``app``."""
    defaults = defaults_from_env()
    try:
        service.check(JobOptions(model=defaults.model, mode=defaults.mode))     # the mode is one the spec defines
    except BadInputError as exc:
        raise BadInputError(f"{MODEL_ENV}/{MODE_ENV}: {exc.message}", exc.hint) from None
    guard = basic_or_bearer(app)
    limiter = anyio.CapacityLimiter(THREADS)
    tags: list[str | Any] = ["whisper-asr-webservice"]

    @app.post("/asr", dependencies=guard, tags=tags, response_class=Response)
    async def asr(request: Request, audio_file: Annotated[UploadFile, File()],
                  encode: bool = True, task: Task = "transcribe", language: str | None = None,
                  initial_prompt: str | None = None, vad_filter: bool = False, word_timestamps: bool = False,
                  diarize: bool = False, min_speakers: Annotated[int | None, Query(ge=1)] = None,
                  max_speakers: Annotated[int | None, Query(ge=1)] = None, output: Output = "txt",
                  video_file: str | None = None) -> Response:
        """Transcribe (or translate into English) an upload; the transcript with speakers, when the job is done."""
        params = AsrParams(task, language, output, encode, word_timestamps, vad_filter, initial_prompt, diarize,
                           min_speakers, max_speakers, video_file)
        options = job_options(params, defaults, audio_file.filename)
        job_id, text = await anyio.to_thread.run_sync(transcript, service, audio_file, params, options,
                                                      limiter=limiter)
        return Response(text, media_type="text/plain",
                        headers=answer_headers(audio_file.filename, output, job_id,
                                               ignored(params, set(request.query_params))))

    @app.post("/detect-language", dependencies=guard, tags=tags)
    async def detect_language(audio_file: Annotated[UploadFile, File()], encode: bool = True,
                              video_file: str | None = None) -> JSONResponse:
        """The language spoken in the first 30 s: its name, its code, Whisper's confidence."""
        job_id, answer = await anyio.to_thread.run_sync(detected, service, audio_file, encode, defaults,
                                                        limiter=limiter)
        return JSONResponse(answer, headers={"Infra-Job": job_id})
