"""The service 'serve' of the stack (`serve.enabled` in infra.yaml): what `infra up` and `infra deploy` make
sure of before they start it.

- A token it can read. The service listens on every address of its container, so `infra serve` insists on
  one: INFRA_SERVE_TOKEN in the environment of `up` or `deploy` (compose passes it through to the service),
  or in the secrets file when that lies under config/, which the service mounts. The token itself is never
  written into a rendered file and never shown.
- The host's hardware, recorded in out/hardware_cache.json: the service prepares jobs with the settings the
  host's hardware asks for, and a container sees neither the host's name (part of the cache's fingerprint) nor
  its GPU.
- in/uploads, the one folder under in/ that the service writes, made before compose would make it as root.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from infra.errors import BadInputError
from infra.spec import Stack
from infra.spec.models import SERVE_TOKEN
from infra.spec.secrets import read_secret

UPLOADS = ("in", "uploads")


def serve_image(stack: Stack, mode: str) -> str | None:
    """The image of the service 'serve' in ``mode``, when the spec enables it (and the mode builds it)."""
    serve = stack.spec.serve
    built = stack.images_for_mode(mode)  # type: ignore[arg-type]
    return serve.image if serve.enabled and serve.image in built else None


def ready_for_serve(stack: Stack) -> None:
    """A token the service can read, the host's hardware recorded, in/uploads made (see the module docstring)."""
    from infra.hardware.cache import stack_hardware

    found = read_secret(stack, SERVE_TOKEN)
    file = PurePosixPath(stack.spec.secrets.file)
    hint = f"set {SERVE_TOKEN} in the environment or in config/secrets.json (the service reads config/)"
    if found is None:
        raise BadInputError(f"serve.enabled: the service 'serve' listens on the network and needs a token, "
                            f"and there is none", hint=hint)
    if not found[1].startswith("environment") and file.parts[0] != "config":
        raise BadInputError(f"serve.enabled: the token is in {file}, which the service 'serve' cannot read "
                            "(it mounts config/)", hint=hint)
    stack_hardware(stack)
    stack.workdir.joinpath(*UPLOADS).mkdir(parents=True, exist_ok=True)
