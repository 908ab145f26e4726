"""python-on-whales behind a small surface, with Docker failures turned into EngineError.

:class:`Engine` is the real implementation of :class:`~infra.engine.protocol.EngineAPI`. Whether a
call goes through python-on-whales or runs the docker CLI itself, a failure is translated once, by
infra/engine/translate.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from infra.engine.build import BuildRequest, Step, StepLog, run_build
from infra.engine.protocol import EngineVersions, ImageInfo, Mount
from infra.engine.translate import (
    DOWN_MARKERS,
    START_HINT,
    client_missing,
    engine_down,
    failure,
    run_cli,
    translate_errors,
)
from infra.errors import EngineError, EngineUnavailableError

__all__ = ["DOWN_MARKERS", "START_HINT", "Engine", "EngineVersions", "ImageInfo", "translate_errors"]


DOCKER_RUN_FAILED = 125   # `docker run`'s exit code when docker itself failed, not the command


class Engine:
    """A Docker engine reached through the docker CLI (python-on-whales)."""

    def __init__(self, host: str | None = None) -> None:
        self._host = host
        self._client: Any = None
        self._registries: dict[str, Any] = {}

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

    def raw_info(self) -> dict[str, Any]:
        """`docker info` as the engine's JSON: every field, also those python-on-whales leaves out
        (CDISpecDirs, DiscoveredDevices)."""
        action = "docker info"
        if self.cli_path() is None:
            raise client_missing(action)
        cmd = [*self._cli(), "info", "--format", "{{json .}}"]
        proc = run_cli(cmd, action)
        try:
            data = json.loads(proc.stdout or "null")
        except ValueError:
            data = None
        if proc.returncode != 0 or not isinstance(data, dict) or not data.get("ServerVersion"):
            raise failure(action, cmd, proc.returncode or 1, proc.stderr or "no server information in its answer")
        return data

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
        if not wanted:
            return result
        action = "docker image inspect"
        if self.cli_path() is None:
            raise client_missing(action)
        cmd = [*self._cli(), "image", "inspect", *wanted]
        proc = run_cli(cmd, action)
        try:
            found = json.loads(proc.stdout or "[]") or []
        except ValueError:
            found = []
        stderr = proc.stderr or ""
        if proc.returncode != 0 and (engine_down(stderr) or not (found or "no such image" in stderr.lower())):
            raise failure(action, cmd, proc.returncode, stderr)
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

    def build(self, request: BuildRequest, on_step: Callable[[Step], None] | None = None) -> StepLog:
        """Build and load one image with BuildKit (see infra/engine/build.py)."""
        return run_build(self.docker, request, on_step)

    def run_to_log(self, ref: str, command: list[str], log: Path, *, name: str, mounts: list[Mount],
                   env: dict[str, str], workdir: str, user: str | None = None, gpus: bool = False,
                   labels: dict[str, str] | None = None) -> int:
        """``docker run --rm`` one command, its output appended to ``log``; returns its exit code.
        Ctrl-C (or any interruption) stops the container before it is raised again. When docker itself
        cannot reach the engine, EngineUnavailableError (its words stay in the log too)."""
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
        action = f"docker run {ref}"
        with open(log, "a", encoding="utf-8") as out:
            start = out.tell()
            try:
                proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
            except FileNotFoundError:
                raise client_missing(action) from None
            try:
                code = proc.wait()
            except BaseException:
                self._stop(name)
                proc.wait()
                raise
        if code == DOCKER_RUN_FAILED:
            with open(log, encoding="utf-8", errors="replace") as written:
                written.seek(start)
                output = written.read()
            if engine_down(output):
                raise failure(action, cmd, code, output)
        return code

    def stop_container(self, name: str) -> None:
        """Stop a container that ``run_to_log`` started (SIGTERM, then SIGKILL after 10 s); quietly, since the
        container may be gone already and the interruption that asked for it is what the user should see."""
        self._stop(name)

    def _stop(self, name: str) -> None:
        try:
            run_cli([*self._cli(), "stop", "--time", "10", name], f"docker stop {name}")
        except EngineError:
            pass

    def remote_image_exists(self, ref: str) -> bool:
        """Whether a registry holds ``ref`` (asks the registry's API with docker's credentials and, like docker,
        the registry's own CA from /etc/docker/certs.d; pulls nothing)."""
        from infra.oci.attest import parse_ref
        from infra.oci.client import RegistryClient

        host, repository, reference = parse_ref(ref)
        if host not in self._registries:             # one client (and one look at its auth) per registry
            self._registries[host] = RegistryClient(host)
        return self._registries[host].manifest_digest(repository, reference) is not None

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

    def pull(self, ref: str) -> None:
        with translate_errors(f"docker pull {ref}"):
            self.docker.image.pull(ref, quiet=True)

    def load_archive(self, archive: Path) -> None:
        """Load an OCI (or docker) image archive; the image keeps the digests it was written with."""
        with translate_errors(f"docker load -i {archive}"):
            self.docker.image.load(str(archive), quiet=True)

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
