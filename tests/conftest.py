"""Shared fixtures: a copy of the default spec to break, an in-process CLI runner, the Docker gate."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The Ryuk reaper image cannot be pulled here; tests remove their own containers.
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")


def _repo_jobs() -> set[str]:
    """The job ids the repository's own workspace holds (a user's `infra run` there makes some)."""
    index = REPO / "jobs"
    return {p.name for p in index.iterdir()} if index.is_dir() else set()


@pytest.fixture(scope="session", autouse=True)
def _repo_workspace_untouched():
    """Tests make their jobs in temporary workspaces: one made in the repository's own workspace means a test
    ran with the repository as its project (and depended on what the repository holds, such as .venv-ml)."""
    before = _repo_jobs()
    yield
    made = sorted(_repo_jobs() - before)
    assert not made, f"tests made jobs in {REPO / 'jobs'}: {', '.join(made)}"


@cache
def docker_available() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def require_engine() -> None:
    """The Docker gate: without an engine, skip, except under CI=true, where that is a failure."""
    if docker_available():
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("CI=true but no Docker engine answers `docker info`: run scripts/setup-docker.sh")
    pytest.skip("no Docker engine answers `docker info`")


@pytest.fixture(autouse=True)
def _docker_gate(request: pytest.FixtureRequest) -> None:
    """Docker-marked tests skip without an engine, except under CI=true, where that is a failure."""
    if request.node.get_closest_marker("docker") is not None:
        require_engine()


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """The same gate for module- and session-scoped fixtures that need the engine: they are set up before
    the per-test gate runs, so they name this fixture first."""
    require_engine()


def host_ca_bundle() -> str | None:
    """The CA bundle this machine's pip trusts (behind a TLS-intercepting proxy builds need it)."""
    for candidate in (os.environ.get("INFRA_CA_BUNDLE"), os.environ.get("PIP_CERT"), os.environ.get("SSL_CERT_FILE"),
                      "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


_HOST_CA = host_ca_bundle()


@pytest.fixture(autouse=True)
def _spec_from_files_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Machine settings stay out of rendered files unless a test asks for them (see ``ca_bundle``)."""
    monkeypatch.delenv("INFRA_CA_BUNDLE", raising=False)


@pytest.fixture
def ca_bundle(monkeypatch: pytest.MonkeyPatch) -> str | None:
    """Hand builds the machine's CA bundle, as a user behind a TLS-intercepting proxy would."""
    if _HOST_CA:
        monkeypatch.setenv("INFRA_CA_BUNDLE", _HOST_CA)
    return _HOST_CA


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    """Run `infra ARGS` in-process; returns exit code and captured output."""
    from infra.cli import main

    def run(*args: str, cwd: Path | None = None) -> Result:
        if cwd is not None:
            monkeypatch.chdir(cwd)
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A writable copy of the default spec (infra.yaml and images/)."""
    shutil.copy(REPO / "infra.yaml", tmp_path / "infra.yaml")
    shutil.copytree(REPO / "images", tmp_path / "images")
    return tmp_path


@pytest.fixture(scope="session")
def offline_base(docker_engine: None) -> str:
    """The default spec's offline base image, made once per machine (debootstrap takes about a minute)."""
    from infra.build.base import BaseResult, ensure_bases
    from infra.spec import load_stack

    stack = load_stack(REPO / "infra.yaml")
    results = [e for e in ensure_bases(stack, ["docker-cpu"]) if isinstance(e, BaseResult)]
    assert results and results[0].status in ("built", "up to date")
    return results[0].ref


def pytest_configure(config: pytest.Config) -> None:
    """Caches the code under test creates (compiled templates) go to a temporary folder, not ~/.cache."""
    import tempfile

    config._infra_cache_home = tempfile.mkdtemp(prefix="infra-test-cache-")  # type: ignore[attr-defined]
    config._infra_previous_cache_home = os.environ.get("XDG_CACHE_HOME")  # type: ignore[attr-defined]
    os.environ["XDG_CACHE_HOME"] = config._infra_cache_home  # type: ignore[attr-defined]


def pytest_unconfigure(config: pytest.Config) -> None:
    folder = getattr(config, "_infra_cache_home", None)
    if folder is None:
        return
    shutil.rmtree(folder, ignore_errors=True)
    previous = config._infra_previous_cache_home  # type: ignore[attr-defined]
    if previous is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = previous


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite tests/golden/ from what the templates render now, instead of comparing")


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    """True with `pytest --update-golden` (or INFRA_UPDATE_GOLDEN=1): golden tests rewrite their files."""
    return bool(request.config.getoption("--update-golden")) or os.environ.get("INFRA_UPDATE_GOLDEN") == "1"


@pytest.fixture(scope="session")
def native_env() -> Path:
    """The native ML environment (torch and the `ml` extra), made with `infra env create` when absent.

    It lives at the repository's .venv-ml (git-ignored) so that later runs reuse it.
    """
    import sys

    from infra.stack.nativeenv import inspect_env

    path = REPO / ".venv-ml"
    if not (path / "pyvenv.cfg").is_file() or inspect_env(path).torch is None:
        result = subprocess.run([sys.executable, "-m", "infra", "env", "create", "--path", str(path), "--torch", "cpu"],
                                cwd=REPO, capture_output=True, text=True, timeout=2400)
        assert result.returncode == 0, result.stderr[-3000:]
    env = inspect_env(path)
    assert env.torch and env.torch.startswith("2.13.0"), env.torch
    return path
