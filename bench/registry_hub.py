"""The registry as the hub: what a fresh CI runner costs when the registry holds the last push.

A second Docker engine with an empty data root stands in for the fresh runner (tests/integration/
fresh_engine.py); it is emptied (every image, all build cache) before each timed run. A registry
process on loopback holds the pushes. The project is a copy of the default spec whose `registry`
names that registry, in a git repository; the stage code comes from a copy of the repository so a
stage can change without touching the checkout.

Scenarios, on the docker-cpu stack (seven images):
  cold       empty engine, empty registry: `infra build --push` builds all seven and pushes them
  in-reg     empty engine, the registry holds the last push: `infra build --push` (goal < 5 s)
  bake       empty engine, same registry: `docker buildx bake --push` on the rendered bake file with
             every target importing its registry cache (the baseline; goal: in-reg at least 10x less);
             the offline base is pulled before each run, untimed, since bake cannot make it
  one-stage  empty engine, one line changed in stages/asr.py: `infra build --push` rebuilds asr only
             (goal < 1/4 of cold)

Usage: .venv/bin/python bench/registry_hub.py [--runs 5] [--cold-runs 1] [--bake-runs 3] [--change-runs 3]
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from tests.integration.conftest import free_port, start_registry, stop_registry  # noqa: E402
from tests.integration.fresh_engine import FreshEngine, started  # noqa: E402
from timing import print_table  # noqa: E402

STACK = ["base", "base-ml", "ffmpeg", "subtitles", "asr", "diarization", "pyannote-vad"]


def ca_env() -> dict[str, str]:
    for candidate in (os.environ.get("INFRA_CA_BUNDLE"), os.environ.get("PIP_CERT"), "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return {"INFRA_CA_BUNDLE": candidate}
    return {}


class Bench:
    def __init__(self, code: Path, project: Path, engine: FreshEngine) -> None:
        self.code, self.project, self.engine = code, project, engine
        self.env = {**os.environ, **ca_env(), **engine.env, "PYTHONPATH": str(code)}

    def run(self, cmd: list[str]) -> tuple[float, str]:
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=self.project, env=self.env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"failed: {' '.join(cmd[:6])} ...\n{proc.stderr[-3000:]}\n{proc.stdout[-3000:]}")
        return seconds, proc.stdout

    def build(self) -> tuple[float, dict[str, str]]:
        seconds, out = self.run([sys.executable, "-m", "infra", "build", "--mode", "docker-cpu", "--push", "--json"])
        return seconds, {i["name"]: i["status"] for i in json.loads(out)["images"]}

    def bake(self, registry: str) -> float:
        """bake on the emptied engine, the offline base pulled first (untimed: bake cannot make it)."""
        dockerfile = (self.project / ".infra" / "out" / "docker-cpu" / "dockerfiles" / "base.Dockerfile").read_text()
        base = next(line.split()[1] for line in dockerfile.splitlines() if line.startswith("FROM "))
        self.engine.docker("pull", "-q", f"{registry}/{base}")
        self.engine.docker("tag", f"{registry}/{base}", base)
        bake_file = self.project / ".infra" / "out" / "docker-cpu" / "docker-bake.json"
        sets = [f"--set={name}.cache-from=type=registry,ref={registry}/speech-{name}:buildcache-cpu" for name in STACK]
        sets += [f"--set={name}.tags={registry}/speech-{name}:latest-cpu" for name in STACK]
        cmd = ["docker", "buildx", "bake", "-f", str(bake_file), "--push", "--progress=quiet", *sets,
               f"--allow=fs.read={self.code}", f"--allow=fs.read=/", "docker-cpu"]
        return self.run(cmd)[0]


def copy_code(root: Path) -> Path:
    code = root / "code"
    ignore = shutil.ignore_patterns(".venv*", ".git", "out", ".infra", "__pycache__", "in", "jobs", "logs")
    shutil.copytree(REPO, code, ignore=ignore, symlinks=True)
    return code


def make_project(root: Path, registry: str) -> Path:
    project = root / "project"
    project.mkdir(parents=True)
    text = (REPO / "infra.yaml").read_text().replace("registry: null", f"registry: {registry}")
    (project / "infra.yaml").write_text(text)
    shutil.copytree(REPO / "images", project / "images")
    for extra in ("infra.lock", "models.lock"):
        if (REPO / extra).is_file():
            shutil.copy(REPO / extra, project / extra)
    for cmd in (["init", "-q"], ["add", "-A"], ["-c", "user.email=b@example.org", "-c", "user.name=bench",
                                                 "commit", "-q", "-m", "spec"]):
        subprocess.run(["git", *cmd], cwd=project, check=True, capture_output=True)
    return project


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cold-runs", type=int, default=1)
    parser.add_argument("--bake-runs", type=int, default=3)
    parser.add_argument("--change-runs", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="infra-bench-hub-"))
    port = free_port()
    rows: list[tuple] = []
    notes: list[str] = []
    try:
        code = copy_code(root)
        (root / "engine").mkdir()
        with started(root / "engine") as engine:
            cold: list[float] = []
            registry_proc = None
            for index in range(args.cold_runs):
                if registry_proc is not None:
                    stop_registry(registry_proc)
                shutil.rmtree(root / "registry", ignore_errors=True)
                registry_proc = start_registry(root / "registry", port)
                registry = f"127.0.0.1:{port}/bench"
                project = make_project(root / f"cold{index}", registry)
                bench = Bench(code, project, engine)
                engine.wipe()
                seconds, status = bench.build()
                assert set(status.values()) == {"built"}, status
                cold.append(seconds)
            rows.append(("cold: empty engine and registry, build + push", cold, None))

            in_registry = []
            for _ in range(args.runs):
                engine.wipe()
                seconds, status = bench.build()
                assert set(status.values()) == {"in registry"}, status
                assert engine.images() == [], "nothing may be pulled"
                in_registry.append(seconds)

            baked = []
            for _ in range(args.bake_runs):
                engine.wipe()
                baked.append(bench.bake(registry))
            bench.build()
            rows.append(("docker buildx bake --push, registry cache (baseline)", baked, None))
            rows.append(("infra build --push, all in registry", in_registry, 5.0, baked))

            changed = []
            stage = code / "stages" / "asr.py"
            original = stage.read_text()
            for index in range(args.change_runs):
                stage.write_text(original + f"\n# bench change {index} {time.time()}\n")
                engine.wipe()
                seconds, status = bench.build()
                rebuilt = sorted(n for n, s in status.items() if s == "built")
                assert rebuilt == ["asr"], status
                changed.append(seconds)
            stage.write_text(original)
            rows.append(("one stage changed: asr rebuilt, the rest in registry", changed, None, cold))
            if registry_proc is not None:
                stop_registry(registry_proc)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print_table(rows)
    med = statistics.median
    print(f"in registry {med(in_registry):.2f} s (goal < 5 s); bake / infra {med(baked) / med(in_registry):.1f}x "
          f"(goal >= 10x); one-stage / cold {med(changed) / med(cold):.3f} (goal < 0.25)")
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
