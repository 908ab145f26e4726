"""The stage workers on a multi-node swarm: ten jobs on three nodes against the same ten on one, the time from
`infra deploy` to every worker running, and the time to recover a stage when its node is killed.

The swarm is the test swarm (tests/integration/swarm_nodes.py): this engine as the manager plus --nodes nodes
that are containers with their own engines, a TLS registry, the project folder shared by all. The jobs are the
integration test's probe stages (demux, asr, mux: each imports torch from the native environment delivered
through the registry, then writes a file), so the figures measure infra's distribution of work, not the
speech models. Every node shares this machine's CPUs: three nodes cannot be faster than one at CPU-bound work
here, and the ratio says what the spreading costs or saves in overhead, not what a fleet of real machines gains.

- deploy: seconds from `infra deploy` to every worker running, first on nodes that have nothing (they pull the
  images and the environment, and copy it into their volume), then again after `--down` (images and the
  environment's folder are on the nodes; the deploy checks and starts);
- ten jobs: wall seconds from submitting ten jobs at once to all done, with the workers spread over every node,
  and with every node but the manager drained (the same workers, all on one node); per-node stage counts;
  --rounds rounds, alternating, medians and the ratio within each round;
- recovery: a job whose `asr` stage sleeps 25 s; its node is killed while it runs; seconds from the kill to
  another worker's claim (goal: claim timeout + under 10 s) and to the job done; the node is restarted after.

Usage: .venv/bin/python bench/swarm.py [--nodes 2] [--rounds 3] [--recoveries 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from tests.integration import swarm_nodes  # noqa: E402
from tests.integration.test_swarm_nodes import (CLAIM_TIMEOUT_S, forget_project, infra, job_dir,  # noqa: E402
                                                job_file, make_project, prepare, wait_done)

MODE = "docker-cpu"
SCALE = ["--scale", "demux=3", "--scale", "asr=3", "--scale", "mux=3"]


def ok(result: subprocess.CompletedProcess, what: str) -> subprocess.CompletedProcess:
    if result.returncode != 0:
        raise SystemExit(f"{what} failed: {result.stderr[-2000:]}{result.stdout[-1000:]}")
    return result


def timed_deploy(project: Path) -> float:
    start = time.monotonic()
    ok(infra("deploy", "--mode", MODE, *SCALE, cwd=project), "deploy")
    return time.monotonic() - start


def set_availability(nodes: list[str], availability: str) -> None:
    for name in nodes:
        swarm_nodes.docker("node", "update", "--availability", availability, name)


def wait_workers_on(project: Path, allowed: set[str], spread: bool = False) -> None:
    """Until the nine workers run on ``allowed`` nodes (with ``spread``: each stage's three on three nodes)."""
    deadline = time.monotonic() + 300
    while True:
        tasks = json.loads(infra("ps", "--target", "swarm", "--mode", MODE, "--json", cwd=project).stdout)["tasks"]
        workers = [t for t in tasks if t["service"] in ("demux", "asr", "mux")]
        placed = all(len({t["node"] for t in workers if t["service"] == s}) == 3 for s in ("demux", "asr", "mux"))
        if len(workers) == 9 and all(t["state"] == "running" and t["node"] in allowed for t in workers) \
                and (placed or not spread):
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"workers did not settle on {allowed}: {workers}")
        time.sleep(2)


def ten_jobs(project: Path, first_clip: int) -> tuple[float, dict[str, int]]:
    jobs = [prepare(project, first_clip + i) for i in range(10)]
    start = time.monotonic()
    for job_id in jobs:
        ok(infra("job", "submit", job_id, cwd=project), "submit")
    finished = wait_done(project, jobs, timeout=900)
    seconds = time.monotonic() - start
    counts: dict[str, int] = {}
    for job in finished.values():
        if job["status"] != "done":
            raise SystemExit(f"a job failed: {job}")
        for stage in job["stages"]:
            counts[stage["node"]] = counts.get(stage["node"], 0) + 1
    return seconds, counts


def recovery(project: Path, swarm: swarm_nodes.TestSwarm, clip: int) -> tuple[float, float]:
    job_id = prepare(project, clip)
    (job_dir(project, job_id) / "slow").write_text("")
    ok(infra("job", "submit", job_id, cwd=project), "submit")
    while True:
        work = next(s for s in job_file(project, job_id)["stages"] if s["name"] == "asr")
        if work.get("status") == "running" and work.get("node") in swarm.nodes:
            break
        time.sleep(0.2)
    victim = work["node"]
    time.sleep(2)
    killed = time.monotonic()
    swarm.kill_node(victim)
    while next(s for s in job_file(project, job_id)["stages"] if s["name"] == "asr").get("attempts", 1) < 2:
        time.sleep(0.2)
    claimed = time.monotonic() - killed
    job = wait_done(project, [job_id], timeout=600)[job_id]
    done = time.monotonic() - killed
    if job["status"] != "done":
        raise SystemExit(f"the job failed after the kill: {job}")
    swarm.restart_node(victim)
    return claimed, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--recoveries", type=int, default=2)
    parser.add_argument("--native-env", type=Path, default=REPO / ".venv-ml")
    args = parser.parse_args()
    clips = 10 * 2 * args.rounds + args.recoveries
    with tempfile.TemporaryDirectory(prefix="infra-bench-swarm-") as tmp:
        project = Path(tmp)
        swarm = swarm_nodes.up(nodes=args.nodes, shared=[str(project)])
        try:
            make_project(project, swarm.registry, args.native_env, clips=clips)
            ok(infra("build", "--mode", MODE, "--push", cwd=project), "build --push")
            ok(infra("env", "push", cwd=project), "env push")
            cold = timed_deploy(project)
            ok(infra("deploy", "--mode", MODE, "--down", cwd=project), "deploy --down")
            time.sleep(10)
            warm = timed_deploy(project)
            manager = swarm_nodes.docker("info", "--format", "{{.Name}}").stdout.strip()
            spread, single, ratios, counts = [], [], [], []
            clip = 0
            for _ in range(args.rounds):
                set_availability(swarm.nodes, "active")
                for stage in ("demux", "asr", "mux"):   # swarm does not move running tasks back by itself
                    swarm_nodes.docker("service", "update", "--detach", "--force", f"fleet-{MODE}_{stage}")
                wait_workers_on(project, set(swarm.nodes) | {manager}, spread=True)
                many, per_node = ten_jobs(project, clip)
                clip += 10
                set_availability(swarm.nodes, "drain")
                wait_workers_on(project, {manager})
                one, _ = ten_jobs(project, clip)
                clip += 10
                spread.append(many)
                single.append(one)
                ratios.append(many / one)
                counts.append(per_node)
                print(f"round: {len(swarm.nodes) + 1} nodes {many:.1f} s {per_node}, one node {one:.1f} s", flush=True)
            set_availability(swarm.nodes, "active")
            set_availability([manager], "drain")
            ok(infra("deploy", "--mode", MODE, *SCALE, cwd=project), "deploy")
            wait_workers_on(project, set(swarm.nodes))
            recoveries = [recovery(project, swarm, clip + i) for i in range(args.recoveries)]
            set_availability([manager], "active")
        finally:
            infra("deploy", "--mode", MODE, "--down", cwd=project, timeout=120)
            swarm_nodes.down()
            forget_project("fleet")
    print(json.dumps({
        "nodes": len(swarm.nodes) + 1, "claim_timeout_s": CLAIM_TIMEOUT_S,
        "deploy_cold_s": round(cold, 1), "deploy_warm_s": round(warm, 1),
        "ten_jobs_spread_s": [round(x, 1) for x in spread], "ten_jobs_one_node_s": [round(x, 1) for x in single],
        "median_spread_s": round(statistics.median(spread), 1),
        "median_one_node_s": round(statistics.median(single), 1),
        "ratios": [round(r, 2) for r in ratios], "median_ratio": round(statistics.median(ratios), 2),
        "stages_per_node": counts,
        "recovery_claim_s": [round(c, 1) for c, _ in recoveries],
        "recovery_done_s": [round(d, 1) for _, d in recoveries],
    }, indent=1))


if __name__ == "__main__":
    main()
