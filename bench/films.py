"""Full-length films: wall time and peak memory of each stage and of the whole run, at 10 min, 1 h and 2 h.

The films are made here from real speech, nothing is downloaded but pyannote.audio's wheel (for its 30 s
two-speaker sample.wav, as bench/quality.py does): a unit of about two and a half minutes joins that
sample, espeak-ng lines in two voices, silence and a music-like chord with noise; a film loops the unit to
its length under a small black picture, as an MP4 with stereo AAC audio, like a real film's.

Each run is `infra job prepare` + `infra job run` (so nothing is skipped as already done), Whisper base
int8, language en, natively and in docker-cpu, stages side by side (the default) and, with
--sequential-too, one at a time. Figures come from job.json: each stage's wall_s and peak_rss_mb.
Ratios printed: whole run / ASR stage, 2 h / 1 h, docker-cpu / native, and the largest peak RSS.
The last part times a rerun of a finished film through `infra run` (it must be reported done, not run).

Usage: .venv/bin/python bench/films.py [--lengths 600,3600,7200] [--modes native,docker-cpu] [--runs 1]
                                       [--docker-lengths 600,7200] [--sequential-too] [--model base] [--json out.json]
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
from quality import sample_files  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
INFRA = [sys.executable, "-m", "infra"]
STAGES = ("demux", "vad", "asr", "diarize", "subtitles", "mux")
LINES = ("Good evening, and welcome back to the show.", "Thank you, it is a pleasure to be here again.",
         "Tell us how the film came together.", "It took three years, two cities and a lot of patience.",
         "And the music? Everyone is talking about the music.", "The songs were written before the script, "
         "which is not how we usually work.")


def sh(*cmd: str, cwd: Path | None = None) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd[:3])} ... failed:\n{proc.stderr[-2000:]}")


def infra(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*INFRA, *args], cwd=cwd, capture_output=True, text=True, env=env or dict(os.environ))
    if proc.returncode != 0:
        sys.exit(f"infra {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return proc


def make_unit(folder: Path, sample: Path) -> Path:
    """About 150 s of 16 kHz mono: real two-speaker speech, synthetic dialogue, silence, music and noise."""
    parts = []
    for i, line in enumerate(LINES):
        wav = folder / f"line{i}.wav"
        voice, pitch = ("en-us", 40) if i % 2 == 0 else ("en+f3", 70)
        sh("espeak-ng", "-v", voice, "-p", str(pitch), "-s", "150", "-w", str(wav), line)
        parts.append(wav)
    music = folder / "music.wav"
    sh("ffmpeg", "-y", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=220:duration=20",
       "-f", "lavfi", "-i", "sine=frequency=277:duration=20", "-f", "lavfi", "-i", "sine=frequency=330:duration=20",
       "-f", "lavfi", "-i", "anoisesrc=color=pink:amplitude=0.05:duration=20",
       "-filter_complex", "amix=inputs=4,volume=0.6", "-ar", "16000", "-ac", "1", str(music))
    silence = folder / "silence.wav"
    sh("ffmpeg", "-y", "-v", "error", "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "8", str(silence))
    order = [sample, silence, *parts, music, sample, silence, *reversed(parts), sample, music, silence]
    listing = folder / "unit.txt"
    listing.write_text("".join(f"file '{p}'\n" for p in order))
    unit = folder / "unit.wav"
    sh("ffmpeg", "-y", "-v", "error", "-f", "concat", "-safe", "0", "-i", str(listing), "-ar", "16000", "-ac", "1",
       str(unit))
    return unit


def make_film(folder: Path, unit: Path, seconds: int) -> Path:
    film = folder / f"film-{seconds}s.mp4"
    if not film.exists():
        sh("ffmpeg", "-y", "-v", "error", "-stream_loop", "-1", "-i", str(unit),
           "-f", "lavfi", "-i", "color=c=black:s=160x90:r=1", "-t", str(seconds), "-map", "1:v", "-map", "0:a",
           "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-ac", "2", "-b:a", "96k", "-shortest", str(film))
    return film


def run_film(work: Path, film: Path, mode: str, model: str, sequential: bool, env: dict[str, str]) -> dict:
    """One prepared job run to the end; stage walls and memory from job.json, the whole run's wall."""
    if mode != "native":
        infra("build", "--mode", mode, cwd=work, env=env)      # a no-op unless the stage code changed meanwhile
    job = json.loads(infra("job", "prepare", str(film), "--mode", mode, "--model", model, "--language", "en",
                           "--json", cwd=work, env=env).stdout)
    start = time.perf_counter()
    infra("job", "run", job["id"], *(["--sequential"] if sequential else []), cwd=work, env=env)
    wall = time.perf_counter() - start
    data = json.loads((work / job["dir"] / "job.json").read_text())
    stages = {s["name"]: s for s in data["stages"]}
    return {"wall_s": wall, "duration_s": job["input"]["duration_s"],
            "stages": {n: {"wall_s": stages[n].get("wall_s"), "peak_rss_mb": stages[n].get("peak_rss_mb"),
                           "threads": stages[n].get("threads")} for n in STAGES if n in stages}}


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report(results: dict[str, list[dict]]) -> None:
    print(f"{'run':34} {'n':>2} {'whole':>8} {'asr':>8} {'whole/asr':>9} {'max RSS':>8}  per stage wall s (peak MB)")
    for key, runs in results.items():
        whole = median([r["wall_s"] for r in runs])
        asr = median([r["stages"]["asr"]["wall_s"] for r in runs])
        rss = max(max((s["peak_rss_mb"] or 0) for s in r["stages"].values()) for r in runs)
        detail = " ".join(f"{n} {median([r['stages'][n]['wall_s'] for r in runs]):.0f}"
                          f"({max((r['stages'][n]['peak_rss_mb'] or 0) for r in runs):.0f})"
                          for n in STAGES)
        print(f"{key:34} {len(runs):>2} {whole:7.1f}s {asr:7.1f}s {whole / asr:8.2f}x {rss:6.0f}MB  {detail}")
    for mode in ("native", "docker-cpu"):
        one, two = results.get(f"{mode} 3600s parallel"), results.get(f"{mode} 7200s parallel")
        if one and two:
            print(f"{mode}: 2 h / 1 h = {median([r['wall_s'] for r in two]) / median([r['wall_s'] for r in one]):.2f}"
                  " (goal <= 2.2)")
    for seconds in sorted({int(k.split()[1][:-1]) for k in results}):
        native, docker = results.get(f"native {seconds}s parallel"), results.get(f"docker-cpu {seconds}s parallel")
        if native and docker:
            ratio = median([r["wall_s"] for r in docker]) / median([r["wall_s"] for r in native])
            print(f"{seconds} s: docker-cpu / native = {ratio:.2f} (goal <= 1.1)")
        seq, par = results.get(f"native {seconds}s sequential"), results.get(f"native {seconds}s parallel")
        if seq and par:
            ratio = median([r["wall_s"] for r in par]) / median([r["wall_s"] for r in seq])
            print(f"{seconds} s native: side by side / one at a time = {ratio:.2f} (below 1: side by side is faster)")


def rerun_of_a_finished_film(work: Path, film: Path, model: str, env: dict[str, str], runs: int = 5) -> list[float]:
    """`infra run FILM` once to the end, then timed again: each rerun must report the film done."""
    infra("run", str(film), "--mode", "native", "--model", model, "--language", "en", cwd=work, env=env)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        out = infra("run", str(film), "--mode", "native", "--model", model, "--language", "en", cwd=work, env=env)
        times.append(time.perf_counter() - start)
        if "done" not in (out.stdout + out.stderr).lower():
            sys.exit(f"the rerun did not report the film done:\n{out.stdout}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lengths", default="600,3600,7200", help="film lengths in seconds")
    parser.add_argument("--modes", default="native,docker-cpu")
    parser.add_argument("--docker-lengths", help="run docker-cpu only for these lengths (default: every length)")
    parser.add_argument("--runs", type=int, default=1, help="runs of each length and mode (medians)")
    parser.add_argument("--sequential-too", action="store_true", help="also run the shortest film one stage at a time")
    parser.add_argument("--model", default="base")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "infra" / "bench")
    parser.add_argument("--json", type=Path, help="write every run's figures here")
    args = parser.parse_args()
    lengths = [int(x) for x in args.lengths.split(",")]
    modes = args.modes.split(",")
    sample = sample_files(args.cache)["wav"]
    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="infra-films-") as tmp:
        work = Path(tmp)
        (work / ".venv-ml").symlink_to(REPO / ".venv-ml")
        # a spec of its own, so that its images (films-*) never meet a test run's (speech-*) on one engine
        (work / "infra.yaml").write_text((REPO / "infra.yaml").read_text().replace("project: speech", "project: films"))
        shutil.copytree(REPO / "images", work / "images")
        media = work / "media"
        media.mkdir()
        unit = make_unit(media, sample)
        infra("bootstrap", "--model", f"whisper/{args.model}", cwd=work, env=env)
        if "docker-cpu" in modes:
            infra("build", "--mode", "docker-cpu", cwd=work, env=env)
        results: dict[str, list[dict]] = {}
        for seconds in lengths:
            film = make_film(media, unit, seconds)
            docker_lengths = [int(x) for x in args.docker_lengths.split(",")] if args.docker_lengths else lengths
            variants = [(m, False) for m in modes if m != "docker-cpu" or seconds in docker_lengths]
            if args.sequential_too and seconds == min(lengths):
                variants.append(("native", True))
            for _ in range(args.runs):
                for mode, sequential in variants:
                    key = f"{mode} {seconds}s {'sequential' if sequential else 'parallel'}"
                    results.setdefault(key, []).append(run_film(work, film, mode, args.model, sequential, env))
                    print(f"done: {key} in {results[key][-1]['wall_s']:.1f} s", file=sys.stderr, flush=True)
        report(results)
        rerun = rerun_of_a_finished_film(work, make_film(media, unit, min(lengths)), args.model, env)
        print(f"rerun of a finished film: median {median(rerun):.3f} s over {len(rerun)} (goal < 0.5 s)")
        if args.json:
            args.json.write_text(json.dumps({"runs": results, "rerun_s": rerun}, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
