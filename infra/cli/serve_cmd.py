"""`infra serve`: the HTTP service (infra/serve/): submit films, follow them, fetch subtitles."""

from __future__ import annotations

from typing import Annotated

import typer


def serve(
    host: Annotated[str, typer.Option("--host", help="Address to bind; anything but loopback needs a token (INFRA_SERVE_TOKEN).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", help="Port to listen on.")] = 9000,
    max_upload: Annotated[str, typer.Option("--max-upload", help="Largest upload accepted (e.g. 500M, 16G).")] = "16G",
    films_at_once: Annotated[int, typer.Option("--films-at-once", help="Films run at the same time.")] = 1,
    stack_mode: Annotated[str | None, typer.Option(
        "--stack-mode", help="Run as the stack's service in this mode (what `infra up` starts): films go to the "
                             "stack's workers, jobs follow the host's recorded hardware.")] = None,
) -> None:
    """Serve the pipeline over HTTP: a JSON API, the whisper-asr-webservice API, a status page."""
    from infra.cli.context import load
    from infra.errors import BadInputError
    from infra.serve.settings import serve_settings

    stack = load()
    settings = serve_settings(stack, host, port, max_upload, films_at_once, stack_mode)
    try:
        from infra.serve.run import run_server
    except ImportError as exc:
        raise BadInputError(f"infra serve needs its extra packages ({exc.name} is missing)",
                            hint="pip install 'infra[serve]'") from None
    run_server(stack, settings)
