"""Reproducible images, every one: two `infra build --reproducible --no-cache` of a mode, each on an emptied
engine, and the image manifest digests they give compared image by image.

The engine is a second Docker engine (tests/integration/fresh_engine.py), emptied before each build;
a registry on loopback holds the offline base, pushed once from this machine's engine, so both builds
start from the same base digest (debootstrap's output is not reproducible; docs/REGISTRY.md).

Usage: .venv/bin/python bench/reproducible.py [--mode docker-cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from registry_hub import ca_env, make_project  # noqa: E402
from tests.integration.conftest import free_port, start_registry, stop_registry  # noqa: E402
from tests.integration.fresh_engine import started  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", default="docker-cpu")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="infra-bench-repro-"))
    port = free_port()
    registry_proc = start_registry(root / "registry", port)
    registry = f"127.0.0.1:{port}/repro"
    try:
        project = make_project(root / "p", registry)
        env = {**os.environ, **ca_env()}
        base = subprocess.run([sys.executable, "-m", "infra", "build", "--mode", args.mode, "--only", "base", "--push",
                               "--json"], cwd=project, env=env, capture_output=True, text=True)
        if base.returncode:
            sys.exit(f"pushing the base failed:\n{base.stderr[-2000:]}")
        (root / "engine").mkdir()
        runs = []
        with started(root / "engine") as engine:
            for _ in range(2):
                engine.wipe()
                start = time.perf_counter()
                proc = subprocess.run([sys.executable, "-m", "infra", "build", "--mode", args.mode, "--reproducible",
                                       "--no-cache", "--json"], cwd=project, env={**env, **engine.env},
                                      capture_output=True, text=True)
                if proc.returncode:
                    sys.exit(f"build failed:\n{proc.stderr[-2000:]}\n{proc.stdout[-3000:]}")
                images = {i["name"]: i for i in json.loads(proc.stdout)["images"]}
                runs.append(images)
                print(f"build {len(runs)}: {time.perf_counter() - start:.1f} s", flush=True)
    finally:
        stop_registry(registry_proc)
        shutil.rmtree(root, ignore_errors=True)
    same = 0
    print(f"{'image':14} {'manifest, first build':22} {'second build':22} same")
    for name, first in runs[0].items():
        a, b = first["manifest_digest"], runs[1][name]["manifest_digest"]
        same += a == b
        print(f"{name:14} {a[7:27]:22} {b[7:27]:22} {'yes' if a == b else 'NO'}")
    print(f"{same} of {len(runs[0])} images identical")


if __name__ == "__main__":
    main()
