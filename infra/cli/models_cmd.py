"""`infra models push | pull`: the shared model cache to and from a registry, as OCI artifacts pinned in models.lock."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Annotated, Any, Optional

import typer

app = typer.Typer(help="Models as OCI artifacts: push the cache's models to a registry, pull them by digest.",
                  no_args_is_help=True)

RegistryOption = Annotated[Optional[str], typer.Option(
    "--registry", help="HOST[/NAMESPACE] (default: the spec's registry; pull: the repository models.lock names).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


@app.command("push")
def push(
    models: Annotated[Optional[list[str]], typer.Argument(metavar="[MODEL]...", help="Models of the cache, e.g. whisper/base (default: all).")] = None,
    registry: RegistryOption = None,
    tag: Annotated[str, typer.Option("--tag", help="The tag each model's manifest gets; models.lock pins its digest.")] = "latest",
    update_lock: Annotated[bool, typer.Option("--update-lock", help="Pin a model whose files changed since models.lock pinned it.")] = False,
    json_out: JsonOption = False,
) -> None:
    """Push cached models as OCI artifacts (blobs the registry has are skipped) and pin them in models.lock."""
    from infra.cli.context import load
    from infra.models.push import push_models

    stack = load()
    results = _with_progress(lambda emit: push_models(stack, models or None, registry, tag, update_lock, emit))
    rows = [[r.model, r.reference, r.digest, f"{r.uploaded} ({r.uploaded_bytes / 1e6:.1f} MB)", r.present, r.lock]
            for r in results]
    _show(json_out, results, ["model", "pushed to", "digest", "uploaded", "present", "models.lock"], rows)


@app.command("pull")
def pull(
    models: Annotated[Optional[list[str]], typer.Argument(metavar="[MODEL]...", help="Models to pull, e.g. whisper/base (default: all models.lock pins).")] = None,
    registry: RegistryOption = None,
    tag: Annotated[str, typer.Option("--tag", help="Without models.lock: the tag to resolve.")] = "latest",
    json_out: JsonOption = False,
) -> None:
    """Fetch models by digest (models.lock's) into the model cache: verified, resumable, all or nothing per model."""
    from infra.cli.context import load
    from infra.models.pull import pull_models

    stack = load()
    results = _with_progress(lambda emit: pull_models(stack, models or None, registry, tag, emit))
    rows = [[r.model, r.status, r.reference, f"{r.fetched_bytes / 1e6:.1f} MB", r.reused] for r in results]
    _show(json_out, results, ["model", "status", "from", "fetched", "files reused"], rows)


def _with_progress(work: Callable[[Callable[[Any], None]], Any]) -> Any:
    """Run ``work(emit)`` with a progress bar per model on stderr; returns what it returns."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TransferSpeedColumn

    from infra.cli.output import stderr_console
    from infra.models.remote import with_events

    events: Generator[Any, None, Any] = with_events(work)
    try:
        event = next(events)          # the checks run before the first event: their errors show alone
    except StopIteration as stop:
        return stop.value
    tasks: dict[str, TaskID] = {}
    with Progress(TextColumn("{task.description:<40}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  console=stderr_console(), transient=True) as bars:
        while True:
            if event.model not in tasks:
                tasks[event.model] = bars.add_task(event.model, total=event.total_bytes)
            bars.update(tasks[event.model], completed=event.done_bytes, total=event.total_bytes)
            try:
                event = next(events)
            except StopIteration as stop:
                return stop.value


def _show(json_out: bool, results: list[Any], headers: list[str], rows: list[list[Any]]) -> None:
    from infra.cli.output import print_json, print_rows

    if json_out:
        from dataclasses import asdict

        print_json([asdict(r) for r in results])
    else:
        print_rows(headers, rows)
