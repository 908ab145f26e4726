"""The swarm stack file for one mode: what `docker stack deploy` accepts.

The same stage-worker services as compose.yaml, with the differences swarm
needs: registry image names (nodes pull them), no build, no depends_on, no
devices (a GPU is a generic resource that nodes advertise), and data folders
at one absolute path on every node, chosen with variables that have defaults.
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
class SwarmSpec:
    project: str
    mode: str
    out: str
    policy: str
    registry: str | None
    data_root: str                        # the default of INFRA_DATA
    native_site: str | None               # the default of INFRA_NATIVE_SITE, under the mounted policy
    gpu_resource: str
    uid: int
    services: tuple[ServiceSpec, ...]
    health: tuple[tuple[str, object], ...]
    secrets: tuple[tuple[str, str], ...]


# What the stack file leaves to the node it is deployed from (`infra deploy` sets both).
DATA_VARIABLE = "INFRA_DATA"
NATIVE_SITE_VARIABLE = "INFRA_NATIVE_SITE"


def build_swarm_spec(stack: Stack, mode: Mode, layout: paths.Layout) -> SwarmSpec:
    spec = stack.spec
    data_root = f"/srv/{spec.project}"
    native_site = f"{data_root}/native-site" if spec.native_env.torch == "mounted" else None
    mounts = data_mounts({host: Interpolated(f"${{{DATA_VARIABLE}:-{data_root}}}/{host}")
                          for host, _, _ in paths.DATA_MOUNTS})
    images = {name: stack.image_ref(name, mode) for name in stack.images_for_mode(mode)}
    site = Interpolated(f"${{{NATIVE_SITE_VARIABLE}:-{native_site}}}") if native_site else None
    ca = spec.secrets.ca_bundle
    services = build_services(stack, mode, images, mounts, site, ca, layout.native_libs)
    return SwarmSpec(
        project=spec.project,
        mode=mode,
        out=layout.out,
        policy=spec.native_env.torch,
        registry=spec.registry,
        data_root=data_root,
        native_site=native_site,
        gpu_resource=GPU_RESOURCE,
        uid=paths.UID,
        services=tuple(_no_create(s) for s in services + serve_services(stack, mode, images, on_node(data_root))),
        health=HEALTH,
        secrets=((paths.CA_SECRET, layout.host_path(ca)),) if ca is not None else (),
    )


def on_node(data_root: str) -> Callable[[str], str]:
    """How the stack file spells a path of the project: under the data folder the deploy names (an absolute
    path, such as the built-in spec's, stays as it is)."""
    def spell(rel: str) -> str:
        return rel if rel.startswith("/") else Interpolated(f"${{{DATA_VARIABLE}:-{data_root}}}/{rel}")
    return spell


def _no_create(service: ServiceSpec) -> ServiceSpec:
    """Swarm has no create_host_path: every node must have the folders already."""
    from dataclasses import replace

    return replace(service, mounts=tuple(Mount(m.source, m.target, m.read_only, False) for m in service.mounts))


def render_swarm_stack(stack: Stack, mode: Mode, layout: paths.Layout) -> str:
    """stack.yaml for ``docker stack deploy -c`` in ``mode``."""
    shared = shared_templates()
    return render_template((shared,), SWARM_TEMPLATE, build_swarm_spec(stack, mode, layout), {shared: "templates"})
