"""python-on-whales behind a small surface, with Docker failures turned into EngineError."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.errors import EngineError, EngineUnavailableError

DOWN_MARKERS = ("Cannot connect to the Docker daemon", "Is the docker daemon running", "error during connect",
                "connection refused", "no such file or directory")
START_HINT = "start the engine (scripts/setup-docker.sh sets one up and starts it), then check with `infra doctor`"


@dataclass(frozen=True)
class EngineVersions:
    client: str
    server: str
    api: str


@dataclass(frozen=True)
class ImageInfo:
    id: str
    size: int
    labels: dict[str, str]
    repo_digests: list[str]


@contextlib.contextmanager
def translate_errors(action: str) -> Iterator[None]:
    """Turn python-on-whales exceptions into EngineError with the command and stderr tail."""
    from python_on_whales.client_config import ClientNotFoundError
    from python_on_whales.exceptions import DockerException

    try:
        yield
    except ClientNotFoundError:
        raise EngineUnavailableError(f"{action}: the docker command-line client is not installed",
                                     hint="install the Docker CLI, or run scripts/setup-docker.sh") from None
    except DockerException as exc:
        stderr = exc.stderr or ""
        last = next((line for line in reversed(stderr.strip().splitlines()) if line.strip()), "")
        if any(marker.lower() in stderr.lower() for marker in DOWN_MARKERS) and "daemon" in stderr.lower():
            raise EngineUnavailableError(f"{action}: no Docker engine answers ({last.strip()})",
                                         command=exc.docker_command, stderr=stderr, hint=START_HINT) from None
        raise EngineError(f"{action} failed: {last.strip() or f'exit code {exc.return_code}'}",
                          command=exc.docker_command, stderr=stderr) from None


class Engine:
    """A Docker engine reached through the docker CLI (python-on-whales)."""

    def __init__(self, host: str | None = None) -> None:
        self._host = host
        self._client: Any = None

    @property
    def docker(self) -> Any:
        if self._client is None:
            from python_on_whales import DockerClient

            self._client = DockerClient(host=self._host) if self._host else DockerClient()
        return self._client

    @staticmethod
    def cli_path() -> str | None:
        return shutil.which("docker")

    def versions(self) -> EngineVersions:
        with translate_errors("docker version"):
            v = self.docker.version()
        if v.server is None:
            raise EngineUnavailableError("docker version: no Docker engine answers", hint=START_HINT)
        return EngineVersions(client=str(v.client.version), server=str(v.server.version), api=str(v.server.api_version))

    def info(self) -> Any:
        with translate_errors("docker info"):
            return self.docker.info()

    def buildx_version(self) -> str:
        with translate_errors("docker buildx version"):
            text = str(self.docker.buildx.version())
        return text

    def compose_version(self) -> str:
        with translate_errors("docker compose version"):
            return str(self.docker.compose.version())

    def probe_named_contexts(self) -> None:
        """Build a two-line Dockerfile that needs a named build context; raises if BuildKit cannot."""
        with tempfile.TemporaryDirectory(prefix="infra-probe-") as tmp:
            main, extra = Path(tmp, "main"), Path(tmp, "extra")
            main.mkdir()
            extra.mkdir()
            (main / "Dockerfile").write_text("FROM scratch\nCOPY --from=probe marker /marker\n")
            (extra / "marker").write_text("infra\n")
            with translate_errors("BuildKit named build context probe"):
                self.docker.buildx.build(str(main), build_contexts={"probe": str(extra)},
                                         output={"type": "cacheonly"}, progress=False)

    def _cli(self) -> list[str]:
        return ["docker", *(["--host", self._host] if self._host else [])]

    def inspect_images(self, refs: Iterable[str]) -> dict[str, ImageInfo | None]:
        """Inspect local images with one docker call (the no-op build asks about every image of a
        mode and should not pay a docker process for each); a missing one maps to None."""
        wanted = list(dict.fromkeys(refs))
        result: dict[str, ImageInfo | None] = dict.fromkeys(wanted)
        if wanted:
            if self.cli_path() is None:
                raise EngineUnavailableError("docker image inspect: the docker command-line client is not installed",
                                             hint="install the Docker CLI, or run scripts/setup-docker.sh")
            cmd = [*self._cli(), "image", "inspect", *wanted]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            stderr = proc.stderr or ""
            if proc.returncode != 0 and any(m.lower() in stderr.lower() for m in DOWN_MARKERS) \
                    and "daemon" in stderr.lower():
                last = stderr.strip().splitlines()[-1]
                raise EngineUnavailableError(f"docker image inspect: no Docker engine answers ({last})",
                                             command=cmd, stderr=stderr, hint=START_HINT)
            found = json.loads(proc.stdout or "[]") or []
            if proc.returncode != 0 and not found and "no such image" not in stderr.lower():
                raise EngineError(f"docker image inspect failed: {stderr.strip()[-300:]}", command=cmd, stderr=stderr)
            for item in found:
                info = ImageInfo(id=item["Id"], size=int(item.get("Size") or 0),
                                 labels=dict((item.get("Config") or {}).get("Labels") or {}),
                                 repo_digests=list(item.get("RepoDigests") or []))
                for ref in wanted:
                    if ref in (item.get("RepoTags") or []) or ref == item["Id"]:
                        result[ref] = info
        return result

    def image_exists(self, ref: str) -> bool:
        return self.inspect_images([ref])[ref] is not None

    def inspect_image(self, ref: str) -> ImageInfo:
        info = self.inspect_images([ref])[ref]
        if info is None:
            raise EngineError(f"docker image inspect {ref}: no such image")
        return info

    def label_of(self, ref: str, label: str) -> str | None:
        """A label of a local image, or None when the image does not exist."""
        info = self.inspect_images([ref])[ref]
        return info.labels.get(label) if info else None

    def image_size(self, ref: str) -> int:
        return self.inspect_image(ref).size

    def image_labels(self, ref: str) -> dict[str, str]:
        return self.inspect_image(ref).labels

    def import_rootfs(self, archive: Path, ref: str, changes: list[str]) -> None:
        """`docker import` a root file system tarball as image ``ref``."""
        with translate_errors(f"docker import {ref}"):
            self.docker.image.import_(str(archive), ref, changes=changes)

    def run_python(self, ref: str, code: str) -> str:
        """Run ``python3 -c code`` in a throw-away container of ``ref`` (no network, no mounts); its stdout."""
        with translate_errors(f"probe of {ref}"):
            return str(self.docker.run(ref, ["-c", code], entrypoint="python3", remove=True, networks=["none"]))

    def run_to_log(self, ref: str, command: list[str], log: Path, *, name: str, mounts: list[tuple[str, str, bool]],
                   env: dict[str, str], workdir: str, user: str | None = None, gpus: bool = False,
                   labels: dict[str, str] | None = None) -> int:
        """``docker run --rm`` one command, its output appended to ``log``; returns its exit code.
        Ctrl-C (or any interruption) stops the container before it is raised again."""
        cmd = [*self._cli(), "run", "--rm", "--name", name, "--workdir", workdir, "--network", "none",
               "--security-opt", "no-new-privileges:true", "--cap-drop", "ALL"]
        for source, target, read_only in mounts:
            cmd += ["--mount", f"type=bind,source={source},target={target}" + (",readonly" if read_only else "")]
        for key, value in sorted(env.items()):
            cmd += ["--env", f"{key}={value}"]
        for key, value in sorted((labels or {}).items()):
            cmd += ["--label", f"{key}={value}"]
        if user:
            cmd += ["--user", user]
        if gpus:
            cmd += ["--gpus", "all"]
        cmd += [ref, *command]
        with open(log, "a", encoding="utf-8") as out:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
            try:
                return proc.wait()
            except BaseException:
                subprocess.run([*self._cli(), "stop", "--time", "10", name], capture_output=True)
                proc.wait()
                raise

    def remote_image_exists(self, ref: str) -> bool:
        """Whether a registry holds ``ref`` (asks the registry, pulls nothing)."""
        from python_on_whales.exceptions import DockerException

        try:
            self.docker.buildx.imagetools.inspect(ref)
        except DockerException as exc:
            text = (exc.stderr or "").lower()
            if "not found" in text or "unknown" in text or "manifest" in text:
                return False
            with translate_errors(f"docker buildx imagetools inspect {ref}"):
                raise
        return True

    def check_builder(self, name: str) -> None:
        """BadInputError unless buildx knows a builder of that name."""
        from infra.errors import BadInputError

        with translate_errors("docker buildx ls"):
            known = [b.name for b in self.docker.buildx.list()]
        if name not in known:
            raise BadInputError(f"--builder: no buildx builder named '{name}' (known: {', '.join(known)})",
                                hint=f"docker buildx create --name {name} --driver docker-container "
                                     "--config buildkit/buildkitd.toml (or point it at a remote BuildKit)")

    def tag(self, ref: str, new_ref: str) -> None:
        with translate_errors(f"docker tag {ref} {new_ref}"):
            self.docker.image.tag(ref, new_ref)

    def push(self, ref: str) -> None:
        with translate_errors(f"docker push {ref}"):
            self.docker.image.push(ref, quiet=True)

    @staticmethod
    def registry_logged_in(registry: str) -> bool:
        """Whether the docker config holds credentials (or a helper) for the registry's host."""
        host = registry.split("/", 1)[0]
        config_dir = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")
        try:
            config = json.loads((config_dir / "config.json").read_text())
        except (OSError, ValueError):
            return False
        if host in (config.get("credHelpers") or {}):
            return True
        for key, entry in (config.get("auths") or {}).items():
            key_host = key.removeprefix("https://").removeprefix("http://").split("/", 1)[0]
            if key_host == host and (entry.get("auth") or entry.get("identitytoken") or config.get("credsStore")):
                return True
        return False
