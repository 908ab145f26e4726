"""`infra hw`: what this machine has, and what the recommendation table makes of it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from infra.hardware.recommend import Recommendation
    from infra.hardware.snapshot import HardwareSnapshot

app = typer.Typer(help="Detect the hardware (cached) and show the recommended settings.", no_args_is_help=True)


@app.command("detect")
def detect(
    json_out: Annotated[bool, typer.Option("--json", help="Print hardware, recommendation and cache state as JSON.")] = False,
    refresh: Annotated[bool, typer.Option("--refresh", help="Detect anew even if the cache is valid.")] = False,
) -> None:
    """CPU, memory, disk, GPUs, MPS, FFmpeg, Docker and the native env; from out/hardware_cache.json while valid."""
    from infra.cli.context import load
    from infra.hardware.cache import stack_hardware
    from infra.hardware.recommend import recommend

    stack = load()
    state = stack_hardware(stack, refresh=refresh)
    if state.warning:
        typer.echo(f"warning: {state.warning}", err=True)
    rec = recommend(state.snapshot, allowed=tuple(stack.spec.modes))
    if json_out:
        from infra.cli.output import print_json

        print_json({"hardware": state.snapshot.model_dump(), "recommendation": rec.model_dump(),
                    "cache": state.as_dict()})
        return
    from infra.cli.output import print_rows

    print_rows(["", "detected"], hardware_rows(state.snapshot))
    typer.echo("")
    stages = {name: s.gpu for name, s in stack.spec.stages.items()}
    print_rows(["", "recommended"], recommendation_rows(rec, stages))
    for warning in rec.warnings:
        typer.echo(f"warning: {warning}", err=True)
    if state.source == "cache":
        typer.echo(f"\nfrom {state.path} ({state.age_s / 60:.0f} min old, valid {state.expires_in_s / 60:.0f} min more;"
                   " --refresh detects anew)")
    else:
        typer.echo(f"\ndetected in {state.snapshot.detect_seconds:.2f} s ({state.reason}); written to {state.path}")


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB"


def hardware_rows(hw: HardwareSnapshot) -> list[list[str]]:
    from infra.hardware.enginegpu import gpu_access_text

    rows = [["host", f"{hw.host} ({hw.os})"],
            ["cpu", f"{hw.cpu.model}, {hw.cpu.physical_cores} physical / {hw.cpu.logical_cores} logical cores, "
                    f"{hw.cpu.arch}"],
            ["memory", f"{_gb(hw.memory.total_bytes)} total, {_gb(hw.memory.available_bytes)} available"],
            ["disk", f"{_gb(hw.disk.free_bytes)} free at {hw.disk.path}"],
            ["gpu class", f"{hw.gpu_class}: {hw.gpu_class_reason}"]]
    nv = hw.nvidia
    if nv.gpus:
        rows.append(["nvidia", f"driver {nv.driver_version}, CUDA {nv.cuda_version} (via {nv.source})"])
        rows += [[f"gpu {g.index}", f"{g.name}, {_gb(g.memory_total_bytes)} ({_gb(g.memory_free_bytes)} free), "
                                    f"compute {g.compute_capability}, torch support {g.torch_support}"]
                 for g in nv.gpus]
    else:
        rows.append(["nvidia", nv.error or "no NVIDIA GPU"])
    rows.append(["mps", "available" if hw.mps.available else f"no ({hw.mps.detail})"])
    for name, tool in (("ffmpeg", hw.ffmpeg), ("ffprobe", hw.ffprobe)):
        rows.append([name, f"{tool.version} ({tool.path})" if tool.path else "not found"])
    d = hw.docker
    rows.append(["docker", f"engine {d.engine}, buildx {d.buildx}, compose {d.compose}" if d.engine
                 else f"unavailable: {d.error}"])
    if d.engine:
        rows.append(["docker gpu", gpu_access_text(d)])
    env = hw.native_env
    rows.append(["native env", f"{env.path}: Python {env.python}, torch {env.torch or 'none'}"
                               f"{f' (CUDA {env.torch_cuda})' if env.torch_cuda else ' (no CUDA)' if env.torch else ''}"
                 if env.present else f"{env.error}"])
    return rows


def recommendation_rows(rec: Recommendation, stages: dict[str, bool]) -> list[list[str]]:
    rows = [["mode", rec.mode], ["whisper model", rec.whisper_model], ["compute type", rec.compute_type],
            ["batch size", str(rec.batch_size)], ["chunk length", f"{rec.chunk_length_s} s"],
            ["max speakers", str(rec.max_speakers)],
            ["devices", ", ".join(f"{name} {rec.stage_device(name, gpu)}" for name, gpu in stages.items())]]
    rows += [["why" if i == 0 else "", reason] for i, reason in enumerate(rec.reasons)]
    return rows
