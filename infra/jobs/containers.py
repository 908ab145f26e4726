"""Running a job's stages in their stage images: `infra job run --mode docker-cpu`.

Each stage is one `docker run --rm` of its image (through the engine adapter)
with the workspace mounted where the compose services have it (/data/in,
/data/out, /data/jobs, /data/config, /data/cache) and, under the mounted torch
policy, the native environment's site-packages read-only. The command and the
job directory are the ones a native run uses, seen from inside the container.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from infra.spec import Stack
from infra.engine import Engine, EngineAPI
from infra.errors import BadInputError
from infra.jobproto import CACHE_ENV
from infra.jobs.runners import StageCall
DATA = "/data"


class ContainerRunner:
    def __init__(self, stack: Stack, mode: str, job: dict[str, Any], engine: EngineAPI | None = None) -> None:
        self.stack = stack
        self.mode = mode
        self.name = mode
        self.job = job
        self.engine = engine or Engine()
        self.root = stack.workdir.resolve()
        self.user: str | None = None

    def check(self) -> None:
        """Images built and current, the native env loadable by each, the input reachable from /data."""
        from infra.jobproto import locked_job
        from infra.jobs.prepare import reachable_input
        from infra.render.paths import UID
        from infra.stack.readiness import check_native_env, prepare_workspace, render_to_disk, stale_images
        from infra.workspace import Workspace

        images = sorted({self.stack.spec.stages[s["name"]].image for s in self.job["stages"]})
        stale = stale_images(self.stack, self.mode, render_to_disk(self.stack, self.mode), self.engine, images)
        missing = [i for i in images if i in stale]
        if missing:
            raise BadInputError(f"images not built or out of date for {self.mode}: {', '.join(missing)}",
                                hint=f"`infra build --mode {self.mode}`")
        check_native_env(self.stack, self.mode, images, self.engine)
        warning = prepare_workspace(self.stack)
        if warning and os.geteuid() != 0:
            owner = self.root.joinpath("out").stat()
            self.user = f"{owner.st_uid}:{owner.st_gid}" if owner.st_uid != UID else None
        job_dir = self.root / self.job["dir"]
        with locked_job(job_dir) as data:
            data["input"]["file"] = reachable_input(Workspace(self.root), job_dir, data)

    def mounts(self) -> list[tuple[str, str, bool]]:
        from infra.render.paths import DATA_MOUNTS, NATIVE_SITE

        found = [(str(self.root / host), target, read_only) for host, target, read_only in DATA_MOUNTS]
        if self.stack.spec.native_env.torch == "mounted":
            from infra.stack.nativeenv import inspect_env

            env = inspect_env(self.stack.workdir / self.stack.spec.native_env.path)
            found.append((str(env.site_packages.resolve()), NATIVE_SITE, True))
        return found

    def library_path(self, stage: str) -> str:
        """LD_LIBRARY_PATH of a GPU stage (one with gpu: true, in a GPU mode) under the mounted policy: the env's
        NVIDIA library folders where the env is mounted, as the rendered compose sets it for that stage's service."""
        spec = self.stack.spec
        gpu = spec.modes[self.mode].gpu and spec.stages[stage].gpu  # type: ignore[index]
        if spec.native_env.torch != "mounted" or not gpu:
            return ""
        from infra.render.paths import NATIVE_SITE, library_path, nvidia_library_dirs
        from infra.stack.nativeenv import inspect_env

        site = inspect_env(self.stack.workdir / spec.native_env.path).site_packages
        return library_path(NATIVE_SITE, nvidia_library_dirs(site))

    def inside(self, path: Path) -> str:
        return f"{DATA}/{path.resolve().relative_to(self.root).as_posix()}"

    def run(self, call: StageCall) -> int:
        job_dir = self.inside(call.job_dir)
        env = {**call.env, CACHE_ENV: f"{DATA}/cache", "HF_HOME": f"{DATA}/cache/huggingface",
               "TORCH_HOME": f"{DATA}/cache/torch", "NUMBA_CACHE_DIR": f"{DATA}/cache/numba",
               "INFRA_STAGE": call.stage, "INFRA_MODE": self.mode}
        gpus = self.stack.spec.modes[self.mode].gpu and call.device.startswith("cuda")  # type: ignore[index]
        library_path = self.library_path(call.stage)
        if library_path:
            env["LD_LIBRARY_PATH"] = library_path
        return self.engine.run_to_log(
            self.stack.image_ref(call.image, self.mode), [*call.command, job_dir], call.log,
            name=self.container_name(call), mounts=self.mounts(), env=env,
            workdir=job_dir, user=self.user, gpus=gpus,
            labels={"io.infra.project": self.stack.spec.project, "io.infra.job": str(self.job["id"]),
                    "io.infra.stage": call.stage},
        )

    def container_name(self, call: StageCall) -> str:
        return f"{self.stack.spec.project}-{self.job['id']}-{call.stage}"

    def stop(self, call: StageCall) -> None:
        self.engine.stop_container(self.container_name(call))
