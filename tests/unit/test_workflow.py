"""The CI workflow calls infra the way infra parses: every `infra ...` in .github/workflows names a real
command with options it has (a renamed flag would otherwise break CI only on GitHub)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer
import yaml

from tests.conftest import REPO

WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))


OPERATORS = {";", "&&", "||", "|", "&", ">", ">>", "(", ")", "{", "}"}


def infra_calls(script: str) -> list[list[str]]:
    """The argument lists of every `infra` command in a shell script, up to a redirection or an operator
    (a GitHub expression ${{ ... }} stands for one word)."""
    text = re.sub(r"\$\{\{[^}]*\}\}", "EXPR", script.replace("\\\n", " "))
    calls = []
    for line in text.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        tokens = list(lexer)
        for index, token in enumerate(tokens):
            if token == "infra":
                args = []
                for word in tokens[index + 1:]:
                    if word in OPERATORS:
                        break
                    args.append(word)
                calls.append(args)
    return calls


def scripts(path: Path) -> list[str]:
    workflow = yaml.safe_load(path.read_text())
    return [step["run"] for job in workflow["jobs"].values() for step in job["steps"] if "run" in step]


def parse(args: list[str]) -> None:
    """Parse args as `infra ARGS` would, without running anything: click (typer's) raises a usage error on an
    unknown command or option."""
    from infra.cli.app import app

    command = typer.main.get_command(app)
    ctx = command.make_context("infra", list(args))
    while hasattr(command, "resolve_command"):            # a group: find the subcommand, parse its arguments
        protected = getattr(ctx, "_protected_args", None) or getattr(ctx, "protected_args", None) or []
        rest = [*protected, *ctx.args]
        name, sub, rest = command.resolve_command(ctx, rest)
        assert sub is not None, f"no command {name!r}"
        command = sub
        ctx = sub.make_context(name, rest, parent=ctx)


def test_there_is_a_workflow_and_it_calls_infra() -> None:
    calls = [c for path in WORKFLOWS for script in scripts(path) for c in infra_calls(script)]
    assert any(c[:1] == ["build"] and "--push" in c and "--reproducible" in c for c in calls)
    assert any(c[:1] == ["build"] and "--cache" in c and c[c.index("--cache") + 1] == "read" for c in calls)
    assert any(c[:2] == ["models", "push"] for c in calls) and any(c[:2] == ["image", "inspect"] for c in calls)


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_infra_call_in_a_workflow_parses(path: Path) -> None:
    for script in scripts(path):
        for args in infra_calls(script):
            parse(args)


def test_the_check_fails_on_an_option_infra_does_not_have() -> None:
    with pytest.raises(Exception, match="No such option"):
        parse(["build", "--mode", "docker-cpu", "--push-everything"])
    with pytest.raises(Exception, match="No such command"):
        parse(["imagez", "inspect", "x"])
