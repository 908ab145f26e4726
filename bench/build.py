"""Build speed and image size on the docker-cpu stack, medians of repeated runs in one process.

Scenarios (issue: build):
  cold       empty BuildKit cache (build cache and cache mounts pruned), stack images removed
  no-op      everything up to date: `infra build` versus `docker buildx bake` on the same bake file
  code       one change to stage code: what rebuilds and how long
  pip        one pip requirement added to the asr image: warm layer cache and cache mounts versus --no-cache
  parallel   the whole stack with --no-cache: --jobs 2 versus --jobs 1
  size       the asr image with torch mounted versus baked (CPU torch from the machine's wheelhouse)

Runs against the repository's own spec and writes .infra/out and out/ there (both git-ignored).
Usage: .venv/bin/python bench/build.py [--runs N] [--cold-runs N] [--skip cold,parallel,...]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import print_table  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
INFRA = [sys.executable, "-m", "infra"]
STACK = ["base", "base-ml", "ffmpeg", "subtitles", "asr", "diarization", "pyannote-vad"]


def env() -> dict[str, str]:
    out = dict(os.environ)
    for candidate in (os.environ.get("INFRA_CA_BUNDLE"), os.environ.get("PIP_CERT"), "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            out["INFRA_CA_BUNDLE"] = candidate
            break
    return out


def timed(cmd: list[str], cwd: Path = REPO, extra_env: dict[str, str] | None = None) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env={**env(), **(extra_env or {})}, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return seconds, proc.stdout


def build(*args: str, cwd: Path = REPO) -> tuple[float, dict]:
    seconds, out = timed([*INFRA, "build", "--mode", "docker-cpu", "--json", *args], cwd=cwd)
    return seconds, json.loads(out)


def statuses(summary: dict) -> dict[str, str]:
    return {i["name"]: i["status"] for i in summary["images"]}


def reset_cold() -> None:
    subprocess.run(["docker", "image", "rm", "-f", *[f"speech-{n}:latest-cpu" for n in STACK]], capture_output=True)
    subprocess.run(["docker", "buildx", "prune", "-af"], capture_output=True, check=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cold-runs", type=int, default=1)
    parser.add_argument("--skip", default="")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    rows: list[tuple[str, list[float], float | None]] = []
    notes: list[str] = []

    if "cold" not in skip:
        cold = []
        for _ in range(args.cold_runs):
            reset_cold()
            seconds, summary = build()
            cold.append(seconds)
            notes.append(f"cold: critical path {' -> '.join(summary['critical_path'])} "
                         f"({summary['critical_seconds']:.1f} s)")
        rows.append(("cold build (empty cache, downloads)", cold, None))
    else:
        build()

    # no-op: infra's up-to-date check versus bake on the rendered bake file (BuildKit answers from its cache)
    noop = [build()[0] for _ in range(args.runs)]
    bake_cmd = ["docker", "buildx", "bake", "-f", ".infra/out/docker-cpu/docker-bake.json", f"--allow=fs.read={REPO}",
                f"--allow=fs.read={env()['INFRA_CA_BUNDLE']}", "--progress=quiet", "docker-cpu"]
    timed(bake_cmd)  # bake's own first run re-exports images without infra's labels: not timed
    bake = [timed(bake_cmd)[0] for _ in range(args.runs)]
    build()  # give the images back their labels (BuildKit answers from its cache)
    rows.append(("docker buildx bake, nothing changed (baseline)", bake, None))
    rows.append(("infra build, nothing changed", noop, 2.0))

    if "code" not in skip:
        module = REPO / "stages" / "asr.py"          # one stage's own module: only the asr image copies it
        original = module.read_text() if module.exists() else None
        code = []
        try:
            for i in range(args.runs):
                module.write_text((original or "") + f"# bench edit {time.time_ns()} {i}\n")
                seconds, summary = build()
                code.append(seconds)
            rebuilt = sorted(n for n, s in statuses(summary).items() if s == "built")
            steps = {i["name"]: (i["steps_executed"], i["steps_cached"]) for i in summary["images"] if i["status"] == "built"}
            notes.append(f"code change to stages/asr.py: rebuilt {', '.join(rebuilt)}; steps run/cached {steps}")
        finally:
            if original is None:
                module.unlink(missing_ok=True)
            else:
                module.write_text(original)
            build()
        rows.append(("one change to one stage's code", code, None))

    if "pip" not in skip:
        image_yaml = REPO / "images" / "asr" / "image.yaml"
        original = image_yaml.read_text()
        warm, cold_pip = [], []
        try:
            for i, pkg in enumerate(["six==1.17.0", "six==1.16.0"] * args.runs):
                image_yaml.write_text(original.replace("pip: [faster-whisper==1.2.1]",
                                                       f'pip: [faster-whisper==1.2.1, "{pkg}"]'))
                if i % 2 == 0:
                    warm.append(build("--only", "asr")[0])
                else:
                    cold_pip.append(build("--only", "asr", "--no-cache")[0])
        finally:
            image_yaml.write_text(original)
            build()
        rows.append(("pip change, --no-cache (baseline)", cold_pip, None))
        rows.append(("pip change, warm cache", warm, None))

    if "parallel" not in skip:
        par, seq = [], []
        for _ in range(max(1, args.runs // 2)):
            seq.append(build("--no-cache", "--jobs", "1")[0])
            par.append(build("--no-cache", "--jobs", "2")[0])
        rows.append(("whole stack --no-cache, --jobs 1 (baseline)", seq, None))
        rows.append(("whole stack --no-cache, --jobs 2", par, None))

    if "size" not in skip:
        with tempfile.TemporaryDirectory() as tmp:
            project = Path(tmp)
            text = (REPO / "infra.yaml").read_text()
            text = text.replace("project: speech", "project: speechbaked")
            text = text.replace("torch: mounted", "torch: baked").replace(
                'torch_version: "2.13.0"', 'torch_version: "2.13.0"\n  wheelhouse: /opt/wheels')
            (project / "infra.yaml").write_text(text)
            shutil.copytree(REPO / "images", project / "images")
            timed([*INFRA, "build", "--mode", "docker-cpu", "--only", "asr"], cwd=project)
            mounted = subprocess.run(["docker", "image", "inspect", "speech-asr:latest-cpu", "--format", "{{.Size}}"],
                                     capture_output=True, text=True, check=True).stdout
            baked = subprocess.run(["docker", "image", "inspect", "speechbaked-asr:latest-cpu", "--format", "{{.Size}}"],
                                   capture_output=True, text=True, check=True).stdout
            notes.append(f"asr image: torch mounted {int(mounted) / 1e6:.0f} MB, baked {int(baked) / 1e6:.0f} MB, "
                         f"ratio {int(mounted) / int(baked):.2f} (goal < 0.25)")

    print(f"docker-cpu stack, {args.runs} runs per warm scenario, {args.cold_runs} cold; medians")
    # A row right after a "(baseline)" row is compared with it.
    table = []
    for i, (name, samples, goal) in enumerate(rows):
        before = rows[i - 1] if i else None
        pair = before is not None and "baseline" in before[0] and "baseline" not in name
        table.append((name, samples, goal, before[1] if pair else None))
    print_table(table)
    for note in notes:
        print(note)
    print(f"median infra no-op {statistics.median(noop):.3f} s vs bake {statistics.median(bake):.3f} s: "
          f"{statistics.median(bake) / statistics.median(noop):.1f}x faster (goal >= 5x)")


if __name__ == "__main__":
    main()
