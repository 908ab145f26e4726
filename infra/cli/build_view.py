"""How `infra build` looks: a live line per image while it builds, a summary table at the end."""

from __future__ import annotations

from typing import Any

from infra.build.scheduler import Finished, Started, StepEvent
from infra.build.report import BuildSummary, seconds_before, size_before
from infra.build.registry import PushResult
from infra.cli.output import stderr_console, stdout_console

STATUS_STYLE = {"built": "green", "up to date": "cyan", "in registry": "blue", "failed": "red", "blocked": "yellow"}


def short_step(name: str, width: int = 44) -> str:
    """'[stage-0 2/3] RUN --mount=type=cache,... pip install x' -> 'RUN pip install x' (without the line
    that points the command at the CA secret when there is one)."""
    import re

    text = re.sub(r"^\[[^\]]*\]\s*", "", name)
    text = re.sub(r"--(mount|chown|from)=\S+\s*", "", text)
    text = " ".join(text.split())
    text = re.sub(r"^RUN if \[ -s /run/secrets/\S+ \]; then [^;]*; fi && ", "RUN ", text)
    return text if len(text) <= width else text[: width - 1] + "…"


def _mb(size: int) -> str:
    return f"{size / 1e6:,.0f} MB" if size else "-"


def _delta(now: float, before: float | None, unit: str, scale: float = 1.0) -> str:
    if before is None:
        return ""
    diff = (now - before) / scale
    if abs(diff) < 0.05:
        return ""
    return f" ({'+' if diff > 0 else ''}{diff:,.1f}{unit})"


class BuildView:
    """Live progress on a terminal (rich), plain lines otherwise (CI logs)."""

    def __init__(self, quiet: bool = False) -> None:
        self.console = stderr_console()
        self.quiet = quiet
        self.live: Any = None
        self.lines: dict[str, str] = {}

    def __enter__(self) -> BuildView:
        if self.console.is_terminal and not self.quiet:
            from rich.live import Live

            self.live = Live(console=self.console, refresh_per_second=8, transient=True)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)

    def _redraw(self) -> None:
        from rich.table import Table

        table = Table.grid(padding=(0, 1))
        for name, line in self.lines.items():
            table.add_row(f"[bold]{name}[/]", line)
        self.live.update(table)

    def show(self, event: object) -> None:
        from rich.markup import escape

        if isinstance(event, Started):
            self.lines[event.name] = "[dim]starting[/]"
            text = f"{event.name}: building"
        elif isinstance(event, StepEvent):
            if event.done:
                return
            self.lines[event.name] = escape(event.step[:100])
            text = f"{event.name}: {event.step}"
        elif isinstance(event, Finished):
            r = event.report
            self.lines.pop(r.name, None)
            text = f"{r.name}: {r.status}" + (f" in {r.seconds:.1f} s" if r.seconds else "")
            if self.live is not None:
                self.live.console.print(f"[{STATUS_STYLE[r.status]}]{escape(text)}[/]")
        else:
            text = f"pushed {event.remote}@{event.digest}" if isinstance(event, PushResult) else str(event)
            if self.live is not None:
                self.live.console.print(escape(text))
        if self.live is not None:
            self._redraw()
        elif not self.quiet and not isinstance(event, StepEvent):
            self.console.print(escape(text))

    def print_summary(self, summary: BuildSummary) -> None:
        from rich.markup import escape
        from rich.table import Table

        table = Table(title=f"infra build --mode {summary.mode}", title_justify="left", header_style="bold")
        for column in ("image", "status", "time", "steps run/cached", "slowest step", "size", "image id"):
            table.add_column(column, justify="right" if column in ("time", "size") else "left")
        for r in summary.images:
            before = summary.previous.get(r.name, {})
            slowest = f"{short_step(r.slowest_step)} ({r.slowest_seconds:.1f} s)" if r.slowest_step else ""
            table.add_row(
                r.name, f"[{STATUS_STYLE[r.status]}]{r.status}[/]",
                f"{r.seconds:.1f} s{_delta(r.seconds, seconds_before(before), ' s')}"
                if r.seconds else "-",
                f"{r.steps_executed}/{r.steps_cached}" if r.status == "built" else "",
                escape(slowest),
                f"{_mb(r.size_bytes)}{_delta(r.size_bytes, size_before(r, before), ' MB', 1e6)}" if r.size_bytes else "-",
                (r.image_id or r.digest).removeprefix("sha256:")[:12],
            )
        out = stdout_console()
        if not out.is_terminal:
            out.width = max(out.width, 140)
        out.print(table)
        path = " -> ".join(summary.critical_path) or "-"
        out.print(f"total {summary.wall_seconds:.1f} s; critical path {escape(path)} ({summary.critical_seconds:.1f} s)")
        for name, ref in summary.pushed.items():
            out.print(f"pushed {name}: {escape(ref)}")
        for r in summary.images:
            if r.status == "failed":
                err = stderr_console()
                err.print(f"[red]error:[/] {escape(r.name)}: {escape(r.error)}")
                for line in r.log_tail:
                    err.print(f"  [dim]{escape(line)}[/]")
                if r.hint:
                    err.print(f"[dim]hint:[/] {escape(r.hint)}")
