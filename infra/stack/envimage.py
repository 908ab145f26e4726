"""The native environment as an image in the registry: `infra env push`, `infra env show --registry`.

Under `torch: mounted` no stage image carries torch: a stage loads the native environment's
site-packages at paths.NATIVE_SITE. On one machine that is a bind mount of the env's folder. A fleet
cannot keep one folder identical on every node, so the environment also travels as an image:

- the environment image starts FROM the mode's base (it brings only `sh` and `cp`, and shares its layers
  with the stage images) and holds the site-packages at ENV_SITE in one layer. Its tag is a hash of what
  makes the env (the Python, the lock that `infra env create` writes, the base), so pushing the same env
  twice pushes nothing the second time;
- compose and `docker run` mount it read-only as an image (`type: image`, subpath ENV_SITE);
- a swarm refuses image mounts: `infra deploy` runs the environment image as a global service that copies
  ENV_SITE into a volume on its node, in a folder named by the image's digest that appears (by rename) only
  when complete; the stage workers mount that folder (a volume subpath), so no worker starts on a node until
  the environment there is the one the stack names (see infra/render/swarm.py).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from infra.engine import Engine, EngineAPI
from infra.errors import BadInputError
from infra.spec import Stack
from infra.spec.models import Mode

ENV_SITE = "/opt/infra-env/site-packages"        # where the environment image keeps the site-packages
ENV_REPOSITORY = "native-env"                    # the image is <registry>/<project>-native-env:<tag>
TEMPLATE = "envimage.Dockerfile.j2"


@dataclass(frozen=True)
class EnvImage:
    ref: str                  # registry/project-native-env:tag
    digest: str | None        # the manifest digest in the registry, None when it is not there
    status: str = ""          # "pushed", "in registry", "absent"
    seconds: float = 0.0

    @property
    def pinned(self) -> str:
        """The reference by digest, which is what nodes pull and check."""
        assert self.digest is not None
        return f"{self.ref.rsplit(':', 1)[0]}@{self.digest}"

    @property
    def folder(self) -> str:
        """The folder a node keeps this environment in: its digest, which names exactly this content."""
        assert self.digest is not None
        return self.digest.replace(":", "-")


def site_packages(stack: Stack) -> Path:
    """The native env's site-packages on this machine."""
    from infra.render.paths import native_site_source

    return (stack.workdir / native_site_source(stack)).resolve()


def env_tag(stack: Stack, mode: Mode) -> str:
    """A tag that changes exactly when the environment (its lock) or the image it is carried in changes."""
    from infra.stack.cudaenv import LOCK_FILE, read_lock
    from infra.stack.nativeenv import inspect_env

    env_path = stack.workdir / stack.spec.native_env.path
    if not (env_path / "pyvenv.cfg").is_file():
        raise BadInputError(f"no native environment at {env_path}", hint="`infra env create` makes it")
    lock = read_lock(inspect_env(env_path))
    if lock is None:
        raise BadInputError(f"{env_path} has no {LOCK_FILE}, so its content has no name to push it under",
                            hint="`infra env create` writes the lock")
    recipe = {"python": stack.spec.python, "base": stack.base_ref(mode), "site": ENV_SITE,
              "lock": {k: v for k, v in lock.items() if k != "created"}}
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()
    return f"py{stack.spec.python}-{digest[:16]}"


def env_image_ref(stack: Stack, mode: Mode) -> str:
    registry = stack.spec.registry
    if registry is None:
        raise BadInputError("the environment image lives in a registry, and infra.yaml sets none",
                            hint="set 'registry' in infra.yaml (e.g. registry.example.com/speech)")
    return f"{registry}/{stack.spec.project}-{ENV_REPOSITORY}:{env_tag(stack, mode)}"


def remote_env_image(stack: Stack, mode: Mode) -> EnvImage:
    """The environment image for this env as the registry knows it (digest None when it is not there)."""
    from infra.oci.attest import parse_ref
    from infra.oci.client import RegistryClient

    ref = env_image_ref(stack, mode)
    host, repository, tag = parse_ref(ref)
    digest = RegistryClient(host).manifest_digest(repository, tag)
    return EnvImage(ref, digest, "in registry" if digest else "absent")


def push_env_image(stack: Stack, mode: Mode, engine: EngineAPI | None = None) -> Iterator[str | EnvImage]:
    """Build the environment image and push it, unless the registry has it already. Yields progress lines,
    then the EnvImage."""
    from infra.build.base import ensure_bases
    from infra.engine.build import BuildRequest

    if stack.spec.native_env.torch != "mounted":
        raise BadInputError("native_env.torch is 'baked': the images carry torch and no environment is delivered")
    found = remote_env_image(stack, mode)
    if found.digest is not None:
        yield found
        return
    engine = engine or Engine()
    for item in ensure_bases(stack, [mode], engine):       # type: ignore[arg-type]
        if isinstance(item, str):
            yield item
    site = site_packages(stack)
    started = time.monotonic()
    yield f"building {found.ref} from {site}"
    with tempfile.TemporaryDirectory(prefix="infra-envimage-") as tmp:
        dockerfile = Path(tmp) / "Dockerfile"
        dockerfile.write_text(env_dockerfile(stack, mode, found.ref.rsplit(":", 1)[1]), encoding="utf-8")
        (Path(tmp) / "Dockerfile.dockerignore").write_text("", encoding="utf-8")
        engine.build(BuildRequest(context=site, dockerfile=dockerfile, tag=found.ref, contexts={}, args={},
                                  labels={}, secrets=[], provenance=False))
    yield f"pushing {found.ref}"
    engine.push(found.ref)
    pushed = remote_env_image(stack, mode)
    if pushed.digest is None:
        from infra.errors import OperationError

        raise OperationError(f"pushed {found.ref}, but the registry does not list it")
    yield EnvImage(pushed.ref, pushed.digest, "pushed", time.monotonic() - started)


def env_dockerfile(stack: Stack, mode: Mode, tag: str) -> str:
    from infra.render.environment import render_template, shared_templates

    shared = shared_templates()
    spec = {"base": stack.base_ref(mode), "site": ENV_SITE, "python": stack.spec.python,
            "project": stack.spec.project, "tag": tag}
    return render_template((shared,), TEMPLATE, spec, {shared: "templates"})


def ensure_local_env_image(stack: Stack, mode: Mode, engine: EngineAPI) -> Iterator[str]:
    """With `delivery: image`, the environment image this engine mounts (compose): pulled when it is only in
    the registry; BadInputError when it is in neither (nothing is started)."""
    env = stack.spec.native_env
    if env.torch != "mounted" or env.delivery != "image":
        return
    ref = env_image_ref(stack, mode)
    if engine.inspect_images([ref])[ref] is not None:
        return
    if remote_env_image(stack, mode).digest is None:
        raise BadInputError(f"the environment image {ref} is neither here nor in the registry",
                            hint=f"`infra env push --mode {mode}`")
    yield f"pulling the environment image {ref}"
    engine.pull(ref)
