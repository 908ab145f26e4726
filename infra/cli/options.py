"""Options that several commands share, defined once: `infra run` and `infra job prepare` take the same job options."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

if TYPE_CHECKING:
    from infra.jobs.prepare import CheckedRequest

Start = Annotated[Optional[str], typer.Option("--start", metavar="HH:MM:SS", help="Cut a clip from here; needs --end.")]
End = Annotated[Optional[str], typer.Option("--end", metavar="HH:MM:SS", help="End of the clip.")]
Workflow = Annotated[str, typer.Option("--workflow", help="transcribe or subtitles.")]
JobMode = Annotated[Optional[str], typer.Option("--mode", help="native, docker-cpu or docker-gpu (default: recommended).")]
Language = Annotated[Optional[str], typer.Option("--language", help="Spoken language, a Whisper code such as hi or en; auto: detected for each speech segment (films that switch languages) (default: detected once, on the first speech).")]
Model = Annotated[Optional[str], typer.Option("--model", help="Whisper model, e.g. tiny.en or base (default: recommended).")]
Task = Annotated[str, typer.Option("--task", help="transcribe, or translate into English.")]
AudioTrack = Annotated[Optional[int], typer.Option("--audio-track", metavar="N", help="Decode this audio track: 0 is the first audio stream, 1 the second (default: the first).")]
AudioLanguage = Annotated[Optional[str], typer.Option("--audio-language", metavar="TAG", help="Decode the first audio track tagged with this language, as ffprobe shows it, e.g. hin or eng.")]
AllowCpuFallback = Annotated[bool, typer.Option(
    "--allow-cpu-fallback", help="A GPU stage that cannot use the GPU runs on the CPU and records why "
                                 "(default: it fails with one line saying why).")]
Name = Annotated[Optional[str], typer.Option("--name", help="A label for the job.")]
User = Annotated[Optional[str], typer.Option("--user", help="Whose job (default: the login name).")]
Sequential = Annotated[bool, typer.Option("--sequential", help="One stage at a time, each with every CPU thread (default: stages whose inputs are ready run side by side).")]
StackMode = Annotated[str, typer.Option("--mode", "-m", help="docker-cpu or docker-gpu.")]
Json = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
# `infra run` over several films (docs/JOBS.md, "Many films")
Films = Annotated[Optional[list[str]], typer.Argument(
    metavar="FILE... | DIR", help="Films or audio files, and folders of them (or --sample).", show_default=False)]
Recursive = Annotated[bool, typer.Option("--recursive", "-r", help="Take the media files of subfolders too.")]
RerunDone = Annotated[bool, typer.Option(
    "--force", help="Run a film again even when it was subtitled with the same settings.")]
WaitForFilm = Annotated[bool, typer.Option(
    "--wait", help="When another `infra run` is running a film, wait for it instead of leaving that film out.")]
Submit = Annotated[bool, typer.Option(
    "--submit", help="Queue the jobs for the running stack's workers (`infra up`) and wait for them.")]
SubmitTimeout = Annotated[float, typer.Option("--timeout", help="With --submit: seconds to wait for one film at most.")]
JsonFilms = Annotated[bool, typer.Option(
    "--json", help="Print every film's outcome as JSON (the stages' lines go to stderr).")]


def job_request(media: Path, start: Optional[str], end: Optional[str], workflow: str, mode: Optional[str],
                language: Optional[str], model: Optional[str], task: str, name: Optional[str],
                user: Optional[str], audio_track: Optional[int] = None,
                audio_language: Optional[str] = None, allow_cpu_fallback: bool = False) -> CheckedRequest:
    """The job options of `infra run` and `infra job prepare`, checked (before the spec loads) in one place."""
    from infra.jobs.prepare import JobRequest, check_request

    return check_request(JobRequest(media=media, start=start, end=end, workflow=workflow, mode=mode,
                                    language=language, name=name, user=user, whisper_model=model, task=task,
                                    audio_track=audio_track, audio_language=audio_language,
                                    allow_cpu_fallback=allow_cpu_fallback))
