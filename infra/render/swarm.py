"""The swarm stack file for one mode: what `docker stack deploy` accepts.

The same stage-worker services as compose.yaml, with the differences swarm
needs: registry image names (nodes pull them), no build, no depends_on, no
devices (a GPU is a generic resource that nodes advertise, and GPU stages are
placed only on nodes labelled infra.gpu=true), data folders at one absolute path
on every node chosen with variables that have defaults, a replica count per
stage (`infra deploy --scale`), a hostname that names the node, and memory
reservations from the stages' `memory`. With `native_env.delivery: image` the
environment reaches each node through the registry (infra/stack/envimage.py):
the global service native-env fills a volume the workers mount by subpath.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from infra.spec import Stack
from infra.spec.models import Mode
from infra.render import paths
from infra.render.compose import HEALTH, Mount, ServiceSpec, build_services, data_mounts, serve_services
from infra.render.environment import SWARM_TEMPLATE, Interpolated, render_template, shared_templates

GPU_RESOURCE = "NVIDIA-GPU"


@dataclass(frozen=True)
class NativeEnvService:
    """delivery: image on a swarm: the global service that puts the environment image into each node's volume."""

    name: str
    image: str                    # ${INFRA_ENV_IMAGE:-<ref by tag>}: `infra deploy` pins it by digest
    folder: str                   # ${INFRA_ENV_FOLDER:-<tag>}: the digest, the folder the workers mount
    volume: str
    site: str                     # where the image keeps the site-packages
    ready: str                    # the folder in the service's own view: there means complete


@dataclass(frozen=True)
class SwarmSpec:
    project: str
    mode: str
    out: str
    policy: str
    registry: str | None
    data_root: str                        # the default of INFRA_DATA
    native_site: str | None               # the default of INFRA_NATIVE_SITE, under the mounted policy (a folder)
    gpu_resource: str
    gpu_label: str
    uid: int
    services: tuple[ServiceSpec, ...]
    health: tuple[tuple[str, object], ...]
    secrets: tuple[tuple[str, str], ...]
    replicas: dict[str, str]              # service -> its replica count (a variable `infra deploy --scale` sets)
    hostname: str
    native_env: NativeEnvService | None = None


# What the stack file leaves to the node it is deployed from (`infra deploy` sets them).
DATA_VARIABLE = "INFRA_DATA"
NATIVE_SITE_VARIABLE = "INFRA_NATIVE_SITE"
ENV_IMAGE_VARIABLE = "INFRA_ENV_IMAGE"
ENV_FOLDER_VARIABLE = "INFRA_ENV_FOLDER"
NATIVE_ENV_SERVICE = "native-env"
NATIVE_ENV_VOLUME = "native-env"
GPU_LABEL = "infra.gpu"                   # `docker node update --label-add infra.gpu=true NODE` on GPU nodes
# A worker's hostname names its node and replica, so worker ids (and job.json) say where a stage ran.
WORKER_HOSTNAME = "{{.Node.Hostname}}-{{.Task.Slot}}"


def replicas_variable(service: str) -> str:
    return "INFRA_REPLICAS_" + service.upper().replace("-", "_")


def build_swarm_spec(stack: Stack, mode: Mode, layout: paths.Layout) -> SwarmSpec:
    spec = stack.spec
    data_root = f"/srv/{spec.project}"
    mounted = spec.native_env.torch == "mounted"
    by_image = mounted and spec.native_env.delivery == "image"
    native_site = f"{data_root}/native-site" if mounted and not by_image else None
    mounts = data_mounts({host: Interpolated(f"${{{DATA_VARIABLE}:-{data_root}}}/{host}")
                          for host, _, _ in paths.DATA_MOUNTS})
    images = {name: stack.image_ref(name, mode) for name in stack.images_for_mode(mode)}
    env_service, native = None, None
    if by_image:
        from infra.stack.envimage import ENV_SITE, env_image_ref

        ref = env_image_ref(stack, mode)
        folder = f"${{{ENV_FOLDER_VARIABLE}:-{ref.rsplit(':', 1)[1]}}}"
        env_service = NativeEnvService(NATIVE_ENV_SERVICE, Interpolated(f"${{{ENV_IMAGE_VARIABLE}:-{ref}}}"),
                                       Interpolated(folder), NATIVE_ENV_VOLUME, ENV_SITE, Interpolated(f"/envs/{folder}"))
        native = Mount(NATIVE_ENV_VOLUME, paths.NATIVE_SITE, True, False, "volume", env_service.folder)
    elif native_site is not None:
        native = Mount(Interpolated(f"${{{NATIVE_SITE_VARIABLE}:-{native_site}}}"), paths.NATIVE_SITE, True, False)
    ca = spec.secrets.ca_bundle
    services = build_services(stack, mode, images, mounts, native, ca, layout.native_libs)
    workers = tuple(_on_swarm(s) for s in services)
    served = serve_services(stack, mode, images, on_node(data_root))
    return SwarmSpec(
        project=spec.project,
        mode=mode,
        out=layout.out,
        policy=spec.native_env.torch,
        registry=spec.registry,
        data_root=data_root,
        native_site=native_site,
        gpu_resource=GPU_RESOURCE,
        gpu_label=GPU_LABEL,
        uid=paths.UID,
        services=workers + tuple(_no_create(s) for s in served),
        health=HEALTH,
        secrets=((paths.CA_SECRET, layout.host_path(ca)),) if ca is not None else (),
        replicas={s.name: Interpolated(f"${{{replicas_variable(s.name)}:-1}}") for s in workers},
        hostname=WORKER_HOSTNAME,
        native_env=env_service,
    )


def _on_swarm(service: ServiceSpec) -> ServiceSpec:
    """A stage worker on a swarm: no created host paths, and told which node it runs on."""
    from dataclasses import replace

    env = dict(service.environment, INFRA_NODE="{{.Node.Hostname}}")
    return replace(_no_create(service), environment=tuple(sorted(env.items())))


def on_node(data_root: str) -> Callable[[str], str]:
    """How the stack file spells a path of the project: under the data folder the deploy names (an absolute
    path, such as the built-in spec's, stays as it is)."""
    def spell(rel: str) -> str:
        return rel if rel.startswith("/") else Interpolated(f"${{{DATA_VARIABLE}:-{data_root}}}/{rel}")
    return spell


def _no_create(service: ServiceSpec) -> ServiceSpec:
    """Swarm has no create_host_path: every node must have the folders already."""
    from dataclasses import replace

    return replace(service, mounts=tuple(replace(m, create=False) for m in service.mounts))


def render_swarm_stack(stack: Stack, mode: Mode, layout: paths.Layout) -> str:
    """stack.yaml for ``docker stack deploy -c`` in ``mode``."""
    shared = shared_templates()
    return render_template((shared,), SWARM_TEMPLATE, build_swarm_spec(stack, mode, layout), {shared: "templates"})
