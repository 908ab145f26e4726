"""Jobs: ids, job directories and job.json.

A job lives in ``out/YYYY/MM/DD/<user>/<job-id>/`` under the workspace. Its id,
``YYYYMMDD-NNNN``, is claimed by creating ``jobs/<job-id>`` with O_EXCL, so any
number of prepares running at once get distinct ids; the claim file holds the
job directory's path, which is how ``job show`` finds a job again. job.json is
written atomically. Every check of the input runs before anything is created,
and a failure after that removes what was made: bad input leaves nothing behind.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infra.jobproto import JOB_FILE, SCHEMA as JOB_SCHEMA, write_json_atomic
from infra.errors import BadInputError, OperationError
from infra.workspace import Workspace

if TYPE_CHECKING:
    from infra.spec import Stack
    from infra.hardware.cache import HardwareState
    from infra.jobs.media import MediaProbe

JOB_ID_RE = re.compile(r"^[0-9]{8}-[0-9]{4}$")
MAX_JOBS_PER_DAY = 9999
USER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,31}$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._+-]{0,79}$")
AUDIO_TAG_RE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8}){0,3}$")
# The stage each workflow must reach; the plan is that stage and everything it waits for.
WORKFLOW_TARGETS = {"transcribe": "asr", "subtitles": "mux"}
SPAN_S = 300        # seconds of media per checkpoint of asr and diarize: a kill costs at most one span


@dataclass(frozen=True)
class JobRequest:
    media: Path
    start: str | None = None
    end: str | None = None
    workflow: str = "subtitles"
    mode: str | None = None
    language: str | None = None
    name: str | None = None
    user: str | None = None
    whisper_model: str | None = None     # None: the recommendation's
    task: str = "transcribe"             # or translate (into English)
    audio_track: int | None = None       # 0-based among the audio streams; None: by language, else the first
    audio_language: str | None = None    # a stream's language tag as ffprobe reports it, e.g. hin
    allow_cpu_fallback: bool = False     # a GPU stage that cannot use its GPU runs on the CPU (recorded), not fails


@dataclass(frozen=True)
class PreparedJob:
    job_id: str
    path: Path
    data: dict[str, Any]


def _plain(value: str, what: str, pattern: re.Pattern[str], rule: str) -> str:
    if "/" in value or "\\" in value or ".." in value or not pattern.match(value):
        raise BadInputError(f"{what} {value!r} is not allowed ({rule}; no path separators or '..')")
    return value


def check_user(user: str | None) -> str:
    if user is None:
        user = getpass.getuser()
        if not USER_RE.match(user):
            raise BadInputError(f"the login name {user!r} cannot name a folder", hint="give one with --user")
    return _plain(user, "user id", USER_RE, "letters, digits, '.', '_' and '-', at most 32")


def check_name(name: str | None) -> str | None:
    if name is None:
        return None
    return _plain(name, "job name", NAME_RE, "letters, digits, spaces, '.', '_', '+' and '-', at most 80")


def check_job_id(job_id: str) -> str:
    if not JOB_ID_RE.match(job_id):
        raise BadInputError(f"{job_id!r} is not a job id (YYYYMMDD-NNNN, e.g. 20260101-0001)",
                            hint="`infra job list` shows the jobs")
    return job_id


def stage_plan(stack: Stack, workflow: str) -> list[str]:
    """The stages a workflow runs, in the spec's order: the target stage and all it waits for."""
    stages = stack.spec.stages
    target = WORKFLOW_TARGETS[workflow]
    if target not in stages:
        raise BadInputError(f"workflow {workflow} needs stage '{target}', which the spec does not define",
                            hint=f"add stages.{target} to {stack.spec_path.name}")
    needed, todo = set(), [target]
    while todo:
        name = todo.pop()
        if name not in needed:
            needed.add(name)
            todo.extend(stages[name].after)
    return [name for name in stages if name in needed]


@dataclass(frozen=True)
class CheckedRequest:
    """A request whose arguments passed every check that needs neither the spec nor the media."""

    request: JobRequest
    start_s: float | None
    end_s: float | None
    user: str
    name: str | None
    language: str | None


def check_request(request: JobRequest) -> CheckedRequest:
    from infra.jobs.media import check_range, parse_time

    start = parse_time(request.start, "--start") if request.start is not None else None
    end = parse_time(request.end, "--end") if request.end is not None else None
    check_range(start, end)
    if request.mode is not None:
        from infra.spec.modes import check_mode

        check_mode(request.mode)
    if request.workflow not in WORKFLOW_TARGETS:
        raise BadInputError(f"unknown workflow {request.workflow!r} (known: {', '.join(WORKFLOW_TARGETS)})")
    from infra.spec.languages import check_language, check_model_language, check_task

    language = check_language(request.language)
    check_audio_choice(request.audio_track, request.audio_language)
    check_task(request.task)
    if request.whisper_model is not None:
        from infra.models.catalogue import CATALOGUE, whisper_model

        known = [e.name.split("/", 1)[1] for e in CATALOGUE.values() if e.kind == "whisper"]
        if whisper_model(request.whisper_model) not in CATALOGUE:
            raise BadInputError(f"--model {request.whisper_model!r} is not a Whisper model infra knows "
                                f"(known: {', '.join(known)})")
        check_model_language(language, request.task, request.whisper_model)
    return CheckedRequest(request, start, end, check_user(request.user), check_name(request.name), language)


def check_audio_choice(track: int | None, language: str | None) -> None:
    """--audio-track is a track number, --audio-language a language tag, and not both."""
    if track is not None and language is not None:
        raise BadInputError("give --audio-track or --audio-language, not both")
    if track is not None and track < 0:
        raise BadInputError(f"--audio-track {track} is not a track number (0 is the first audio track)")
    if language is not None and not AUDIO_TAG_RE.match(language):
        raise BadInputError(f"--audio-language {language!r} is not a language tag (as ffprobe shows them, e.g. hin)")


def prepare_job(stack: Stack, request: JobRequest | CheckedRequest, probe: MediaProbe | None = None,
                hardware: HardwareState | None = None, now: datetime | None = None) -> PreparedJob:
    """Check everything, then claim an id, make the job directory, cut the clip and write job.json."""
    from infra.hardware.cache import stack_hardware
    from infra.hardware.recommend import recommend
    from infra.jobs.media import MediaProbe, check_range, choose_audio, cut_clip
    from infra.spec.languages import check_model_language

    checked = request if isinstance(request, CheckedRequest) else check_request(request)
    request, start, end = checked.request, checked.start_s, checked.end_s
    plan = stage_plan(stack, request.workflow)
    probe = probe or MediaProbe(request.media)
    media = probe.result()
    check_range(start, end, media.duration_s)
    audio = choose_audio(media, request.audio_track, request.audio_language, str(request.media))
    state = hardware or stack_hardware(stack)
    rec = recommend(state.snapshot, mode=request.mode, allowed=tuple(stack.spec.modes))  # type: ignore[arg-type]
    check_model_language(checked.language, request.task, request.whisper_model or rec.whisper_model)
    ws = Workspace(stack.workdir)
    models = used_models(stack, ws, request.whisper_model or rec.whisper_model, plan)

    now = now or datetime.now().astimezone()
    job_id, job_dir, claim = _claim(ws, now, checked.user)
    try:
        clip = None
        if start is not None and end is not None:
            clip = job_dir / f"clip{Path(media.path).suffix or '.mkv'}"
            cut_clip(Path(media.path), clip, start, end)
        stages = [{"name": s, "image": stack.spec.stages[s].image, "after": list(stack.spec.stages[s].after),
                   "device": rec.stage_device(s, stack.spec.stages[s].gpu), "status": "pending"} for s in plan]
        data = {
            "schema": JOB_SCHEMA, "id": job_id, "name": checked.name, "user": checked.user, "status": "prepared",
            "created": now.isoformat(timespec="seconds"), "workflow": request.workflow,
            "dir": str(job_dir.relative_to(ws.root)), "workspace": str(ws.root),
            "media": media.model_dump(),
            "input": {"file": clip.name if clip else media.path, "clipped": clip is not None,
                      "start_s": start if clip else 0.0, "end_s": end if clip else media.duration_s,
                      "duration_s": end - start if clip else media.duration_s, "audio": audio},
            "config": {"project": stack.spec.project, "spec": str(stack.spec_path), "mode": rec.mode,
                       "language": checked.language, "task": request.task,
                       "whisper_model": request.whisper_model or rec.whisper_model, "compute_type": rec.compute_type,
                       "batch_size": rec.batch_size, "chunk_length_s": rec.chunk_length_s, "span_s": SPAN_S,
                       "max_speakers": rec.max_speakers, "torch_policy": stack.spec.native_env.torch,
                       "allow_cpu_fallback": request.allow_cpu_fallback,
                       "native_env": str(stack.workdir / stack.spec.native_env.path)},
            "hardware": state.snapshot.model_dump(),
            "hardware_cache": state.as_dict(),
            "recommendation": rec.model_dump(),
            "stages": stages,
            "models": models,
        }
        write_json_atomic(job_dir / JOB_FILE, data)
        hand_over(ws.out, job_dir)
    except BaseException:
        shutil.rmtree(job_dir, ignore_errors=True)
        claim.unlink(missing_ok=True)
        raise
    return PreparedJob(job_id, job_dir, data)


def used_models(stack: Stack, ws: Workspace, whisper_model: str, plan: list[str]) -> dict[str, Any]:
    """The digests of the cached models the job will read (from their markers), checked against models.lock."""
    from infra.jobproto import model_cache
    from infra.models.lock import job_model_names, job_models, lock_path, read_lock

    cache = model_cache({"workspace": str(ws.root)})
    return job_models(read_lock(lock_path(stack)), cache, job_model_names(whisper_model, plan, cache))


def _claim(ws: Workspace, now: datetime, user: str) -> tuple[str, Path, Path]:
    """Claim the day's next free id with O_EXCL and make its directory."""
    day = now.strftime("%Y%m%d")
    try:
        ws.jobs.mkdir(parents=True, exist_ok=True)
        taken = [int(p.name[9:]) for p in ws.jobs.iterdir() if p.name.startswith(day) and JOB_ID_RE.match(p.name)]
    except OSError as exc:
        raise OperationError(f"cannot use the job index {ws.jobs}: {exc.strerror or exc}",
                             hint="`infra bootstrap` creates the workspace folders") from None
    number = max(taken, default=0) + 1
    while number <= MAX_JOBS_PER_DAY:
        job_id = f"{day}-{number:04d}"
        job_dir = ws.out / now.strftime("%Y/%m/%d") / user / job_id
        claim = ws.jobs / job_id
        try:
            fd = os.open(claim, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            number += 1
            continue
        with os.fdopen(fd, "w") as handle:
            handle.write(str(job_dir.relative_to(ws.root)) + "\n")
        try:
            job_dir.mkdir(parents=True)
        except OSError as exc:
            claim.unlink(missing_ok=True)
            raise OperationError(f"cannot create {job_dir}: {exc.strerror or exc}") from None
        return job_id, job_dir, claim
    raise OperationError(f"all {MAX_JOBS_PER_DAY} job ids of {day} are taken")


def hand_over(out: Path, job_dir: Path) -> None:
    """As root, give the new folders and files below out/ to out/'s owner (the images' user after bootstrap)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return
    owner = out.stat()
    if owner.st_uid == 0:
        return
    folders = [out / p for p in job_dir.relative_to(out).parents if p != Path(".")]
    for path in (*folders, job_dir, *job_dir.iterdir()):
        if path.stat().st_uid == 0:
            os.chown(path, owner.st_uid, owner.st_gid, follow_symlinks=False)


def job_dir_of(ws: Workspace, job_id: str) -> Path:
    """The directory of a job, from its claim in jobs/."""
    check_job_id(job_id)
    try:
        rel = (ws.jobs / job_id).read_text().strip()
    except FileNotFoundError:
        raise BadInputError(f"no job {job_id} in {ws.root}", hint="`infra job list` shows the jobs") from None
    return ws.root / rel


def read_job(ws: Workspace, job_id: str) -> dict[str, Any]:
    path = job_dir_of(ws, job_id) / JOB_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OperationError(f"job {job_id}: {path} is missing (the job directory was removed?)") from None
    except (OSError, ValueError) as exc:
        raise OperationError(f"job {job_id}: {path} cannot be read ({exc})") from None


def list_jobs(ws: Workspace) -> list[dict[str, Any]]:
    """One summary per job in the index, oldest first; a job whose job.json is gone says so."""
    if not ws.jobs.is_dir():
        return []
    rows = []
    for claim in sorted(p for p in ws.jobs.iterdir() if JOB_ID_RE.match(p.name)):
        try:
            data = read_job(ws, claim.name)
        except OperationError as exc:
            rows.append({"id": claim.name, "status": "missing", "detail": exc.message})
            continue
        rows.append({"id": data.get("id"), "user": data.get("user"), "name": data.get("name"),
                     "status": data.get("status"), "workflow": data.get("workflow"),
                     "created": data.get("created"), "media": Path(str(data.get("media", {}).get("path"))).name,
                     "duration_s": data.get("input", {}).get("duration_s"),
                     "mode": data.get("config", {}).get("mode"), "dir": data.get("dir")})
    return rows


def input_path(job_dir: Path, job: dict[str, Any]) -> Path:
    """The job's input media (input.file: the clip in the job directory, or the source) as a host path."""
    source = Path(str(job["input"]["file"]))
    return source if source.is_absolute() else job_dir / source


def reachable_input(ws: Workspace, job_dir: Path, job: dict[str, Any]) -> str:
    """The input as a path the containers can open: inside a workspace folder that they mount (in/, out/, ...;
    relative to the job directory), else linked or copied into the job directory. A missing input is left as
    it is: only the stages that read the media need it (the pipeline checks for those)."""
    from infra.render.paths import DATA_MOUNTS

    source = input_path(job_dir, job)
    root = ws.root.resolve()
    if any(source.resolve().is_relative_to(root / host) for host, _, _ in DATA_MOUNTS):
        return os.path.relpath(source.resolve(), job_dir.resolve())
    local = job_dir / f"media{source.suffix}"
    if not local.exists():
        if not source.is_file():
            return str(job["input"]["file"])
        try:
            os.link(source, local)
        except OSError:
            shutil.copy2(source, local)
    return local.name
