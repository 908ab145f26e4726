"""One image's Dockerfile for one mode: the spec object in Python, the text from Dockerfile.j2.

Every decision is made here (what the root image sets up, which packages a
mode and torch policy install, which secrets a RUN sees, which labels an image
carries); the template only lays it out. The order is fixed by the template's
blocks: base, OS packages, Python packages, user, code, entrypoint, healthcheck.
"""

from __future__ import annotations

from dataclasses import dataclass
from infra.spec import Stack
from infra.spec.lockmatch import locked_image
from infra.spec.models import ImageSpec, Mode
from infra.render import paths
from infra.render.environment import DOCKERFILE_TEMPLATE, render_template, shared_templates

APT_CACHE_MOUNTS = (
    "type=cache,target=/var/cache/apt,sharing=locked",
    "type=cache,target=/var/lib/apt,sharing=locked",
)
PIP_CACHE_MOUNT = "type=cache,target=/root/.cache/pip,sharing=locked"
CA_SECRET_MOUNT = f"type=secret,id={paths.CA_SECRET}"  # optional (BuildKit's default): absent when none is passed
# The CA bundle is transport, not content: every RUN that reaches the network mounts the optional
# secret and uses it only when the build passes one, so the Dockerfile (and with it the content
# hash) is the same with or without a CA bundle.
CA_FOR_APT = (f"if [ -s {paths.CA_IN_CONTAINER} ]; "
              f"then set -- -o Acquire::https::CAInfo={paths.CA_IN_CONTAINER}; fi")
CA_FOR_PIP = f"if [ -s {paths.CA_IN_CONTAINER} ]; then export PIP_CERT={paths.CA_IN_CONTAINER}; fi"
PIP_CONF_MOUNT = f"type=secret,id={paths.PIP_CONF_SECRET},target={paths.PIP_CONF_IN_CONTAINER}"
WHEELHOUSE_MOUNT = f"type=bind,from={paths.WHEELHOUSE_CONTEXT},target={paths.WHEELHOUSE_DIR}"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
TORCH_DEFAULT_INDEX = "https://pypi.org/simple"  # on Linux x86_64 PyPI's torch is the CUDA build
TORCH_INDEX_ARG = "TORCH_INDEX_URL"
# Every RUN sees SOURCE_DATE_EPOCH, so what it writes does not depend on the clock: Python compiles hash-based
# .pyc files instead of ones stamped with the source's mtime, useradd dates /etc/shadow by it, wheels built from
# sdists take it as their files' time. 1980-01-01, the earliest time a zip (a wheel) can hold; a build that
# passes its own SOURCE_DATE_EPOCH build argument overrides it.
SOURCE_DATE_EPOCH = ("SOURCE_DATE_EPOCH", "315532800")
# What apt and dpkg leave besides the packages, different on every run: logs, ldconfig's cache of file
# times, debconf's backups. (apt's lists and downloads are cache mounts, never in a layer.)
APT_LEFTOVERS = ("/var/log/apt/*", "/var/log/*.log",
                 "/var/cache/ldconfig/aux-cache", "/var/cache/debconf/*-old")


@dataclass(frozen=True)
class DockerfileSpec:
    """Everything Dockerfile.j2 lays out for one image in one mode."""

    image: str
    mode: str
    source: str                                  # the image.yaml it came from, for the header
    from_ref: str                                # the mode's base image, or the parent's build-context name
    is_root: bool
    args: tuple[tuple[str, str], ...]            # ARG name, default
    labels: tuple[tuple[str, str], ...]
    env: tuple[tuple[str, str], ...]
    become_root: bool                            # a child that installs switches to root first
    apt_setup: bool                              # the root image keeps apt's downloads for the cache mount
    apt: tuple[str, ...]
    apt_mounts: tuple[str, ...]
    ca_for_apt: str                              # shell that sets "$@" to apt's CA option when the secret is there
    apt_get: str                                 # apt-get with those options
    apt_leftovers: tuple[str, ...]               # files apt and dpkg leave that differ from run to run (globs)
    venv: str | None                             # the root image creates the virtualenv
    native_site_pth: tuple[str, str] | None      # (file, line) under the mounted torch policy
    torch: str | None                            # torch requirement under the baked policy
    torch_from: str                              # where pip finds torch: the index variable, or the wheelhouse
    torch_extra_from: str                        # the same, beside PyPI, for packages that need torch
    torch_mounts: tuple[str, ...]                # pip's mounts, plus the wheelhouse when there is one
    pip: tuple[str, ...]
    pip_locked: tuple[str, ...]                  # with a lock: requirement lines, exact versions (and hashes)
    pip_hashes: bool                             # every locked line has a hash: pip runs with --require-hashes
    torch_pip: tuple[str, ...]                   # torch-needing packages (baked only)
    torch_pin: tuple[str, ...]                   # torch==V beside them, so pip keeps the mode's torch build
    pip_mounts: tuple[str, ...]
    ca_for_pip: str                              # shell that points pip at the CA secret when it is there
    create_user: bool
    uid: int
    user: str                                    # uid:gid, numeric so runAsNonRoot checks can see it
    user_name: str
    home: str
    files: tuple[tuple[str, str], ...]           # (path in the image folder, path in the image)
    stage_code: tuple[str, ...]                  # sources from the stages context: shared modules and its stages'
    stages_context: str
    stages_dir: str
    protocol_context: str                        # the job protocol the stage code imports, copied beside it
    protocol_files: tuple[str, ...]
    protocol_dir: str
    infra_code: bool                             # infra itself: its whole package and the whole stages package
    entrypoint: tuple[str, ...]


def image_chain(stack: Stack, name: str) -> list[str]:
    """``name`` and its ancestors, root last."""
    chain = [name]
    while (parent := stack.images[chain[-1]].parent) is not None:
        chain.append(parent)
    return chain


def wheelhouse_images(stack: Stack, mode: Mode) -> set[str]:
    """Images that install torch or torch-needing packages from the wheelhouse (baked policy with one set)."""
    env = stack.spec.native_env
    if env.torch != "baked" or env.wheelhouse is None:
        return set()
    return {n for n in stack.images_for_mode(mode) if stack.images[n].torch or stack.images[n].torch_pip}


def stage_sources(stack: Stack, mode: Mode, name: str) -> tuple[str, ...]:
    """What image ``name`` copies from the stages package: the shared modules and the module of each
    stage it runs (if the stage has one: a stage's command need not be a module of the package), so a
    change to one stage's code rebuilds only the image that runs it."""
    own = sorted(f"{stage}.py*" for stage, spec in stack.spec.stages.items() if spec.image == name)
    return (*paths.STAGES_SHARED, *own) if own and name in stage_images(stack, mode) else ()


def stage_images(stack: Stack, mode: Mode) -> set[str]:
    """Images that some stage runs in, in ``mode``: they get the stage code."""
    built = set(stack.images_for_mode(mode))
    return {stage.image for stage in stack.spec.stages.values() if stage.image in built}


def infra_images(stack: Stack, mode: Mode) -> set[str]:
    """Images that carry infra itself (``infra: true``), in ``mode``: they get all of infra and of the stages."""
    return {n for n in stack.images_for_mode(mode) if stack.images[n].infra}


def code_images(stack: Stack, mode: Mode) -> set[str]:
    """Images that take the stages and the job protocol (infra's package) as named contexts."""
    return stage_images(stack, mode) | infra_images(stack, mode)


def build_dockerfile_spec(stack: Stack, mode: Mode, name: str) -> DockerfileSpec:
    image = stack.images[name]
    spec = stack.spec
    baked = spec.native_env.torch == "baked"
    is_root = image.parent is None
    installs_torch = baked and image.torch
    torch_req = f"torch=={spec.native_env.torch_version}" if baked and (image.torch or image.torch_pip) else None
    torch_pip = tuple(image.torch_pip) if baked else ()
    chain = image_chain(stack, name)
    has_tini = "tini" in _apt_names(image)
    wheelhouse = spec.native_env.wheelhouse is not None
    torch_arg = ((TORCH_INDEX_ARG, torch_index(stack, mode)),) if torch_req and not wheelhouse else ()
    args = (SOURCE_DATE_EPOCH, *torch_arg)
    locked = locked_image(stack, mode, name)
    pip_conf = spec.secrets.pip_config is not None
    pip_mounts = (PIP_CACHE_MOUNT, CA_SECRET_MOUNT) + ((PIP_CONF_MOUNT,) if pip_conf else ())
    index = '"${' + TORCH_INDEX_ARG + '}"'
    local = f"--find-links {paths.WHEELHOUSE_DIR}"
    return DockerfileSpec(
        image=name,
        mode=mode,
        source=f"{spec.images_dir}/{name}/image.yaml",
        from_ref=stack.base_ref(mode) if is_root else image.parent,  # type: ignore[arg-type]
        is_root=is_root,
        args=args,
        labels=_labels(stack, mode, name, image, chain),
        env=_env(stack, image, is_root),
        become_root=not is_root and bool(image.apt or image.pip or installs_torch or torch_pip),
        apt_setup=is_root,
        apt=tuple(image.apt) if locked is None or not image.apt else locked.apt_words(image.apt),
        apt_mounts=(*APT_CACHE_MOUNTS, CA_SECRET_MOUNT),
        ca_for_apt=CA_FOR_APT,
        apt_get='apt-get "$@"',
        apt_leftovers=APT_LEFTOVERS,
        venv=paths.VENV if is_root else None,
        native_site_pth=_native_site_pth(stack) if is_root and not baked else None,
        torch=torch_req if installs_torch else None,
        torch_from=local if wheelhouse else f"--index-url {index}",
        torch_extra_from=local if wheelhouse else f"--extra-index-url {index}",
        torch_mounts=pip_mounts + ((WHEELHOUSE_MOUNT,) if wheelhouse else ()),
        pip=tuple(image.pip) if locked is None else (),
        pip_locked=locked.pip_lines() if locked is not None and image.pip else (),
        pip_hashes=locked is not None and locked.pip_hashed,
        torch_pip=torch_pip,
        torch_pin=(torch_req,) if torch_pip and torch_req else (),
        pip_mounts=pip_mounts,
        ca_for_pip=CA_FOR_PIP,
        create_user=is_root,
        uid=paths.UID,
        user=f"{paths.UID}:{paths.UID}",
        user_name=paths.USER_NAME,
        home=f"/home/{paths.USER_NAME}",
        files=tuple((rel, f"{paths.INFRA_HOME}/{name}/{rel}") for rel in image.files),
        stage_code=stage_sources(stack, mode, name),
        stages_context=paths.STAGES_CONTEXT,
        stages_dir=f"{paths.STAGES_DIR}/",
        protocol_context=paths.PROTOCOL_CONTEXT,
        protocol_files=paths.PROTOCOL_FILES,
        protocol_dir=f"{paths.PROTOCOL_DIR}/",
        infra_code=image.infra,
        entrypoint=("/usr/bin/tini", "--") if has_tini else (),
    )


def torch_index(stack: Stack, mode: Mode) -> str:
    """Where torch comes from when baked: the CPU wheels unless the mode has a GPU."""
    return TORCH_DEFAULT_INDEX if stack.spec.modes[mode].gpu else TORCH_CPU_INDEX


def render_dockerfile(stack: Stack, mode: Mode, name: str) -> str:
    """The Dockerfile of image ``name`` in ``mode``; an image with ``template`` extends Dockerfile.j2."""
    image = stack.images[name]
    shared = shared_templates()
    folder = stack.images_dir / name
    shown = {shared: "templates", folder: f"{stack.spec.images_dir}/{name}"}
    if image.template is None:
        return render_template((shared,), DOCKERFILE_TEMPLATE, build_dockerfile_spec(stack, mode, name), shown)
    return render_template((folder, shared), image.template, build_dockerfile_spec(stack, mode, name), shown)


def _apt_names(image: ImageSpec) -> set[str]:
    return {pkg.split("=")[0] for pkg in image.apt}


def _labels(stack: Stack, mode: Mode, name: str, image: ImageSpec,
            chain: list[str]) -> tuple[tuple[str, str], ...]:
    spec = stack.spec
    parent = image.parent
    labels = {
        "org.opencontainers.image.title": f"{spec.project}-{name}",
        "org.opencontainers.image.description": image.description or f"{name} image of {spec.project}",
        "org.opencontainers.image.vendor": spec.project,
        "org.opencontainers.image.version": spec.tag,
        "org.opencontainers.image.base.name": stack.base_ref(mode) if parent is None else stack.image_ref(parent, mode),
        "io.infra.project": spec.project,
        "io.infra.image": name,
        "io.infra.mode": mode,
        "io.infra.python": spec.python,
        "io.infra.torch-policy": spec.native_env.torch,
    }
    labels.update(image.labels)
    return tuple(sorted(labels.items()))


def _env(stack: Stack, image: ImageSpec, is_root: bool) -> tuple[tuple[str, str], ...]:
    env: dict[str, str] = {}
    if is_root:
        env.update({
            "PATH": f"{paths.VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "VIRTUAL_ENV": paths.VENV,
            "PYTHONPATH": paths.INFRA_HOME,
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        })
    env.update(image.env)
    return tuple(sorted(env.items()))


def _native_site_pth(stack: Stack) -> tuple[str, str]:
    """A .pth line that appends the mounted env after the image's own packages (site.addsitedir semantics)."""
    site = paths.site_packages(stack.spec.python)
    return f"{site}/zz-infra-native-site.pth", f'import site; site.addsitedir("{paths.NATIVE_SITE}")'
