"""`infra up`, `down`, `ps`, `logs` and `deploy`: the stack's services through compose or swarm."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from infra.cli.options import StackMode as ModeOption


def _mode(stack, mode: str) -> str:  # noqa: ANN001
    from infra.cli.context import checked_mode

    return checked_mode(stack, mode)


def _scales(values: list[str]) -> dict[str, int]:
    from infra.errors import BadInputError

    scales = {}
    for value in values:
        name, sep, count = value.partition("=")
        if not sep or not count.isdigit() or int(count) < 1:
            raise BadInputError(f"--scale {value!r}: expected SERVICE=N with N >= 1")
        scales[name] = int(count)
    return scales


def _table(states: list) -> None:
    from rich.table import Table

    from infra.cli.output import stdout_console

    table = Table(header_style="bold")
    for column in ("service", "container", "state", "health", "image"):
        table.add_column(column)
    colour = {"healthy": "green", "starting": "yellow", "unhealthy": "red"}
    for s in states:
        table.add_row(s.service, s.container, s.state, f"[{colour.get(s.health, 'white')}]{s.health or '-'}[/]", s.image)
    stdout_console().print(table)


def up(
    mode: ModeOption = "docker-cpu",
    build: Annotated[bool, typer.Option("--build", help="Build missing or out-of-date images first.")] = False,
    scale: Annotated[Optional[list[str]], typer.Option("--scale", metavar="SERVICE=N", help="Run N workers of a stage.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the services as JSON.")] = False,
) -> None:
    """Start the stage workers of a mode and wait until they are healthy."""
    from infra.cli.context import load
    from infra.cli.build_view import BuildView
    from infra.cli.output import print_json
    from infra.stack.compose import stack_up
    stack = load()
    states: list = []
    with BuildView(quiet=json_out) as view:
        for event in stack_up(stack, _mode(stack, mode), build=build, scales=_scales(scale or [])):
            if isinstance(event, list):
                states = event
            elif not type(event).__name__ == "BuildSummary":
                view.show(event)
    if json_out:
        print_json([s.__dict__ for s in states])
    else:
        _table(states)


def down(
    mode: ModeOption = "docker-cpu",
    volumes: Annotated[bool, typer.Option("--volumes", help="Also remove the project's volumes.")] = False,
) -> None:
    """Stop and remove the mode's services and every container carrying the project's label."""
    from infra.cli.context import load
    from infra.stack.compose import stack_down
    stack = load()
    extra = stack_down(stack, _mode(stack, mode), volumes=volumes)
    typer.echo(f"{stack.spec.project} ({mode}) is down" + (f"; removed {extra} more labelled container(s)" if extra else ""))


TargetOption = Annotated[str, typer.Option("--target", help="compose (this machine) or swarm (the deployed stack).")]


def _target(target: str) -> str:
    from infra.errors import BadInputError

    if target not in ("compose", "swarm"):
        raise BadInputError(f"--target {target!r}: expected compose or swarm")
    return target


def ps(
    mode: ModeOption = "docker-cpu",
    target: TargetOption = "compose",
    json_out: Annotated[bool, typer.Option("--json", help="Print the services as JSON.")] = False,
) -> None:
    """The mode's service containers (state and health; on a swarm, each task and its node) and the work they
    hold, with the node and progress of each stage."""
    from infra.cli.context import load
    from infra.cli.output import print_json, print_rows
    from infra.cli.run_view import progress_text
    from infra.stack.queue import work_in_flight

    stack = load()
    checked = _mode(stack, mode)
    work = work_in_flight(stack)
    if _target(target) == "swarm":
        from infra.stack.swarm import swarm_ps

        tasks = swarm_ps(stack, checked)
        if json_out:
            print_json({"tasks": tasks, "work": work})
            return
        print_rows(["service", "replica", "node", "state", "error"],
                   [[t["service"], str(t["slot"] or "global"), t["node"], t["state"], t["error"]] for t in tasks],
                   title=f"stack {stack.spec.project}-{checked}")
    else:
        from infra.stack.compose import stack_ps

        states = stack_ps(stack, checked)
        if json_out:
            print_json({"services": [s.__dict__ for s in states], "work": work})
            return
        _table(states)
    if work:
        print_rows(["job", "stage", "state", "node", "worker", "progress"],
                   [[w["job"], w["stage"], w["state"], w.get("node") or "", w["worker"] or "",
                     progress_text(w["progress"]) if w["progress"] else ""] for w in work], title="work in flight")


def logs(
    services: Annotated[Optional[list[str]], typer.Argument(metavar="[SERVICE]...", help="Stages to show (default: all).")] = None,
    mode: ModeOption = "docker-cpu",
    target: TargetOption = "compose",
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep following new output.")] = False,
    tail: Annotated[Optional[str], typer.Option("--tail", help="Lines from the end of each log.")] = None,
) -> None:
    """The workers' logs (on a swarm each line names its task and node)."""
    from infra.cli.context import load
    stack = load()
    checked = _mode(stack, mode)
    if _target(target) == "swarm":
        from infra.engine import Engine
        from infra.engine.swarm import stack_logs
        from infra.stack.swarm import swarm_stack_name

        lines = stack_logs(Engine(), swarm_stack_name(stack, checked), list(services or []), follow, tail)
    else:
        from infra.stack.compose import stack_logs as compose_logs

        lines = compose_logs(stack, checked, list(services or []), follow, tail)
    for line in lines:
        typer.echo(line)


def deploy(
    target: Annotated[str, typer.Option("--target", help="Where to deploy: swarm.")] = "swarm",
    mode: ModeOption = "docker-cpu",
    remove: Annotated[bool, typer.Option("--down", help="Remove the deployed stack instead.")] = False,
    scale: Annotated[Optional[list[str]], typer.Option("--scale", metavar="STAGE=N",
                                                       help="Run N workers of a stage, spread over the nodes.")] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until every worker runs.")] = True,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for the workers.")] = 900.0,
) -> None:
    """Deploy the rendered swarm stack (after checking the swarm, the registry, the images, the native
    environment and where each stage can run), then wait until the workers run."""
    from infra.cli.context import load
    from infra.errors import BadInputError
    from infra.stack.swarm import deploy_swarm, remove_swarm
    if target != "swarm":
        raise BadInputError(f"--target {target!r}: the only target is swarm")
    stack = load()
    checked = _mode(stack, mode)
    if remove:
        typer.echo(f"removed stack {remove_swarm(stack, checked)}")
        return
    for line in deploy_swarm(stack, checked, scale=_scales(scale or []), wait=wait, timeout_s=timeout):
        typer.echo(line, err=line.startswith("note:"))
