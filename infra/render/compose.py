"""compose.yaml for one mode: a stage-worker service per stage, images by tag, never a build; and, with
``serve.enabled``, the service 'serve' (`infra serve` in front of the workers, its port published).

The services are described here as data (``ServiceSpec``); compose.yaml.j2 and
the swarm stack template lay them out. Paths are relative to the compose
file's folder, which is compose's default project directory, so
``docker compose -f .infra/out/<mode>/compose.yaml ...`` works from anywhere.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable
from dataclasses import dataclass

from infra.spec import Stack
from infra.spec.models import Mode
from infra.errors import ConfigError
from infra.jobproto import CACHE_ENV
from infra.render import paths
from infra.render.environment import COMPOSE_TEMPLATE, Interpolated, render_template, shared_templates

WORKER = ("python3", "-m", "stages.worker")
# Compose durations. A worker answers its health check once it has touched its heartbeat, a moment
# after it starts; start_interval lets `up --wait` see that within a second instead of an interval.
HEALTH = (("interval", "30s"), ("timeout", "10s"), ("retries", 3), ("start_period", "60s"), ("start_interval", "1s"))
SETUP_SERVICE = "setup-dirs"
SETUP_PROFILE = "setup"
SERVE_SERVICE = "serve"
SERVE_UPLOADS = "in/uploads"      # where `infra serve` keeps uploads (infra/serve/service.py): writable for it
SERVE_TOKEN_VARIABLE = "INFRA_SERVE_TOKEN"   # passed through from the environment of `compose up`, never written


@dataclass(frozen=True)
class Mount:
    source: str          # as the file spells it (relative to the file, or an interpolated variable)
    target: str
    read_only: bool
    create: bool         # let compose create a missing host folder
    kind: str = "bind"   # bind, image (an image's files) or volume (a named volume)
    subpath: str | None = None   # for image and volume mounts: the folder inside it that is mounted


@dataclass(frozen=True)
class Port:
    address: str         # the host address it is published on (compose only)
    published: int
    target: int


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    stage: str
    image: str
    command: tuple[str, ...]
    healthcheck: tuple[str, ...]
    environment: tuple[tuple[str, str], ...]
    labels: tuple[tuple[str, str], ...]
    mounts: tuple[Mount, ...]
    depends_on: tuple[str, ...]          # upstream stages in this file; each must be healthy first
    gpu: bool                            # gets the NVIDIA GPU (devices in compose, generic resources in swarm)
    secrets: tuple[str, ...]
    ports: tuple[Port, ...] = ()
    working_dir: str | None = None
    memory: int | None = None            # bytes reserved for it (the stage's `memory`)


@dataclass(frozen=True)
class SetupSpec:
    """A one-shot helper (profile ``setup``) that hands the writable data folders to the stage user."""

    name: str
    profile: str
    image: str
    uid: int
    command: tuple[str, ...]
    mounts: tuple[Mount, ...]


@dataclass(frozen=True)
class ComposeSpec:
    project: str
    mode: str
    out: str
    policy: str
    pull_policy: str
    services: tuple[ServiceSpec, ...]
    setup: SetupSpec | None
    health: tuple[tuple[str, object], ...]
    secrets: tuple[tuple[str, str], ...]   # (name, file)


def compose_stages(stack: Stack, mode: Mode) -> list[str]:
    """The stages that get a service in ``mode``: those whose image is built in it, in spec order."""
    built = set(stack.images_for_mode(mode))
    return [name for name, stage in stack.spec.stages.items() if stage.image in built]


def data_mounts(sources: dict[str, str]) -> tuple[Mount, ...]:
    """The in/out/jobs/config/cache mounts; ``sources`` maps each host folder name to how the file spells it."""
    return tuple(Mount(sources[host], target, ro, True) for host, target, ro in paths.DATA_MOUNTS)


def build_services(stack: Stack, mode: Mode, images: dict[str, str], mounts: tuple[Mount, ...],
                   native: Mount | None, ca_file: str | None,
                   native_libs: tuple[str, ...] = ()) -> tuple[ServiceSpec, ...]:
    """One stage-worker service per stage in ``mode``; ``images`` maps image names to references; ``native``
    mounts the native env's site-packages (under the mounted policy). GPU services get the mounted env's
    NVIDIA library folders (``native_libs``) on LD_LIBRARY_PATH."""
    spec = stack.spec
    names = compose_stages(stack, mode)
    if SETUP_SERVICE in names:
        raise ConfigError([f"{stack.spec_path.name}: stages.{SETUP_SERVICE}: the name is taken by infra's "
                           f"helper service; rename the stage"])
    gpu_mode = spec.modes[mode].gpu
    extra = (native,) if native is not None else ()
    services = []
    for name in names:
        stage = spec.stages[name]
        env = {
            "INFRA_STAGE": name,
            "INFRA_MODE": mode,
            "INFRA_JOBS": f"{paths.DATA}/jobs",
            CACHE_ENV: paths.CACHE,
            "HF_HOME": f"{paths.CACHE}/huggingface",
            "TORCH_HOME": f"{paths.CACHE}/torch",
            # numba (librosa, under resemblyzer) caches compiled code beside the sources by default,
            # which the read-only native env refuses: it would compile again in every container.
            "NUMBA_CACHE_DIR": f"{paths.CACHE}/numba",
            "INFRA_CLAIM_TIMEOUT_S": str(spec.claim_timeout_s),
        }
        gpu = gpu_mode and stage.gpu
        if gpu and native is not None and native_libs:
            env["LD_LIBRARY_PATH"] = paths.library_path(paths.NATIVE_SITE, native_libs)
        if ca_file is not None:
            env["SSL_CERT_FILE"] = paths.CA_IN_CONTAINER
            env["REQUESTS_CA_BUNDLE"] = paths.CA_IN_CONTAINER
        services.append(ServiceSpec(
            name=name,
            stage=name,
            image=images[stage.image],
            command=(*WORKER, name),
            healthcheck=("CMD", *WORKER, "--health", name),
            environment=tuple(sorted(env.items())),
            labels=(("io.infra.mode", mode), ("io.infra.project", spec.project), ("io.infra.stage", name)),
            mounts=mounts + extra,
            depends_on=tuple(a for a in stage.after if a in names),
            gpu=gpu,
            secrets=(paths.CA_SECRET,) if ca_file is not None else (),
            memory=stage.memory_bytes,
        ))
    return tuple(services)


def native_mount(stack: Stack, mode: Mode, layout: paths.Layout) -> Mount | None:
    """How a compose service sees the native env: its folder, or (delivery: image) the environment image."""
    env = stack.spec.native_env
    if env.torch != "mounted":
        return None
    if env.delivery == "image":
        from infra.stack.envimage import ENV_SITE, env_image_ref

        return Mount(env_image_ref(stack, mode), paths.NATIVE_SITE, True, False, "image", ENV_SITE.lstrip("/"))
    return Mount(layout.host_path(paths.native_site_source(stack)), paths.NATIVE_SITE, True, False)


def build_compose_spec(stack: Stack, mode: Mode, layout: paths.Layout) -> ComposeSpec:
    spec = stack.spec
    ca = spec.secrets.ca_bundle
    mounts = data_mounts({host: layout.host_path(host) for host, _, _ in paths.DATA_MOUNTS})
    images = {name: stack.image_ref(name, mode) for name in stack.images_for_mode(mode)}
    services = build_services(stack, mode, images, mounts, native_mount(stack, mode, layout), ca, layout.native_libs)
    root = next(n for n in stack.images_for_mode(mode) if stack.images[n].parent is None)
    writable = tuple(m for m in mounts if not m.read_only)
    setup = SetupSpec(
        name=SETUP_SERVICE,
        profile=SETUP_PROFILE,
        image=images[root],
        uid=paths.UID,
        command=("chown", "-R", f"{paths.UID}:{paths.UID}", *(m.target for m in writable)),
        mounts=writable,
    ) if services else None
    return ComposeSpec(
        project=spec.project,
        mode=mode,
        out=layout.out,
        policy=spec.native_env.torch,
        pull_policy="missing" if spec.registry else "never",
        services=services + serve_services(stack, mode, images, layout.host_path),
        setup=setup,
        health=HEALTH,
        secrets=((paths.CA_SECRET, layout.host_path(ca)),) if ca is not None else (),
    )


def render_compose(stack: Stack, mode: Mode, layout: paths.Layout) -> str:
    """compose.yaml for ``mode``."""
    shared = shared_templates()
    return render_template((shared,), COMPOSE_TEMPLATE, build_compose_spec(stack, mode, layout),
                           {shared: "templates"})


def serve_services(stack: Stack, mode: Mode, images: dict[str, str],
                   source: Callable[[str], str]) -> tuple[ServiceSpec, ...]:
    """The service 'serve' when the spec enables it and its image is built in ``mode``: `infra serve` on every
    address of its container, handing films to the workers through the queue. ``source`` spells a host path
    (relative to the project) as the file must.

    It sees the workspace where the workers do (/data/...), with in/ read-only but for in/uploads, and the spec
    at /data/infra.yaml with its images folder, so that its jobs are the workers' jobs. The token is never in
    the file: the service reads it from config/ (the secrets file) or from INFRA_SERVE_TOKEN, which compose
    passes through from its own environment."""
    serve = stack.spec.serve
    if not serve.enabled or serve.image not in images:
        return ()
    spec_file, images_dir = (str(p) if stack.embedded else os.path.relpath(p, stack.workdir)
                             for p in (stack.spec_path, stack.images_dir))
    mounts = tuple(Mount(source(host), target, ro, True) for host, target, ro in paths.DATA_MOUNTS) + (
        Mount(source(SERVE_UPLOADS), f"{paths.DATA}/{SERVE_UPLOADS}", False, True),
        Mount(source(spec_file), f"{paths.DATA}/infra.yaml", True, False),
        Mount(source(images_dir), posixpath.normpath(posixpath.join(paths.DATA, stack.spec.images_dir)), True, False),
    )
    port = str(serve.port)
    probe = f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}/healthz', timeout=5)"
    return (ServiceSpec(
        name=SERVE_SERVICE,
        stage="",
        image=images[serve.image],
        command=("python3", "-m", "infra", "serve", "--host", "0.0.0.0", "--port", port,
                 "--max-upload", serve.max_upload.strip(), "--stack-mode", mode),
        healthcheck=("CMD", "python3", "-c", probe),
        environment=((CACHE_ENV, paths.CACHE), ("INFRA_MODE", mode),
                     (SERVE_TOKEN_VARIABLE, Interpolated(f"${{{SERVE_TOKEN_VARIABLE}:-}}"))),
        labels=(("io.infra.mode", mode), ("io.infra.project", stack.spec.project), ("io.infra.service", SERVE_SERVICE)),
        mounts=mounts,
        depends_on=(),
        gpu=False,
        secrets=(),
        ports=(Port(serve.address, serve.port, serve.port),),
        working_dir=paths.DATA,
    ),)
