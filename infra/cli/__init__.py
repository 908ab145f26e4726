"""The `infra` command line: thin typer commands over the core modules, one error handler."""

from __future__ import annotations

import os
import sys

from infra.cli.app import app, state

__all__ = ["app", "main"]


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point. Usage errors and --help are typer's (exit 2 and 0);
    an InfraError becomes its one-line message, a hint and its exit code."""
    from infra.errors import InfraError

    try:
        app(args=argv, prog_name="infra")
    except InfraError as exc:
        if state.debug or os.environ.get("INFRA_DEBUG"):
            raise
        from infra.cli.output import print_error

        print_error(exc)
        sys.exit(exc.exit_code)
