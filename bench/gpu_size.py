"""docker-gpu image sizes: each GPU stage image with the CUDA environment mounted against the same image with
CUDA torch baked in.

Builds both variants of the shipped spec in docker-gpu (a no-op when they are current): the spec as it is
(torch mounted from the native environment, which the images do not carry) and a copy with
`native_env.torch: baked` and the torch of the CUDA environment (cudaenv.CUDA_TORCH for CUDA 12, 2.9.1), under
the project name speechbaked. Then, per image, two sizes: the image's content as the engine stores it
(`docker image inspect` .Size: compressed layers, what a pull moves) and its unpacked root file system
(`du -sxb /` in a container of it). Goal: the mounted image under 15 % of the baked one.

Usage: .venv/bin/python bench/gpu_size.py [--no-build]
The first baked build downloads CUDA torch and its NVIDIA wheels inside BuildKit (about 4 GB). An image that
does not build is named and the others are measured (the baked diarization image does not build from PyPI:
resemblyzer's webrtcvad comes as source only, and the image has no compiler).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from infra.stack.cudaenv import CUDA_TORCH  # noqa: E402

IMAGES = ["base-ml", "asr", "diarization", "pyannote-vad"]
GOAL = 0.15


def env() -> dict[str, str]:
    out = dict(os.environ)
    for candidate in (os.environ.get("INFRA_CA_BUNDLE"), os.environ.get("PIP_CERT"),
                      "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            out["INFRA_CA_BUNDLE"] = candidate
            break
    return out


def build(project: Path) -> list[str]:
    """Build the project's docker-gpu images; the error lines when some failed (the others are measured)."""
    proc = subprocess.run([sys.executable, "-m", "infra", "build", "--mode", "docker-gpu", "--jobs", "1"],
                          cwd=project, env=env(), capture_output=True, text=True)
    if proc.returncode == 0:
        return []
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    detail = [line.strip() for line in proc.stderr.splitlines() if "╰─>" in line or "error: legacy" in line]
    return [line[:200] for line in errors + detail] or [proc.stderr[-500:]]


def exists(ref: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", ref], capture_output=True).returncode == 0


def content_size(ref: str) -> int:
    return int(subprocess.run(["docker", "image", "inspect", ref, "--format", "{{.Size}}"],
                              capture_output=True, text=True, check=True).stdout)


def unpacked_size(ref: str) -> int:
    out = subprocess.run(["docker", "run", "--rm", "--network", "none", "--user", "0:0", "--entrypoint", "du", ref,
                          "-sxb", "/"], capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-build", action="store_true", help="measure the images as they are")
    args = parser.parse_args()
    torch = CUDA_TORCH[12]
    with tempfile.TemporaryDirectory() as tmp:
        mounted, baked = Path(tmp, "mounted"), Path(tmp, "baked")
        for project in (mounted, baked):
            project.mkdir()
            shutil.copytree(REPO / "images", project / "images")
        text = (REPO / "infra.yaml").read_text()
        (mounted / "infra.yaml").write_text(text)
        baked_text = text.replace("project: speech", "project: speechbaked", 1)
        baked_text = baked_text.replace("torch: mounted", "torch: baked", 1)
        baked_text = baked_text.replace('torch_version: "2.13.0"', f'torch_version: "{torch}"', 1)
        (baked / "infra.yaml").write_text(baked_text)
        problems = [] if args.no_build else build(mounted) + build(baked)
    print(f"docker-gpu images, torch mounted (CUDA environment outside the image) vs baked (torch {torch}, CUDA 12)")
    print("| image | mounted, content | baked, content | ratio | mounted, unpacked | baked, unpacked | ratio |")
    print("|---|---|---|---|---|---|---|")
    worst = 0.0
    for name in IMAGES:
        m_ref, b_ref = f"speech-{name}:latest-gpu", f"speechbaked-{name}:latest-gpu"
        if not (exists(m_ref) and exists(b_ref)):
            print(f"| {name} | not built: {', '.join(r for r in (m_ref, b_ref) if not exists(r))} | | | | | |")
            continue
        mc, bc = content_size(m_ref), content_size(b_ref)
        mu, bu = unpacked_size(m_ref), unpacked_size(b_ref)
        worst = max(worst, mc / bc, mu / bu) if name != "base-ml" else worst
        print(f"| {name} | {mc / 1e6:,.0f} MB | {bc / 1e6:,.0f} MB | {mc / bc:.3f} | {mu / 1e6:,.0f} MB | "
              f"{bu / 1e6:,.0f} MB | {mu / bu:.3f} |")
    print(f"largest ratio of a GPU stage image measured: {worst:.3f} (goal < {GOAL})")
    for line in problems:
        print(f"build: {line}")


if __name__ == "__main__":
    main()
