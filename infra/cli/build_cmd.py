"""`infra build`: render, then build the mode's images with BuildKit; a summary table at the end."""

from __future__ import annotations

from typing import Annotated, Optional

import typer


def build(
    mode: Annotated[str, typer.Option("--mode", "-m", help="Mode to build: native, docker-cpu or docker-gpu.")] = "docker-cpu",
    only: Annotated[Optional[list[str]], typer.Option("--only", help="Build only this image (and what it needs); repeatable.")] = None,
    jobs: Annotated[Optional[int], typer.Option("--jobs", "-j", help="Images built at once (default: CPU count).")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Ignore the BuildKit cache and the up-to-date check.")] = False,
    push: Annotated[bool, typer.Option("--push", help="Push every built or up-to-date image.")] = False,
    registry: Annotated[Optional[str], typer.Option("--registry", help="HOST[/NAMESPACE] to push to (default: the spec's).")] = None,
    builder: Annotated[Optional[str], typer.Option("--builder", help="A buildx builder (remote BuildKit, Kubernetes...).")] = None,
    cache: Annotated[Optional[str], typer.Option("--cache", help="The registry's layer cache: off, read (untrusted branches) or write (default with --push; read otherwise when a registry is set).")] = None,
    local: Annotated[bool, typer.Option("--local", help="Leave the registry out: no skip by content hash, no layer cache.")] = False,
    reproducible: Annotated[bool, typer.Option("--reproducible", help="Same inputs, same digests: SOURCE_DATE_EPOCH from the spec's last commit, timestamps rewritten.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Build the images of a mode in dependency order, in parallel, skipping what is up to date."""
    import os

    from infra.build.run import BuildRequestSpec, build_stack
    from infra.build.report import BuildSummary
    from infra.cli.context import checked_mode, load
    from infra.cli.build_view import BuildView
    from infra.cli.output import print_json

    stack = load()
    mode = checked_mode(stack, mode)
    request = BuildRequestSpec(mode=mode, only=tuple(only or ()), jobs=jobs if jobs is not None else (os.cpu_count() or 2),
                               no_cache=no_cache, push=push, registry=registry, builder=builder, cache=cache,
                               local=local, reproducible=reproducible)
    summary: BuildSummary | None = None
    with BuildView(quiet=json_out) as view:
        for event in build_stack(stack, request):
            if isinstance(event, BuildSummary):
                summary = event
            else:
                view.show(event)
    assert summary is not None
    if json_out:
        print_json(summary.to_json())
    else:
        view.print_summary(summary)
    if summary.failed:
        raise typer.Exit(1)
