"""`infra env`: the native environment whose torch the stage containers mount."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(help="Create and inspect the native (host) ML environment.", no_args_is_help=True)
PathOption = Annotated[Optional[Path], typer.Option("--path", help="The environment (default: native_env.path).")]


def _env_path(stack, path: Optional[Path]) -> Path:  # noqa: ANN001
    return path if path is not None else stack.workdir / stack.spec.native_env.path


@app.command("create")
def create(
    path: PathOption = None,
    torch: Annotated[str, typer.Option("--torch", help="auto (from the hardware), cpu or cuda.")] = "auto",
    torch_index: Annotated[Optional[str], typer.Option("--torch-index", metavar="URL", help="Where torch comes from.")] = None,
) -> None:
    """Make the native environment: torch for this machine, then the `ml` extra (faster-whisper, ...)."""
    from infra.cli.context import load
    from infra.errors import BadInputError
    from infra.stack.nativeenv import create_env

    if torch not in ("auto", "cpu", "cuda"):
        raise BadInputError(f"--torch {torch!r}: expected auto, cpu or cuda")
    stack = load()
    cuda = torch == "cuda"
    if torch == "auto":
        from infra.hardware.cache import stack_hardware

        cuda = bool(stack_hardware(stack).snapshot.nvidia.gpus)
    target = _env_path(stack, path)
    for line in create_env(target, stack.spec.python, stack.spec.native_env.torch_version, cuda, torch_index):
        typer.echo(line, err=True)
    show(path=target, json_out=False)


@app.command("show")
def show(
    path: PathOption = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Python, platform, glibc, torch and its CUDA build, and the packages of the environment."""
    from infra.cli.context import load
    from infra.cli.output import print_json
    from infra.stack.nativeenv import inspect_env

    target = path if path is not None else _env_path(load(), None)
    env = inspect_env(target)
    glibc, needed_by = env.glibc_required()
    data = {
        "path": str(target), "python": env.python, "platforms": sorted(env.platforms) or ["any"],
        "architectures": sorted(env.architectures), "glibc_required": ".".join(map(str, glibc)) if glibc[0] else None,
        "glibc_required_by": needed_by or None, "torch": env.torch, "torch_cuda": env.torch_cuda,
        "packages": dict(sorted(env.distributions.items())),
    }
    if json_out:
        print_json(data)
        return
    typer.echo(f"{target}: Python {env.python}, {'/'.join(data['platforms'])} {'/'.join(data['architectures'])}")
    typer.echo(f"  torch {env.torch or 'not installed'}" + (f" (CUDA {env.torch_cuda})" if env.torch_cuda else
                                                             " (CPU build)" if env.torch else ""))
    if data["glibc_required"]:
        typer.echo(f"  needs glibc >= {data['glibc_required']} (for {needed_by})")
    typer.echo(f"  {len(env.distributions)} packages: " + ", ".join(f"{k} {v}" for k, v in data["packages"].items()))
