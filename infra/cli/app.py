"""The typer application and its global options."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from infra import __version__
from infra.cli.context import state


app = typer.Typer(
    name="infra",
    help="Build, run and deploy the film-to-subtitles speech pipeline from one spec.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"infra {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    file: Annotated[Optional[Path], typer.Option("--file", "-f", help="The spec (default: nearest infra.yaml, else the built-in one).", envvar="INFRA_FILE")] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.", envvar="INFRA_DEBUG")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version.")] = False,
) -> None:
    state.spec_file = file
    state.debug = debug


from infra.cli import (  # noqa: E402  (the commands, registered below)
    base_cmd, bootstrap_cmd, build_cmd, config_cmd, doctor_cmd, env_cmd, hw_cmd, image_cmd, job_cmd, lock_cmd,
    models_cmd, render_cmd, run_cmd, serve_cmd, stack_cmd, subs_cmd,
)

app.add_typer(config_cmd.app, name="config")
app.command("doctor")(doctor_cmd.doctor)
app.command("base")(base_cmd.base)
app.command("render")(render_cmd.render)
app.command("lock")(lock_cmd.lock)
app.command("build")(build_cmd.build)
app.add_typer(hw_cmd.app, name="hw")
app.command("bootstrap")(bootstrap_cmd.bootstrap)
app.add_typer(models_cmd.app, name="models")
app.add_typer(job_cmd.app, name="job")
app.add_typer(env_cmd.app, name="env")
app.command("serve")(serve_cmd.serve)
app.command("up")(stack_cmd.up)
app.command("down")(stack_cmd.down)
app.command("ps")(stack_cmd.ps)
app.command("logs")(stack_cmd.logs)
app.command("deploy")(stack_cmd.deploy)
app.command("run")(run_cmd.run)
app.add_typer(image_cmd.app, name="image")
app.add_typer(subs_cmd.app, name="subs")
