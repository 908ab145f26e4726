"""`infra serve` under load: concurrent whisper-asr-webservice /asr requests against `infra run` as a batch, and
the service's own time per request beyond its job's.

The clips: ``--clips`` (20) distinct short clips, each two lines of espeak-ng in two voices (the first line names
the clip, so no two clips are the same bytes and the batch machinery runs every one), as 16 kHz mono WAV.
Each side runs in a fresh workspace of its own (the built-in spec, the repository's .venv-ml, a warm hardware
cache, Whisper ``--model`` from a cache fetched once), natively, with one untimed warm-up clip first.

- **The service**: `infra serve` (``--films-at-once``), INFRA_SERVE_MODEL and INFRA_SERVE_MODE=native; every
  clip's samples POSTed at once from one thread each, as Bazarr's provider sends them (raw PCM,
  ``encode=false``, ``output=srt``, ``language=en``); a request's latency is from the common start to its
  answer. Throughput: clips a minute over the wall time until the last answer.
- **The batch**: `infra run DIR --mode native --model M --language en` over the same clips' WAV files; a
  film's latency is from the command's start to the last write of its job.json.
- **Rounds**: ``--rounds`` (3) native rounds, each with fresh workspaces, the service first in one round and the
  batch first in the next; the table shows medians over the rounds. ``job`` is the median job's critical path
  (its longest chain of stages by their wall_s: demux, vad and asr or diarize, subtitles, mux) and ``idle``
  the wall time that no job's critical path covers (natively, one film runs at a time).
- **The stack** (``--stack``): the same through the docker-cpu stack's workers, ``--stack-rounds`` rounds, each
  in a fresh workspace with the spec of ``--stack-spec`` (`infra up --build`, the service and `infra run
  --submit DIR` in turns, each side with a set of clips of its own, then `infra down`). Stacks are named by
  their spec's project: on an engine that others use, give a copy of the spec with a project name of its own
  (and its own infra.lock, from `infra lock`), so that nobody else's `infra down` takes the bench's workers.
- **The service's own time**: ``--sequential`` (5) more clips, one request at a time. The job's time is from the
  claim of its id (``jobs/<id>``, made as its job is prepared) to the last write of its job.json (the final
  status); the rest of the request's latency is the service's: the HTTP request and answer, keeping the
  upload (hash, ffprobe), the batch machinery's run key and job preparation up to the claim, and the wait for
  the job's end (polled every 50 ms). Part of it is what `infra run` also does for every film (the run key, the
  preparation up to the claim): measured in the batch as the time from one job's end to the next one's claim,
  and subtracted for the service's own time. Goal: under 50 ms.

Usage: .venv/bin/python bench/serve.py [--clips 20] [--sequential 5] [--rounds 3] [--model tiny.en]
                                       [--stack [--stack-rounds 1] [--stack-spec DIR]] [--films-at-once 1]
                                       [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import wave
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
INFRA = [sys.executable, "-m", "infra"]
JOB_ID = re.compile(r"^\d{8}-\d{4}$")
VOICES = (("en-us+m3", 35, 150), ("en-gb+f4", 75, 160))
LINES = ("Then we should hurry, the last train to the coast leaves at nine.",
         "Your keys are on the table by the door, next to the red umbrella.",
         "Thank you. Let us leave before the rain starts again.")
NUMBERS = ("one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
           "seventeen eighteen nineteen twenty").split()


def sh(*cmd: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd[:3])} ... failed:\n{proc.stderr[-2000:]}")


def make_clip(folder: Path, number: int, tag: str) -> Path:
    """Two lines in two voices, the first naming the clip, as a 16 kHz mono WAV."""
    word = NUMBERS[number % len(NUMBERS)] + ("" if number < len(NUMBERS) else f" {tag}")
    lines = (f"This is clip {word} of the {tag} set.", LINES[number % len(LINES)])
    parts = []
    for i, ((voice, pitch, speed), line) in enumerate(zip(VOICES, lines)):
        part = folder / f".{tag}{number}-{i}.wav"
        sh("espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(speed), "-w", str(part), line)
        parts.append(part)
    clip = folder / f"{tag}{number:02d}.wav"
    sh("ffmpeg", "-v", "error", "-nostdin", "-y", "-i", str(parts[0]), "-i", str(parts[1]), "-filter_complex",
       "[0:a]apad=pad_dur=0.5[a];[a][1:a]concat=n=2:v=0:a=1,aresample=16000[out]", "-map", "[out]", "-ac", "1",
       "-c:a", "pcm_s16le", str(clip))
    for part in parts:
        part.unlink()
    return clip


def pcm_of(clip: Path) -> bytes:
    with wave.open(str(clip)) as w:
        return w.readframes(w.getnframes())


def workspace(root: Path, snapshot: Any) -> Path:
    from infra.hardware.cache import fingerprint, write_cache

    root.mkdir(parents=True)
    (root / ".venv-ml").symlink_to(REPO / ".venv-ml")
    write_cache(root / "out" / "hardware_cache.json", snapshot, fingerprint())
    return root


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def job_times(ws: Path, job_id: str) -> tuple[float, float]:
    """When the job's id was claimed and when its job.json was last written (seconds since the epoch)."""
    claim = ws / "jobs" / job_id
    job_dir = ws / claim.read_text().strip()
    return claim.stat().st_mtime, (job_dir / "job.json").stat().st_mtime


def critical_path(ws: Path, job_id: str) -> float:
    """The job's longest chain of stages by their wall_s (demux, then vad and asr or diarize, subtitles, mux)."""
    job = json.loads((ws / (ws / "jobs" / job_id).read_text().strip() / "job.json").read_text())
    stages = {s["name"]: s for s in job["stages"]}
    done: dict[str, float] = {}

    def finish(name: str) -> float:
        if name not in done:
            done[name] = max((finish(a) for a in stages[name].get("after", [])), default=0.0) + \
                float(stages[name].get("wall_s") or stages[name].get("worker_seconds") or 0.0)
        return done[name]
    return max(finish(name) for name in stages)


def summary(ws: Path, jobs: list[str], wall: float, latencies: list[float]) -> dict[str, Any]:
    paths = [critical_path(ws, job) for job in jobs]
    return {"wall_s": wall, "latencies_s": latencies, "critical_path_s": paths, "idle_s": wall - sum(paths),
            "jobs": len(set(jobs))}


class Service:
    def __init__(self, ws: Path, env: dict[str, str], films_at_once: int) -> None:
        self.ws = ws
        self.url = f"http://127.0.0.1:{free_port()}"
        self.proc = subprocess.Popen([*INFRA, "serve", "--port", self.url.rsplit(":", 1)[1], "--films-at-once",
                                      str(films_at_once)], cwd=ws, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.session = requests.Session()
        self.session.trust_env = False
        deadline = time.monotonic() + 60
        while True:
            try:
                if self.session.get(self.url + "/healthz", timeout=5).ok:
                    return
            except requests.RequestException:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"infra serve did not start:\n{self.stop()[-3000:]}")
            time.sleep(0.2)

    def asr(self, pcm: bytes) -> tuple[str, float, float]:
        """One Bazarr-style request: its job id, when it was sent and when its answer was read (epoch seconds)."""
        session = requests.Session()
        session.trust_env = False
        sent = time.time()
        answer = session.post(f"{self.url}/asr", params={"task": "transcribe", "language": "en", "output": "srt",
                                                         "encode": "false"},
                              files={"audio_file": pcm}, timeout=3600)
        done = time.time()
        if answer.status_code != 200 or "-->" not in answer.text:
            sys.exit(f"/asr answered {answer.status_code}: {answer.text[:500]}")
        return answer.headers["infra-job"], sent, done

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.communicate(timeout=120)[0]


def concurrent(service: Service, pcms: list[bytes]) -> dict[str, Any]:
    results: list[tuple[str, float, float] | None] = [None] * len(pcms)
    gate = threading.Barrier(len(pcms) + 1)

    def one(i: int) -> None:
        gate.wait()
        results[i] = service.asr(pcms[i])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(pcms))]
    for t in threads:
        t.start()
    start = time.time()
    gate.wait()
    for t in threads:
        t.join()
    done = [r for r in results if r is not None]
    if len(done) != len(pcms):
        sys.exit("a request did not answer")
    latencies = [end - start for _, _, end in done]
    return summary(service.ws, [job for job, _, _ in done], max(latencies), latencies)


def sequential(service: Service, pcms: list[bytes]) -> dict[str, Any]:
    rows = []
    for pcm in pcms:
        job, sent, done = service.asr(pcm)
        claimed, finished = job_times(service.ws, job)
        rows.append({"latency_s": done - sent, "job_s": finished - claimed, "before_claim_s": claimed - sent,
                     "after_job_s": done - finished, "overhead_s": (done - sent) - (finished - claimed)})
    return {"rows": rows}


def batch(ws: Path, folder: Path, warm: Path, flags: list[str], env: dict[str, str]) -> dict[str, Any]:
    subprocess.run([*INFRA, "run", str(warm), *flags], cwd=ws, env=env, check=True, capture_output=True)
    before = set((ws / "jobs").iterdir())
    start = time.time()
    proc = subprocess.run([*INFRA, "run", str(folder), *flags], cwd=ws, env=env, capture_output=True, text=True)
    wall = time.time() - start
    if proc.returncode != 0:
        sys.exit(f"infra run failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    jobs = sorted(p.name for p in set((ws / "jobs").iterdir()) - before if JOB_ID.match(p.name))
    times = sorted(job_times(ws, job) for job in jobs)
    gaps = [claimed - ended for (_, ended), (claimed, _) in zip(times, times[1:])]
    return {**summary(ws, jobs, wall, [end - start for _, end in times]), "between_films_s": gaps}


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def stack_workspace(root: Path, snapshot: Any, cache: Path, model: str, spec: Path) -> Path:
    """The spec in ``spec`` (infra.yaml, infra.lock, images/), the model in the workspace's own cache (the
    workers read that one)."""
    ws = workspace(root, snapshot)
    for name in ("infra.yaml", "infra.lock"):
        shutil.copy(spec / name, ws / name)
    shutil.copytree(spec / "images", ws / "images")
    shutil.copytree(cache / "whisper" / model, ws / "shared-model-and-cache" / "whisper" / model)
    return ws


def run_native(args: argparse.Namespace, root: Path, clips: dict[str, list[Path]], snapshot: Any,
               env: dict[str, str]) -> dict[str, Any]:
    """``--rounds`` rounds, each with fresh workspaces, the service first in one round and the batch in the next
    (so that load from other work falls on both alike)."""
    env = {**env, "INFRA_CACHE": str(args.cache), "INFRA_SERVE_MODE": "native"}
    flags = ["--mode", "native", "--model", args.model, "--language", "en"]
    out: dict[str, list] = {"served": [], "batched": [], "alone": []}
    for r in range(args.rounds):
        def serve() -> None:
            service = Service(workspace(root / f"r{r}-serve-ws", snapshot), env, args.films_at_once)
            try:
                service.asr(pcm_of(clips["warm"][0]))
                out["alone"] += sequential(service, [pcm_of(c) for c in clips["alone"]])["rows"]
                out["served"].append(concurrent(service, [pcm_of(c) for c in clips["load"]]))
            finally:
                service.stop()

        def run() -> None:
            out["batched"].append(batch(workspace(root / f"r{r}-batch-ws", snapshot), clips["load"][0].parent,
                                        clips["warm"][1], flags, env))
        for step in ((serve, run) if r % 2 == 0 else (run, serve)):
            step()
        print(f"round {r + 1}: service {out['served'][-1]['wall_s']:.1f} s, batch {out['batched'][-1]['wall_s']:.1f} s",
              flush=True)
    return out


def run_stack(args: argparse.Namespace, root: Path, clips: dict[str, list[Path]], snapshot: Any,
              env: dict[str, str]) -> dict[str, Any] | None:
    """The same through the docker-cpu stack's workers, ``--stack-rounds`` rounds: each in a fresh workspace,
    `infra up --build`, the service and `infra run --submit DIR` (the service first in one round, the batch
    in the next; in one workspace, so each side has its own set of clips, the sets swapped every round), then
    `infra down`."""
    env = {**env, "INFRA_SERVE_MODE": "docker-cpu"}
    flags = ["--submit", "--mode", "docker-cpu", "--model", args.model, "--language", "en"]
    out: dict[str, list] = {"served": [], "batched": []}
    for r in range(args.stack_rounds):
        ws = stack_workspace(root / f"r{r}-stack-ws", snapshot, args.cache, args.model, args.stack_spec)
        up = subprocess.run([*INFRA, "up", "--mode", "docker-cpu", "--build"], cwd=ws, env=env, capture_output=True,
                            text=True)
        if up.returncode != 0:
            print(f"infra up --build failed, no figures for the stack:\n{up.stdout[-1500:]}\n{up.stderr[-1500:]}")
            return None
        mine, theirs = ("load", "other") if r % 2 == 0 else ("other", "load")
        try:
            def serve() -> None:
                service = Service(ws, env, args.films_at_once)
                try:
                    service.asr(pcm_of(clips["warm"][2]))
                    out["served"].append(concurrent(service, [pcm_of(c) for c in clips[mine]]))
                finally:
                    service.stop()

            def run() -> None:
                out["batched"].append(batch(ws, clips[theirs][0].parent, clips["warm"][3], flags, env))
            for step in ((serve, run) if r % 2 == 0 else (run, serve)):
                step()
        finally:
            subprocess.run([*INFRA, "down", "--mode", "docker-cpu"], cwd=ws, env=env, capture_output=True)
        print(f"stack round {r + 1}: service {out['served'][-1]['wall_s']:.1f} s, "
              f"batch {out['batched'][-1]['wall_s']:.1f} s", flush=True)
    return out


def main() -> None:
    from infra.hardware.detect import detect_hardware
    from infra.models.catalogue import fetch_models

    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--sequential", type=int, default=5)
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--films-at-once", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3, help="native rounds (service and batch each), medians")
    parser.add_argument("--stack", action="store_true", help="also through the docker-cpu stack's workers")
    parser.add_argument("--stack-rounds", type=int, default=1)
    parser.add_argument("--stack-spec", type=Path, default=REPO,
                        help="the folder of the stack's spec (infra.yaml, infra.lock, images/); a copy with a project "
                             "name of its own keeps the bench's stack apart from others on the same engine")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "infra" / "bench-models")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    outcome = [e for e in fetch_models([f"whisper/{args.model}"], args.cache, None) if e.kind in ("done", "present",
                                                                                                  "failed")]
    if not outcome or outcome[-1].kind == "failed":
        sys.exit(f"cannot fetch whisper/{args.model}")
    env = {k: v for k, v in os.environ.items() if k not in ("INFRA_FILE", "INFRA_SERVE_TOKEN", "INFRA_CACHE")}
    env["INFRA_SERVE_MODEL"] = args.model
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="infra-bench-serve-") as tmp:
        root = Path(tmp)
        clips: dict[str, list[Path]] = {}
        for tag, count in (("load", args.clips), ("other", args.clips if args.stack else 0),
                           ("alone", args.sequential), ("warm", 4)):
            (root / tag).mkdir()
            clips[tag] = [make_clip(root / tag, i, tag) for i in range(count)]
        snapshot = detect_hardware(root, REPO / ".venv-ml")
        results = {"native": run_native(args, root, clips, snapshot, env)} if args.rounds else {}
        if args.json:                        # kept should the stack's part fail
            args.json.write_text(json.dumps(results, indent=1))
        if args.stack:
            stack = run_stack(args, root, clips, snapshot, env)
            if stack is not None:
                results["stack"] = stack
    load_after = os.getloadavg()
    report(args, results, load_before, load_after)


def report(args: argparse.Namespace, results: dict[str, dict], before: tuple, after: tuple) -> None:
    if args.json:
        args.json.write_text(json.dumps({**results, "load": [before, after]}, indent=1))
    n = args.clips
    med = statistics.median
    print(f"{n} clips, whisper {args.model}, films at once {args.films_at_once}, {args.rounds} native rounds "
          f"(medians over rounds); load average {before[0]:.1f} before, {after[0]:.1f} after")
    print(f"{'':46} {'wall':>8} {'clips/min':>10} {'p50':>8} {'p95':>8} {'job':>7} {'idle':>7}")
    for where, result in results.items():
        runner = "infra run DIR" if where == "native" else "infra run --submit DIR"
        for name, runs in ((f"{where}: {runner} (baseline)", result["batched"]),
                           (f"{where}: {n} concurrent /asr", result["served"])):
            wall = med(r["wall_s"] for r in runs)
            print(f"{name:46} {wall:7.2f}s {60 * n / wall:10.2f} {med(med(r['latencies_s']) for r in runs):7.2f}s "
                  f"{med(pct(r['latencies_s'], 0.95) for r in runs):7.2f}s "
                  f"{med(med(r['critical_path_s']) for r in runs):6.2f}s "
                  + (f"{med(r['idle_s'] for r in runs):6.2f}s" if where == "native" else f"{'-':>7}"))
        pairs = list(zip(result["served"], result["batched"]))
        throughput = med(b["wall_s"] / s["wall_s"] for s, b in pairs)
        p50 = med(med(s["latencies_s"]) / med(b["latencies_s"]) for s, b in pairs)
        p95 = med(pct(s["latencies_s"], 0.95) / pct(b["latencies_s"], 0.95) for s, b in pairs)
        print(f"{where}, medians of each round's ratio: throughput service / batch {throughput:.3f}x, latency "
              f"service / batch p50 {p50:.3f}x, p95 {p95:.3f}x")
    if "native" not in results:
        return
    rows = results["native"]["alone"]
    gap = med(g for r in results["native"]["batched"] for g in r["between_films_s"])

    def m(key: str) -> float:
        return med(r[key] for r in rows)
    print(f"native, one request at a time ({len(rows)}): latency {m('latency_s'):.3f} s, job {m('job_s'):.3f} s; "
          f"beyond the job {1000 * m('overhead_s'):.0f} ms (min {1000 * min(r['overhead_s'] for r in rows):.0f}, "
          f"max {1000 * max(r['overhead_s'] for r in rows):.0f}): {1000 * m('before_claim_s'):.0f} ms up to the "
          f"job's claim, {1000 * m('after_job_s'):.0f} ms after its job.json's last write")
    print(f"infra run's own time between two films (end of one job to the claim of the next): {1000 * gap:.0f} ms; "
          f"the service's own beyond that: {1000 * (m('overhead_s') - gap):.0f} ms (goal < 50 ms)")


if __name__ == "__main__":
    main()
