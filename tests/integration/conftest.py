"""Real services for the integration tests: a password-protected registry on loopback."""

from __future__ import annotations

import base64
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Registry:
    host: str          # 127.0.0.1:PORT
    user: str
    password: str
    root: Path | None = None   # its storage folder (config.yml, data/)

    def blob(self, digest: str) -> Path:
        """Where the registry keeps a blob on disk (distribution's filesystem driver)."""
        assert self.root is not None
        hexa = digest.removeprefix("sha256:")
        return self.root / "data" / "docker" / "registry" / "v2" / "blobs" / "sha256" / hexa[:2] / hexa / "data"

    def get(self, path: str, accept: str | None = None) -> tuple[int, dict[str, str], bytes]:
        """An authenticated GET against the registry's HTTP API."""
        request = urllib.request.Request(f"http://{self.host}{path}")
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        if accept:
            request.add_header("Accept", accept)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_registry(root: Path, port: int, htpasswd: Path | None = None) -> subprocess.Popen:
    """Debian's docker-registry (distribution 2.8) as a plain process on 127.0.0.1:port; waits until it answers."""
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.fail("docker-registry is not installed: scripts/setup.sh --test installs it")
    root.mkdir(parents=True, exist_ok=True)
    auth = f"auth: {{htpasswd: {{realm: infra-test, path: {htpasswd}}}}}\n" if htpasswd else ""
    (root / "config.yml").write_text(
        "version: 0.1\n"
        "log: {level: warn}\n"
        f"storage: {{filesystem: {{rootdirectory: {root / 'data'}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: '127.0.0.1:{port}'}}\n" + auth
    )
    log = (root / "registry.log").open("w")
    proc = subprocess.Popen([binary, "serve", str(root / "config.yml")], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2)
            break
        except urllib.error.HTTPError as exc:
            if exc.code == 401:
                break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"registry did not start: {(root / 'registry.log').read_text()[-2000:]}")
        time.sleep(0.2)
    return proc


def stop_registry(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@contextmanager
def password_registry(root: Path, user: str, password: str) -> Iterator[Registry]:
    """A registry with htpasswd auth for one user, stored under ``root``, for the time of the block."""
    htpasswd = subprocess.run(["htpasswd", "-Bbn", user, password], capture_output=True, text=True, check=True)
    (root / "htpasswd").write_text(htpasswd.stdout)
    port = free_port()
    proc = start_registry(root, port, root / "htpasswd")
    try:
        yield Registry(f"127.0.0.1:{port}", user, password, root)
    finally:
        stop_registry(proc)
        forget_images(lambda ref: ref.startswith(f"127.0.0.1:{port}/"))   # no later run can use these tags


def forget_images(match: Callable[[str], bool]) -> None:
    """Remove this engine's image tags that ``match`` ("repository:tag"): what a test made under a name no later
    run reuses (a random registry port, a per-run project), which would otherwise fill the disk run after run."""
    listed = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"], capture_output=True,
                            text=True)
    refs = [ref for ref in listed.stdout.split() if match(ref)]
    if refs:
        subprocess.run(["docker", "image", "rm", "-f", *refs], capture_output=True)


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry with htpasswd auth, for the whole session."""
    with password_registry(tmp_path_factory.mktemp("registry"), "infra", "s3cret-test-only") as running:
        yield running


@pytest.fixture
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private docker client config, so logins in a test touch neither the user's nor other tests'."""
    config = tmp_path / "docker-config"
    config.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    return config


@pytest.fixture(scope="session")
def ml_env(native_env: Path) -> Path:
    """The native environment (tests/conftest.py makes it when absent) with what the stages import."""
    probe = subprocess.run([str(native_env / "bin" / "python"), "-c", "import faster_whisper, resemblyzer, onnxruntime"],
                           capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr[-2000:]
    return native_env


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model cache with Whisper tiny.en, fetched once per session the way `infra bootstrap` does it.
    Tests read it (or link it into a workspace); none writes to it."""
    from infra.models.catalogue import fetch_models

    cache = tmp_path_factory.mktemp("models")
    outcome = [e for e in fetch_models(["whisper/tiny.en"], cache, None) if e.kind in ("done", "present", "failed")]
    if outcome[-1].kind == "failed":
        pytest.fail(f"cannot fetch tiny.en: {outcome[-1].detail}")
    return cache


PYANNOTE_AUDIO = "pyannote.audio==4.0.7"


@pytest.fixture(scope="session")
def pyannote_sample(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real speech with references: sample.wav (30 s, two speakers), sample.stm and sample.rttm out of
    pyannote.audio's wheel (`pip download --no-deps`, nothing installed), once a session."""
    root = tmp_path_factory.mktemp("pyannote-sample")
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
                    "--disable-pip-version-check", "-d", str(root), PYANNOTE_AUDIO], check=True, capture_output=True,
                   timeout=300)
    with zipfile.ZipFile(next(root.glob("pyannote_audio-*.whl"))) as wheel:
        for name in ("sample.wav", "sample.stm", "sample.rttm"):
            (root / name).write_bytes(wheel.read(f"pyannote/audio/sample/{name}"))
    return {Path(name).suffix[1:]: root / name for name in ("sample.wav", "sample.stm", "sample.rttm")}
