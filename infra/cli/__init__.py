"""The `infra` command line: thin typer commands over the core modules, one error handler."""

from __future__ import annotations

import os
import signal
import sys

__all__ = ["main"]

# Options of `infra job prepare` that take a value, and the root options that do.
PREPARE_VALUE_OPTIONS = {"--start", "--end", "--workflow", "--mode", "--language", "--name", "--user", "--model",
                         "--task"}
ROOT_VALUE_OPTIONS = {"--file", "-f"}


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point. Usage errors and --help are typer's (exit 2 and 0);
    an InfraError becomes its one-line message, a hint and its exit code."""
    args = sys.argv[1:] if argv is None else list(argv)
    media = prepare_media_argument(args)
    if media is not None:
        from infra.jobs.probe import start_early

        start_early(media)  # before typer and pydantic load: ffprobe runs on the other core meanwhile
    from infra.cli.app import app
    from infra.cli.context import state
    from infra.errors import InfraError, Terminated

    previous = stop_on_sigterm()
    try:
        app(args=args, prog_name="infra")
    except InfraError as exc:
        if state.debug or os.environ.get("INFRA_DEBUG"):
            raise
        from infra.cli.output import print_error

        print_error(exc)
        sys.exit(exc.exit_code)
    except Terminated:
        print("stopped by SIGTERM: what was running is stopped; `infra job run JOB` resumes a job",
              file=sys.stderr)
        sys.exit(Terminated.exit_code)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if media is not None:
            from infra.jobs.probe import discard_early

            discard_early()


def stop_on_sigterm() -> object:
    """SIGTERM (sent by `timeout`, CI runners and systemd) unwinds like Ctrl-C, so stages and containers are
    stopped and jobs left resumable; returns the previous handler (None when not in the main thread)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def terminate(signum: int, frame: object) -> None:
        from infra.errors import Terminated

        signal.signal(signal.SIGTERM, signal.SIG_DFL)      # a second SIGTERM ends the process at once
        raise Terminated()

    return signal.signal(signal.SIGTERM, terminate)


def prepare_media_argument(args: list[str]) -> str | None:
    """MEDIA of `infra [root options] job prepare [options] MEDIA`, or None for any other command line."""
    i = 0
    while i < len(args) and args[i].startswith("-"):
        i += 2 if args[i] in ROOT_VALUE_OPTIONS else 1
    if args[i:i + 2] != ["job", "prepare"]:
        return None
    rest = args[i + 2:]
    j = 0
    while j < len(rest):
        if rest[j] == "--":
            return rest[j + 1] if j + 1 < len(rest) else None
        if rest[j].startswith("-"):
            j += 2 if rest[j] in PREPARE_VALUE_OPTIONS else 1
            continue
        return rest[j]
    return None
