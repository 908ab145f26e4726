"""The one translation of docker's failures (infra/engine/translate.py): what a user reads when docker fails."""

from __future__ import annotations

import pytest

from infra.engine.translate import engine_down, failure, run_cli
from infra.errors import EngineError, EngineUnavailableError

DOWN = "Cannot connect to the Docker daemon at unix:///tmp/x.sock. Is the docker daemon running?"


def test_engine_down_said_once_per_image_is_one_message_and_no_tail() -> None:
    error = failure("docker image inspect", ["docker", "image", "inspect", "a", "b", "c"], 1, f"{DOWN}\n" * 3)
    assert isinstance(error, EngineUnavailableError)
    assert error.message == f"docker image inspect: no Docker engine answers ({DOWN})"
    assert error.stderr_tail == "" and error.hint and "infra doctor" in error.hint
    assert error.command[:3] == ["docker", "image", "inspect"]


def test_the_down_line_is_named_even_when_docker_says_more_after_it() -> None:
    error = failure("docker run x", None, 125, f"{DOWN}\nSee 'docker run --help'.\n")
    assert isinstance(error, EngineUnavailableError) and f"({DOWN})" in error.message


@pytest.mark.parametrize("text, down", [
    (DOWN, True),
    ("error during connect: Get \"http://%2Fvar%2Frun%2Fdocker.sock/v1.47/info\": open //./pipe/docker_engine", True),
    ("dial unix /var/run/docker.sock: connect: connection refused", True),
    ("docker: Error response from daemon: failed to create task: open /x: no such file or directory", False),
    ("Get \"https://127.0.0.1:5000/v2/\": dial tcp 127.0.0.1:5000: connect: connection refused", False),
    ("Error response from daemon: No such image: speech-asr:latest", False),
])
def test_what_counts_as_no_engine(text: str, down: bool) -> None:
    assert engine_down(text) is down


def test_any_other_failure_keeps_its_last_line_and_the_tail_without_repeats() -> None:
    stderr = "#5 RUN false\n#5 ERROR: exit code 1\n#5 ERROR: exit code 1\nERROR: failed to solve: exit code 1\n"
    error = failure("build of speech-asr:latest", ["docker", "buildx", "build"], 1, stderr)
    assert type(error) is EngineError
    assert error.message == "build of speech-asr:latest failed: ERROR: failed to solve: exit code 1"
    assert error.stderr_tail.splitlines() == ["#5 RUN false", "#5 ERROR: exit code 1", "ERROR: failed to solve: exit code 1"]
    assert failure("docker tag a b", None, 3, "").message == "docker tag a b failed: exit code 3"


def test_a_missing_docker_client_is_an_unavailable_engine() -> None:
    with pytest.raises(EngineUnavailableError, match="docker-that-is-not-installed: the docker command-line client"):
        run_cli(["/nonexistent/docker-that-is-not-installed", "version"], "docker-that-is-not-installed")
