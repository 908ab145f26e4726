"""`infra env`: the native environment whose torch the stage containers mount."""

from __future__ import annotations

import re
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
    target: Annotated[str, typer.Option("--target", help="auto (a CUDA build when this machine has an NVIDIA GPU), "
                                        "cpu, or cuda (also on a machine without one: the env a GPU host mounts).")
                      ] = "auto",
    torch: Annotated[Optional[str], typer.Option("--torch", hidden=True, help="The same as --target.")] = None,
    torch_version: Annotated[Optional[str], typer.Option(
        "--torch-version", help="torch to install (default: native_env.torch_version; for cuda, a torch whose "
                                "CUDA major the other GPU packages share).")] = None,
    torch_index: Annotated[Optional[str], typer.Option("--torch-index", metavar="URL",
                                                       help="Where torch comes from.")] = None,
    torch_only: Annotated[bool, typer.Option(
        "--torch-only", help="torch and what it needs, without the `ml` extra: for stacks whose stages import "
                             "nothing else from the environment (it is smaller, and every swarm node holds a copy)."
    )] = False,
) -> None:
    """Make the native environment: torch for this machine, then the `ml` extra (faster-whisper, ...), and its lock."""
    from infra.cli.context import load
    from infra.errors import BadInputError
    from infra.stack.cudaenv import create_cuda_env, write_lock
    from infra.stack.nativeenv import create_env, inspect_env

    choice = torch if torch is not None else target
    if choice not in ("auto", "cpu", "cuda"):
        raise BadInputError(f"--target {choice!r}: expected auto, cpu or cuda")
    if torch_version is not None and not re.fullmatch(r"[0-9]+(\.[0-9]+){1,2}", torch_version):
        raise BadInputError(f"--torch-version {torch_version!r}: expected a torch release such as 2.9.1 "
                            f"(a local build label such as +cpu names a build without CUDA)")
    stack = load()
    cuda = choice == "cuda"
    if choice == "auto":
        from infra.hardware.cache import stack_hardware

        cuda = bool(stack_hardware(stack).snapshot.nvidia.gpus)
    target_path = _env_path(stack, path)
    version = torch_version or stack.spec.native_env.torch_version
    if cuda and torch_index is None:
        lines = create_cuda_env(target_path, stack.spec.python, version, explicit=torch_version is not None,
                                with_ml=not torch_only)
    else:
        lines = create_env(target_path, stack.spec.python, version, cuda, torch_index, with_ml=not torch_only)
    for line in lines:
        typer.echo(line, err=True)
    if not cuda or torch_index is not None:
        typer.echo(f"wrote {write_lock(inspect_env(target_path), 'cuda' if cuda else 'cpu')}", err=True)
    show(path=target_path, json_out=False)


@app.command("show")
def show(
    path: PathOption = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    registry: Annotated[bool, typer.Option("--registry", help="Also say whether the registry holds this env's "
                                           "environment image (`infra env push`), and its digest.")] = False,
    mode: Annotated[str, typer.Option("--mode", help="The mode whose base carries the image.")] = "docker-cpu",
) -> None:
    """Python, platform, glibc, torch and its CUDA build, and the packages of the environment."""
    from infra.cli.context import load
    from infra.cli.output import print_json
    from infra.stack.cudaenv import LOCK_FILE, describe, disagreement, env_facts, read_lock
    from infra.stack.nativeenv import inspect_env

    target = path if path is not None else _env_path(load(), None)
    env = inspect_env(target)
    glibc, needed_by = env.glibc_required()
    facts = env_facts(env)
    lock = read_lock(env)
    data = {
        "path": str(target), "python": env.python, "platforms": sorted(env.platforms) or ["any"],
        "architectures": sorted(env.architectures), "glibc_required": ".".join(map(str, glibc)) if glibc[0] else None,
        "glibc_required_by": needed_by or None, "torch": env.torch, "torch_cuda": env.torch_cuda,
        "cuda": {**facts.as_dict(), "disagreement": disagreement(facts)},
        "lock": {"target": lock.get("target"), "packages": len(lock.get("freeze", []))} if lock else None,
        "packages": dict(sorted(env.distributions.items())),
    }
    remote = None
    if registry:
        from infra.cli.context import checked_mode
        from infra.stack.envimage import remote_env_image

        stack = load()
        remote = remote_env_image(stack, checked_mode(stack, mode))
        data["registry"] = {"image": remote.ref, "digest": remote.digest}
    if json_out:
        print_json(data)
        return
    if remote is not None:
        typer.echo(f"registry: {remote.ref} " + (f"({remote.digest})" if remote.digest else
                                                 "absent (`infra env push` puts it there)"))
    typer.echo(f"{target}: Python {env.python}, {'/'.join(data['platforms'])} {'/'.join(data['architectures'])}")
    typer.echo(f"  torch {env.torch or 'not installed'}" + (f" (CUDA {env.torch_cuda})" if env.torch_cuda else
                                                             " (CPU build)" if env.torch else ""))
    typer.echo(f"  {describe(facts)}")
    typer.echo(f"  lock: {target / LOCK_FILE} ({lock.get('target')} target)" if lock else
               "  no lock (made before infra recorded one; `infra env create` writes it)")
    if data["glibc_required"]:
        typer.echo(f"  needs glibc >= {data['glibc_required']} (for {needed_by})")
    typer.echo(f"  {len(env.distributions)} packages: " + ", ".join(f"{k} {v}" for k, v in data["packages"].items()))


@app.command("push")
def push(
    mode: Annotated[str, typer.Option("--mode", help="The mode whose base carries the image.")] = "docker-cpu",
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Push the native environment to the registry as an image (skipped when the registry has it): what a
    swarm's nodes and compose's image mounts load instead of a folder on each machine."""
    from infra.cli.context import checked_mode, load
    from infra.cli.output import print_json
    from infra.stack.envimage import EnvImage, push_env_image

    stack = load()
    result = None
    for item in push_env_image(stack, checked_mode(stack, mode)):
        if isinstance(item, EnvImage):
            result = item
        else:
            typer.echo(item, err=True)
    assert result is not None
    if json_out:
        print_json({"image": result.ref, "digest": result.digest, "status": result.status,
                    "seconds": round(result.seconds, 1)})
    else:
        typer.echo(f"{result.ref}: {result.status} ({result.digest})"
                   + (f" in {result.seconds:.1f} s" if result.seconds else ""))
