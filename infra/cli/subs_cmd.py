"""`infra subs check`: an SRT or WebVTT file held against the subtitle rules (infra/quality/subtitles.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Subtitle files: check them against the rules.", no_args_is_help=True)


@app.command("check")
def check(
    file: Annotated[Path, typer.Argument(help="An .srt or .vtt file.", show_default=False)],
    max_line: Annotated[int, typer.Option("--max-line", min=1, help="Characters a line, at most.")] = 42,
    max_lines: Annotated[int, typer.Option("--max-lines", min=1, help="Lines a cue, at most.")] = 2,
    max_cps: Annotated[float, typer.Option("--max-cps", min=0.1, help="Characters a second, at most.")] = 17.0,
    min_duration: Annotated[float, typer.Option("--min-duration", min=0, help="Seconds a cue lasts, at least.")] = 0.83,
    max_duration: Annotated[float, typer.Option("--max-duration", min=0, help="Seconds a cue lasts, at most.")] = 7.0,
    min_gap: Annotated[float, typer.Option("--min-gap", min=0, help="Seconds between two cues, at least.")] = 0.083,
    strict_cps: Annotated[bool, typer.Option("--strict-cps", help="Count a fast cue as a breach even when the next "
                                                                  "cue leaves it no more time.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Report each breach (cue number, rule) and each note; exit 0 when the file passes, 1 when it has breaches."""
    from infra.quality.subtitles import Rules, check_file

    report = check_file(file, Rules(max_line, max_lines, max_cps, min_duration, max_duration, min_gap, strict_cps))
    if json_out:
        from infra.cli.output import print_json

        print_json(report.as_dict())
    else:
        for breach in report.breaches:
            typer.echo(str(breach))
        for note in report.notes:
            typer.echo(f"note: {note}")
        verdict = f"{len(report.breaches)} breaches" if report.breaches else "passes"
        typer.echo(f"{file}: {report.format}, {report.cues} cues: {verdict}")
    if report.breaches:
        raise typer.Exit(1)
