"""With no engine answering, a command says so once: one error line, one hint, and nothing of docker's own.

These tests run the real docker CLI against a socket that does not exist (DOCKER_HOST=unix:///tmp/...),
so they need the docker command-line client but no daemon, and are not marked `docker` (that marker
means a running engine, which they would not use). Without the client they skip, except under CI=true,
where that is a failure, as for the Docker tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from infra.engine import Engine
from infra.errors import EngineUnavailableError


@pytest.fixture(autouse=True)
def docker_cli() -> None:
    if shutil.which("docker") is not None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("CI=true but the docker command-line client is not installed")
    pytest.skip("the docker command-line client is not installed")


@pytest.fixture
def dead_host() -> str:
    return f"unix:///tmp/infra-no-engine-{uuid.uuid4().hex[:8]}.sock"


@pytest.mark.parametrize("command", [
    ["build", "--mode", "docker-cpu"],
    ["up", "--mode", "docker-cpu"],
    ["ps", "--mode", "docker-cpu"],
])
def test_one_error_and_one_hint_when_no_engine_answers(project: Path, dead_host: str, command: list[str]) -> None:
    env = {**os.environ, "DOCKER_HOST": dead_host, "NO_COLOR": "1"}
    result = subprocess.run([sys.executable, "-m", "infra", *command], cwd=project, env=env,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 1, result.stderr
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, lines
    assert "no Docker engine answers" in errors[0] and dead_host in errors[0], errors
    assert len([line for line in lines if line.startswith("hint:")]) == 1, lines
    assert [line for line in lines if "Cannot connect" in line] == errors, lines
    assert "Traceback" not in result.stderr


def test_inspect_reports_the_engine_down_once(dead_host: str) -> None:
    refs = [f"speech-{n}:latest" for n in ("base", "asr", "ffmpeg")]
    with pytest.raises(EngineUnavailableError) as caught:
        Engine(dead_host).inspect_images(refs)
    assert caught.value.message.count("Cannot connect") == 1
    assert caught.value.stderr_tail == ""          # docker said it once per image; the message holds it once


def test_a_container_run_with_the_engine_down_is_an_engine_error_not_an_exit_code(dead_host: str,
                                                                                     tmp_path: Path) -> None:
    log = tmp_path / "stage.log"
    with pytest.raises(EngineUnavailableError, match="docker run speech-asr:latest: no Docker engine answers"):
        Engine(dead_host).run_to_log("speech-asr:latest", ["true"], log, name=f"infra-test-{uuid.uuid4().hex[:8]}",
                                     mounts=[], env={}, workdir="/")
    assert "Cannot connect" in log.read_text()     # the stage's log keeps docker's own words
