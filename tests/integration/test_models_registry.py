"""Models as OCI artifacts, end to end: `infra models push` from one workspace, `infra models pull` (and
`infra bootstrap --from-registry`) into another, and a native job there with no other source of models.

The module starts its own registry (distribution 2.8 as a plain process, htpasswd auth, the
start_registry helper of conftest.py) instead of sharing the session's: one test corrupts a blob in the
registry's storage on disk, which must reach no other test. Only the refusal of the artifact's media type
is played by a small stand-in HTTP server, because distribution 2.8 accepts the artifact.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from infra.hardware.cache import fingerprint, write_cache
from tests.integration.conftest import Registry, password_registry
from tests.integration.media_fixtures import detected, media  # noqa: F401

CACHE = "shared-model-and-cache"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry of this module's own: the tests corrupt blobs on its disk."""
    with password_registry(tmp_path_factory.mktemp("model-registry"), "models", "model-pass-test-only") as running:
        yield running


def docker_config(folder: Path, host: str | None = None, user: str = "", password: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    auths = {host: {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}} if host else {}
    (folder / "config.json").write_text(json.dumps({"auths": auths}))
    return folder


@pytest.fixture(scope="module")
def creds(tmp_path_factory: pytest.TempPathFactory, reg: Registry) -> Path:
    return docker_config(tmp_path_factory.mktemp("docker-config"), reg.host, reg.user, reg.password)


def infra(ws: Path, config: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The CLI in workspace ``ws`` with the built-in spec, the cache of ``ws`` (INFRA_CACHE unset) and ``config``
    as docker's client config."""
    env = {k: v for k, v in os.environ.items() if k not in ("INFRA_FILE", "INFRA_CACHE", "DOCKER_CONFIG")}
    env["DOCKER_CONFIG"] = str(config)
    return subprocess.run([sys.executable, "-m", "infra", *args], cwd=ws, env=env, capture_output=True, text=True,
                          timeout=timeout)


def one_error(result: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    """The run failed with ``code`` and said so in one error line (plus at most a hint), no traceback."""
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and lines[0].startswith("error: "), result.stderr
    assert len(lines) <= 2 and all(ln.startswith(("error: ", "hint: ")) for ln in lines), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def make_model(ws: Path, name: str, files: dict[str, bytes]) -> Path:
    folder = ws / CACHE / name
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    (folder / ".complete").write_text(json.dumps({"model": name, "source": "test"}) + "\n")
    return folder


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tree(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): sha(p.read_bytes()) for p in sorted(folder.rglob("*")) if p.is_file()}


def lock_of(ws: Path) -> dict:
    return json.loads((ws / "models.lock").read_text())


# --- the whole way: push, pull into a second workspace, a native job there ------------------------------------
def test_a_model_pushed_from_one_workspace_runs_a_job_in_another(
        tmp_path: Path, reg: Registry, creds: Path, model_cache: Path, ml_env: Path, media: dict, detected) -> None:  # noqa: F811
    first, second = tmp_path / "first", tmp_path / "second"
    source = model_cache / "whisper" / "tiny.en"
    folder = first / CACHE / "whisper" / "tiny.en"
    folder.mkdir(parents=True)
    for path in source.iterdir():          # links: the session's cache itself stays untouched
        os.link(path, folder / path.name)

    pushed = infra(first, creds, "models", "push", "whisper/tiny.en", "--registry", f"{reg.host}/team", "--json")
    assert pushed.returncode == 0, pushed.stderr
    files = sorted(p.name for p in source.iterdir() if p.name != ".complete")
    [result] = json.loads(pushed.stdout)
    assert (result["uploaded"], result["present"], result["lock"]) == (len(files) + 1, 0, "pinned")
    pin = lock_of(first)["models"]["whisper/tiny.en"]
    repo = "team/speech-models/whisper-tiny.en"
    assert pin["repository"] == f"{reg.host}/{repo}" and pin["tag"] == "latest"
    assert pin["manifest"] == result["digest"]
    assert pin["files"] == {name: {"digest": sha((source / name).read_bytes()), "size": (source / name).stat().st_size}
                            for name in files}

    # What the registry holds: an OCI image manifest with the artifact type, a config, one titled layer per file.
    status, _, body = reg.get(f"/v2/{repo}/manifests/latest", OCI_MANIFEST)
    assert status == 200 and sha(body) == pin["manifest"]
    manifest = json.loads(body)
    assert manifest["artifactType"] == "application/vnd.infra.model.v1"
    assert manifest["config"]["mediaType"] == "application/vnd.infra.model.config.v1+json"
    assert [la["annotations"]["org.opencontainers.image.title"] for la in manifest["layers"]] == files
    status, _, config = reg.get(f"/v2/{repo}/blobs/{manifest['config']['digest']}")
    assert status == 200 and json.loads(config)["model"] == "whisper/tiny.en"
    assert [f["path"] for f in json.loads(config)["files"]] == files

    # The second workspace has the lock (as a clone of the project would) and nothing else.
    second.mkdir()
    shutil.copy(first / "models.lock", second / "models.lock")
    pulled = infra(second, creds, "models", "pull", "--json")
    assert pulled.returncode == 0, pulled.stderr
    assert [(r["model"], r["status"]) for r in json.loads(pulled.stdout)] == [("whisper/tiny.en", "pulled")]
    target = second / CACHE / "whisper" / "tiny.en"
    assert {k: v for k, v in tree(target).items() if k in files} == {n: pin["files"][n]["digest"] for n in files}
    assert json.loads((target / ".infra-model.json").read_text())["manifest"] == pin["manifest"]
    assert not [p.name for p in (second / CACHE).iterdir() if p.name.startswith(".pull-") and p.is_dir()]
    again = infra(second, creds, "models", "pull", "--json")
    assert [(r["status"], r["fetched_bytes"]) for r in json.loads(again.stdout)] == [("present", 0)]

    # A native job in the second workspace reads the pulled model and records its digests.
    (second / ".venv-ml").symlink_to(ml_env)
    write_cache(second / "out" / "hardware_cache.json", detected, fingerprint())
    run = infra(second, creds, "run", str(media["speech"]), "--mode", "native", "--model", "tiny.en",
                "--language", "en", "--workflow", "transcribe")
    assert run.returncode == 0, run.stdout + run.stderr
    job_id = next(ln.split()[1].rstrip(":") for ln in run.stdout.splitlines() if ln.startswith("job "))
    job_dir = second / (second / "jobs" / job_id).read_text().strip()
    job = json.loads((job_dir / "job.json").read_text())
    used = job["models"]["whisper/tiny.en"]
    assert (used["manifest"], used["verified"], used["repository"]) == (pin["manifest"], True, pin["repository"])
    assert used["files"] == {n: pin["files"][n]["digest"] for n in files}
    assert json.loads((job_dir / "asr.json").read_text())["model_source"] == \
        f"registry {pin['repository']}@{pin['manifest']}"
    assert json.loads((job_dir / "results" / "asr.json").read_text())["details"]["words"] > 5

    # The cached model changes after it was pinned: a new job is refused in one line, nothing is made.
    os.utime(target / "model.bin", ns=(1, 1))
    jobs_before = sorted((second / "jobs").iterdir())
    refused = infra(second, creds, "job", "prepare", str(media["speech"]), "--model", "tiny.en")
    one_error(refused, 2, "whisper/tiny.en", "differs from models.lock", "model.bin changed")
    assert sorted((second / "jobs").iterdir()) == jobs_before
    # Pulling again verifies what is there (reading it once) and keeps every file: nothing is fetched.
    restored = infra(second, creds, "models", "pull", "--json")
    assert [(r["status"], r["fetched_bytes"], r["reused"]) for r in json.loads(restored.stdout)] == \
        [("pulled", 0, len(files))]
    assert infra(second, creds, "job", "prepare", str(media["speech"]), "--model", "tiny.en").returncode == 0


# --- pushes -------------------------------------------------------------------------------------------------------
def test_a_push_killed_with_sigkill_uploads_only_what_is_missing_when_run_again(
        tmp_path: Path, reg: Registry, creds: Path) -> None:
    ws = tmp_path / "ws"
    files = {f"part{i}.bin": os.urandom(24 << 20) for i in range(6)}
    make_model(ws, "test/killed", files)
    layers = [sha(files[name]) for name in sorted(files)]
    env = {k: v for k, v in os.environ.items() if k not in ("INFRA_FILE", "INFRA_CACHE")}
    env["DOCKER_CONFIG"] = str(creds)
    push = subprocess.Popen([sys.executable, "-m", "infra", "models", "push", "test/killed", "--registry",
                             f"{reg.host}/team"], cwd=ws, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not reg.blob(layers[0]).exists() and push.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    push.send_signal(signal.SIGKILL)
    push.wait()
    assert push.returncode == -signal.SIGKILL, "the push ended before it could be killed"
    time.sleep(0.5)
    present = [d for d in layers if reg.blob(d).exists()]
    assert 1 <= len(present) < len(layers), "the kill came too late to leave a blob missing"
    assert reg.get("/v2/team/speech-models/test-killed/manifests/latest", OCI_MANIFEST)[0] == 404
    assert not (ws / "models.lock").exists() and not (ws / CACHE / "test" / "killed" / ".infra-model.json").exists()

    again = infra(ws, creds, "models", "push", "test/killed", "--registry", f"{reg.host}/team", "--json")
    assert again.returncode == 0, again.stderr
    [result] = json.loads(again.stdout)
    config_present = 1
    assert (result["present"], result["uploaded"]) == (len(present) + config_present, len(layers) - len(present))
    assert lock_of(ws)["models"]["test/killed"]["manifest"] == result["digest"]
    status, _, body = reg.get("/v2/team/speech-models/test-killed/manifests/latest", OCI_MANIFEST)
    assert status == 200 and sha(body) == result["digest"]


def test_a_model_changed_after_its_digest_was_locked_is_refused_until_the_lock_is_updated(
        tmp_path: Path, reg: Registry, creds: Path) -> None:
    ws = tmp_path / "ws"
    folder = make_model(ws, "test/changing", {"model.bin": os.urandom(4096), "config.json": b'{"v": 1}'})
    assert infra(ws, creds, "models", "push", "--registry", f"{reg.host}/team").returncode == 0
    locked = (ws / "models.lock").read_bytes()
    (folder / "config.json").write_bytes(b'{"v": 2}')
    refused = infra(ws, creds, "models", "push", "--registry", f"{reg.host}/team")
    one_error(refused, 2, "test/changing differs from models.lock", "config.json changed after its digest was locked")
    assert (ws / "models.lock").read_bytes() == locked
    updated = infra(ws, creds, "models", "push", "--registry", f"{reg.host}/team", "--update-lock", "--json")
    assert updated.returncode == 0, updated.stderr
    [result] = json.loads(updated.stdout)
    # Only config.json is new: model.bin and the artifact's config (paths, sizes, modes: all the same) are there.
    assert (result["lock"], result["uploaded"], result["present"]) == ("re-pinned", 1, 2)
    assert lock_of(ws)["models"]["test/changing"]["files"]["config.json"]["digest"] == sha(b'{"v": 2}')


def test_credentials_missing_or_wrong_stop_push_and_pull_in_one_line(tmp_path: Path, reg: Registry, creds: Path) -> None:
    ws = tmp_path / "ws"
    make_model(ws, "test/secret", {"model.bin": os.urandom(1024)})
    nobody = docker_config(tmp_path / "none")
    wrong = docker_config(tmp_path / "wrong", reg.host, reg.user, "not-the-password")
    push = ("models", "push", "--registry", f"{reg.host}/team")
    one_error(infra(ws, nobody, *push), 2, f"registry {reg.host} needs credentials")
    line = one_error(infra(ws, wrong, *push), 2, f"registry {reg.host} did not accept the credentials")
    assert "not-the-password" not in line
    assert not (ws / "models.lock").exists()
    assert infra(ws, creds, *push).returncode == 0
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(ws / "models.lock", other / "models.lock")
    one_error(infra(other, wrong, "models", "pull"), 2, "did not accept the credentials")
    assert not (other / CACHE / "test").exists()


def test_a_registry_that_refuses_the_artifact_type_leaves_nothing_pinned(tmp_path: Path) -> None:
    """A stand-in for a registry without OCI artifact support (distribution 2.8 itself accepts the artifact):
    it takes blobs and refuses the manifest as real ones do (415, MANIFEST_INVALID)."""
    received: list[str] = []

    class Refusing(BaseHTTPRequestHandler):
        def _answer(self, code: int, body: bytes = b"{}", headers: dict[str, str] | None = None) -> None:
            self.send_response(code)
            for key, value in {"Content-Type": "application/json", "Content-Length": str(len(body)),
                               "Docker-Distribution-Api-Version": "registry/2.0", **(headers or {})}.items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802
            self._answer(200 if self.path == "/v2/" else 404)

        def do_HEAD(self) -> None:  # noqa: N802
            self._answer(404)

        def do_POST(self) -> None:  # noqa: N802
            self._answer(202, headers={"Location": self.path + "session-1"})

        def do_PUT(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received.append(self.path.split("?")[0])
            if "/manifests/" in self.path:
                self._answer(415, json.dumps({"errors": [{"code": "MANIFEST_INVALID", "message": "manifest invalid",
                                                          "detail": "unknown artifact type"}]}).encode())
            else:
                self._answer(201)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        ws = tmp_path / "ws"
        folder = make_model(ws, "test/refused", {"model.bin": os.urandom(2048)})
        result = infra(ws, docker_config(tmp_path / "cfg"), "models", "push", "--registry",
                       f"127.0.0.1:{server.server_port}/team")
    finally:
        server.shutdown()
    one_error(result, 1, "refused the model artifact", "application/vnd.infra.model.v1", "415 manifest invalid")
    assert any("/manifests/" in path for path in received)
    assert not (ws / "models.lock").exists() and not (folder / ".infra-model.json").exists()


# --- pulls ----------------------------------------------------------------------------------------------------------
def test_a_corrupted_blob_fails_the_pull_and_leaves_nothing_that_looks_complete(
        tmp_path: Path, reg: Registry, creds: Path) -> None:
    ws, other = tmp_path / "ws", tmp_path / "other"
    weights = os.urandom(1 << 20)
    make_model(ws, "test/corrupt", {"a-config.json": b'{"corrupt": true}', "model.bin": weights})
    assert infra(ws, creds, "models", "push", "--registry", f"{reg.host}/team").returncode == 0
    other.mkdir()
    shutil.copy(ws / "models.lock", other / "models.lock")
    stored = reg.blob(sha(weights))
    stored.write_bytes(bytes(b ^ 0xFF for b in weights[:64]) + weights[64:])          # same size, other bytes

    failed = infra(other, creds, "models", "pull")
    one_error(failed, 1, f"blob {sha(weights)[:19]}", "is corrupted")
    cache = other / CACHE
    assert not (cache / "test" / "corrupt").exists()
    leftovers = [p for p in cache.rglob("*") if p.is_file()]
    assert not [p for p in leftovers if p.name in ("model.bin", ".complete", ".infra-model.json")
                or p.name.endswith(".partial")], leftovers

    stored.write_bytes(weights)
    fixed = infra(other, creds, "models", "pull", "--json")
    assert fixed.returncode == 0, fixed.stderr
    [result] = json.loads(fixed.stdout)
    assert (result["status"], result["reused"], result["fetched_bytes"]) == ("pulled", 1, len(weights))
    assert (cache / "test" / "corrupt" / "model.bin").read_bytes() == weights


def test_a_model_not_in_the_lock_or_not_in_the_registry_is_refused(tmp_path: Path, reg: Registry, creds: Path) -> None:
    ws = tmp_path / "ws"
    make_model(ws, "test/known", {"model.bin": os.urandom(512)})
    assert infra(ws, creds, "models", "push", "--registry", f"{reg.host}/team").returncode == 0
    one_error(infra(ws, creds, "models", "pull", "whisper/base"), 2, "model whisper/base is not in",
              "models.lock (it pins test/known)")
    bare = tmp_path / "bare"
    bare.mkdir()
    one_error(infra(bare, creds, "models", "pull", "whisper/never-pushed", "--registry", f"{reg.host}/team"), 2,
              "model whisper/never-pushed is not in the registry",
              f"{reg.host}/team/speech-models/whisper-never-pushed:latest does not exist")
    one_error(infra(bare, creds, "models", "pull"), 2, "nothing to pull")
    one_error(infra(bare, creds, "models", "push", "whisper/absent", "--registry", f"{reg.host}/team"), 2,
              "model whisper/absent is not in the model cache")
    assert not (bare / "models.lock").exists() and not (bare / CACHE).exists()


def test_bootstrap_from_registry_pulls_the_pinned_models_and_resumes_a_partial_blob(
        tmp_path: Path, reg: Registry, creds: Path, detected) -> None:  # noqa: F811
    ws, fresh = tmp_path / "ws", tmp_path / "fresh"
    weights = os.urandom(3 << 20)
    make_model(ws, "test/booted", {"model.bin": weights, "vocabulary.txt": b"a\nb\n"})
    assert infra(ws, creds, "models", "push", "--registry", f"{reg.host}/team").returncode == 0
    fresh.mkdir()
    shutil.copy(ws / "models.lock", fresh / "models.lock")
    write_cache(fresh / "out" / "hardware_cache.json", detected, fingerprint())
    manifest = lock_of(fresh)["models"]["test/booted"]["manifest"]
    # An earlier transfer stopped half-way: the staging folder holds the first half of model.bin.
    staging = fresh / CACHE / f".pull-test-booted-{manifest.removeprefix('sha256:')[:16]}"
    staging.mkdir(parents=True)
    (staging / "model.bin.partial").write_bytes(weights[: len(weights) // 2])

    booted = infra(fresh, creds, "bootstrap", "--from-registry", "--json")
    assert booted.returncode == 0, booted.stdout + booted.stderr
    checks = {c["name"]: c for c in json.loads(booted.stdout)}
    assert checks["model test/booted"]["status"] == "ok"
    assert f"{reg.host}/team/speech-models/test-booted@{manifest}" in checks["model test/booted"]["detail"]
    target = fresh / CACHE / "test" / "booted"
    assert (target / "model.bin").read_bytes() == weights and not staging.exists()
    assert json.loads((target / ".complete").read_text())["source"].startswith("registry ")
