"""Doctor pieces that need no engine: registry credentials, the native env, disk, ffmpeg."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from infra.engine import Engine
from infra.errors import BadInputError
from infra.stack.nativeenv import inspect_env


def test_registry_login_read_from_docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    assert not Engine.registry_logged_in("127.0.0.1:5000/speech")
    auth = base64.b64encode(b"user:pass").decode()
    (tmp_path / "config.json").write_text(json.dumps({"auths": {"127.0.0.1:5000": {"auth": auth}}}))
    assert Engine.registry_logged_in("127.0.0.1:5000/speech")
    assert not Engine.registry_logged_in("registry.example.com/speech")
    (tmp_path / "config.json").write_text(json.dumps({"credHelpers": {"registry.example.com": "pass"}}))
    assert Engine.registry_logged_in("registry.example.com/speech")


def make_venv(root: Path, version: str = "3.11.7", dists: dict[str, str] | None = None) -> Path:
    minor = ".".join(version.split(".")[:2])
    site = root / "lib" / f"python{minor}" / "site-packages"
    site.mkdir(parents=True)
    (root / "pyvenv.cfg").write_text(f"home = /usr/bin\nversion_info = {version}.final.0\n")
    for name, ver in (dists or {}).items():
        (site / f"{name}-{ver}.dist-info").mkdir()
    return root


def test_inspect_env_reads_python_and_distributions(tmp_path: Path) -> None:
    env = inspect_env(make_venv(tmp_path / "env", dists={"torch": "2.13.0+cpu", "faster_whisper": "1.2.1"}))
    assert env.python == "3.11.7" and env.python_minor == "3.11"
    assert env.torch == "2.13.0+cpu"
    assert env.distributions["faster-whisper"] == "1.2.1"


def test_inspect_env_refuses_missing_and_broken(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="does not exist"):
        inspect_env(tmp_path / "absent")
    (tmp_path / "plain").mkdir()
    with pytest.raises(BadInputError, match="not a virtualenv"):
        inspect_env(tmp_path / "plain")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    with pytest.raises(BadInputError, match="broken virtualenv"):
        inspect_env(tmp_path / "broken")


def test_native_env_line(tmp_path: Path, project: Path) -> None:
    from infra.spec import load_stack
    from infra.hardware.doctor import _native_env_check

    stack = load_stack(project / "infra.yaml")
    assert _native_env_check(stack).status == "warn"
    make_venv(project / ".venv-ml", dists={"torch": "2.13.0"})
    check = _native_env_check(stack)
    assert check.status == "ok" and "torch 2.13.0" in check.detail
