"""`infra bootstrap`: workspace folders, FFmpeg check, hardware cache, models; a summary table."""

from __future__ import annotations

from typing import Annotated, Optional

import typer


def bootstrap(
    model: Annotated[Optional[list[str]], typer.Option("--model", help="Fetch this catalogue model instead of the recommended ones (repeatable), e.g. whisper/tiny.en.")] = None,
    no_models: Annotated[bool, typer.Option("--no-models", help="Skip fetching models.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the steps as JSON.")] = False,
    from_registry: Annotated[bool, typer.Option("--from-registry", help="Pull the models from the registry by models.lock's digests instead of fetching them from their sources.")] = False,
    registry: Annotated[Optional[str], typer.Option("--registry", help="With --from-registry: HOST[/NAMESPACE] to pull from (default: models.lock's, else the spec's).")] = None,
) -> None:
    """Set up the workspace once (safe to run again): folders, FFmpeg, hardware cache, the recommended models."""
    from infra.models.bootstrap import run_bootstrap
    from infra.cli.context import load
    from infra.cli.output import print_checks, print_json, stderr_console
    from infra.hardware.doctor import Check
    from infra.models.catalogue import FetchEvent

    checks: list[Check] = []
    events = run_bootstrap(load(), models=model or None, fetch=not no_models, from_registry=from_registry,
                           registry=registry)
    if json_out:
        checks = [e for e in events if isinstance(e, Check)]
        print_json([c.as_dict() for c in checks])
    else:
        from rich.progress import (BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TimeElapsedColumn,
                                   TransferSpeedColumn)

        tasks: dict[str, TaskID] = {}
        with Progress(TextColumn("{task.description:<48}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                      TimeElapsedColumn(), TextColumn("{task.fields[note]}"), console=stderr_console()) as bars:
            for event in events:
                if isinstance(event, Check):
                    checks.append(event)
                    continue
                assert isinstance(event, FetchEvent)
                if event.model not in tasks:
                    tasks[event.model] = bars.add_task(event.model, total=None, note="")
                task = tasks[event.model]
                if event.kind == "progress":
                    bars.update(task, completed=event.done_bytes, total=event.total_bytes)
                elif event.kind in ("done", "present"):
                    bars.update(task, completed=event.done_bytes, total=event.done_bytes or 1,
                                note="done" if event.kind == "done" else "present")
                elif event.kind == "failed":
                    bars.update(task, total=1, completed=0, note="not fetched")
        print_checks(checks)
    if any(c.status == "fail" for c in checks):
        raise typer.Exit(1)
