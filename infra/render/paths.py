"""What the rendered files agree on: paths inside the images, the user, where things go.

The Dockerfiles create these paths and the compose and swarm files mount onto
them, so they are defined once, here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from infra.jobproto import CACHE_DIR

if TYPE_CHECKING:
    from infra.spec import Stack

# The non-root user every image runs as. A fixed uid, so that bind-mounted job
# folders on the host can be handed to it (`chown 10001:10001 jobs`).
USER_NAME = "infra"
UID = 10001

VENV = "/opt/venv"
INFRA_HOME = "/opt/infra"              # on PYTHONPATH: the stage code lives below it
STAGES_DIR = f"{INFRA_HOME}/stages"
NATIVE_SITE = f"{INFRA_HOME}/native-site"  # the native env's site-packages, mounted read-only
# The CUDA libraries that pip's NVIDIA wheels install (nvidia/cublas/lib, nvidia/cu13/lib, ...), relative to
# site-packages: GPU stages get those of the native env on LD_LIBRARY_PATH.
NVIDIA_LIBRARY_GLOB = "nvidia/*/lib"
DATA = "/data"

# Host folders (relative to the project) and where stage containers see them.
# (host folder, container folder, read-only)
DATA_MOUNTS: tuple[tuple[str, str, bool], ...] = (
    ("in", f"{DATA}/in", True),
    ("out", f"{DATA}/out", False),
    ("jobs", f"{DATA}/jobs", False),
    ("config", f"{DATA}/config", True),
    (CACHE_DIR, f"{DATA}/cache", False),
)
CACHE = f"{DATA}/cache"

# BuildKit secret ids; a secret is mounted at /run/secrets/<id> for one RUN only.
CA_SECRET = "ca_bundle"
HF_SECRET = "hf_token"
CA_IN_CONTAINER = f"/run/secrets/{CA_SECRET}"
PIP_CONF_SECRET = "pip_conf"
PIP_CONF_IN_CONTAINER = "/etc/pip.conf"      # pip's site-wide config file: read for that RUN only

# Build contexts that are not images: an image may not take these names.
STAGES_CONTEXT = "stages"
# What every stage image takes from the stages package besides the modules of its own stages
# (stages/<stage>.py): the package marker, the shared helpers (_*.py) and the worker. Wildcards,
# so a helper that does not exist yet is no error.
STAGES_SHARED = ("__init__.py", "_*.py", "worker.py*")
# The job protocol (infra/jobproto.py) that the stage code imports, with the package marker, which imports nothing.
PROTOCOL_CONTEXT = "jobproto"
PROTOCOL_FILES = ("__init__.py", "jobproto.py")
PROTOCOL_DIR = f"{INFRA_HOME}/infra"
WHEELHOUSE_CONTEXT = "wheelhouse"
WHEELHOUSE_DIR = "/opt/infra/wheelhouse"      # bind-mounted for one RUN, never a layer
RESERVED_NAMES = frozenset({STAGES_CONTEXT, PROTOCOL_CONTEXT, WHEELHOUSE_CONTEXT, "scratch"})

DOCKERFILES = "dockerfiles"
COMPOSE_FILE = "compose.yaml"
BAKE_FILE = "docker-bake.json"
SWARM_FILE = "stack.yaml"


def site_packages(python: str) -> str:
    return f"{VENV}/lib/python{python}/site-packages"


def nvidia_library_dirs(site: Path) -> tuple[str, ...]:
    """The NVIDIA library folders that exist in the site-packages folder ``site``, relative to it, sorted."""
    if not site.is_dir():
        return ()
    return tuple(sorted(p.relative_to(site).as_posix() for p in site.glob(NVIDIA_LIBRARY_GLOB) if p.is_dir()))


def library_path(root: str, dirs: tuple[str, ...]) -> str:
    """LD_LIBRARY_PATH for the library folders ``dirs`` of the site-packages folder at ``root``."""
    return ":".join(f"{root.rstrip('/')}/{d}" for d in dirs)


@dataclass(frozen=True)
class Layout:
    """Where the rendered files go, and the relative paths they use to point back.

    buildx bake resolves a target's context against the folder it is run from
    (the project), and its dockerfile against that context; compose and
    ``docker stack`` resolve paths against the folder of the file. Every path
    is relative, so re-rendering elsewhere gives the same bytes.
    """

    out: str            # the output folder, as the user should type it (for comments)
    to_project: str     # from the output folder to the project (compose and stack paths)
    from_project: str   # from the project to the output folder (bake dockerfile paths)
    images: str         # from the project to the images folder
    stages: str         # from the project to the stage code
    package: str        # from the project to infra's own package (the job protocol)
    native_libs: tuple[str, ...] = ()   # the native env's NVIDIA library folders (relative to its site-packages)

    def dockerfile(self, image: str) -> str:
        return f"{DOCKERFILES}/{image}.Dockerfile"

    def project_path(self, path: str) -> str:
        """A path from the spec as bake (run from the project) must spell it: absolute stays absolute."""
        return path if os.path.isabs(path) else Path(path).as_posix()

    def host_path(self, rel: str) -> str:
        """A project-relative host path as the compose file must spell it."""
        if os.path.isabs(rel):
            return rel
        return _join(self.to_project, rel)


def layout_for(project: Path, out: Path, images: Path, stages: Path, package: Path) -> Layout:
    """The layout for absolute ``project``, ``out``, ``images``, ``stages`` and ``package`` folders (pure string work)."""
    for p in (project, out, images, stages, package):
        if not p.is_absolute():
            raise ValueError(f"{p} must be absolute")
    return Layout(
        out=_rel(out, project),
        to_project=_rel(project, out),
        from_project=_rel(out, project),
        images=_rel(images, project),
        stages=_rel(stages, project),
        package=_rel(package, project),
    )


def _rel(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


def _join(base: str, rel: str) -> str:
    joined = Path(base, rel).as_posix() if base != "." else Path(rel).as_posix()
    return joined if joined.startswith((".", "/")) else f"./{joined}"


def native_site_source(stack: Stack) -> str:
    """The native env's site-packages, relative to the project (or absolute if the spec says so)."""
    env = stack.spec.native_env
    return f"{env.path.rstrip('/')}/lib/python{stack.spec.python}/site-packages"
