"""Pushing built images to a registry: a preflight that fails fast, retries with backoff, digests."""

from __future__ import annotations

import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from infra.engine import EngineAPI, ImageInfo
from infra.errors import BadInputError, EngineError, OperationError
from infra.oci.client import RegistryClient, split_ref

AUTH_MARKERS = ("unauthorized", "authentication required", "no basic auth credentials", "denied", "401")
TRANSIENT_MARKERS = ("connection reset", "connection refused", "timeout", "eof", "502", "503", "504",
                     "tls handshake", "i/o timeout", "broken pipe", "temporary failure")
RETRIES = 3
BACKOFF_S = 1.0


@dataclass(frozen=True)
class PushResult:
    name: str
    remote: str
    digest: str
    attempts: int


def _login_hint(host: str) -> str:
    return f"docker login {host}"


def preflight(registry: str, logged_in: bool, timeout: float = 5.0) -> None:
    """Fail before any build when the registry cannot be reached, or needs credentials we do not have."""
    from infra.oci.client import docker_registry_ca, is_loopback

    host = registry.split("/", 1)[0]
    schemes = ["https", "http"] if is_loopback(host) else ["https"]
    context = ssl.create_default_context(cafile=docker_registry_ca(host))   # docker's own CA for it, if any
    last_error = ""
    for scheme in schemes:
        try:
            with urllib.request.urlopen(f"{scheme}://{host}/v2/", timeout=timeout, context=context):
                return
        except urllib.error.HTTPError as exc:
            if exc.code == 401:
                if logged_in:
                    return
                raise BadInputError(f"registry {host} needs credentials and this machine has none for it",
                                    hint=_login_hint(host)) from None
            return  # the registry answered; let the push report anything else
        except (urllib.error.URLError, socket.timeout, ConnectionError, ssl.SSLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            last_error = str(reason)
    raise OperationError(f"registry {host} is unreachable ({last_error})",
                         hint="check the address and that the registry runs; `curl -v https://HOST/v2/` tells more")


def push_images(engine: EngineAPI, refs: dict[str, tuple[str, str]], sleep: Callable[[float], None] = time.sleep,
                retries: int = RETRIES) -> Iterator[PushResult]:
    """Tag and push each image: refs maps name -> (local ref, remote ref). Yields one result per image."""
    for name, (local, remote) in refs.items():
        engine.tag(local, remote)
        attempt = 0
        while True:
            attempt += 1
            try:
                engine.push(remote)
                break
            except EngineError as exc:
                text = (exc.message + "\n" + exc.stderr_tail).lower()
                host = remote.split("/", 1)[0]
                if any(marker in text for marker in AUTH_MARKERS):
                    raise BadInputError(f"push of {remote} refused: {host} did not accept the credentials",
                                        hint=_login_hint(host)) from None
                if attempt >= retries or not any(marker in text for marker in TRANSIENT_MARKERS):
                    raise OperationError(f"push of {remote} failed after {attempt} attempt(s): {exc.message}") from None
                sleep(BACKOFF_S * 2 ** (attempt - 1))
        repo = remote.rsplit(":", 1)[0]
        digests = [d for d in engine.inspect_image(remote).repo_digests if d.startswith(repo + "@")]
        yield PushResult(name, remote, digests[0].split("@", 1)[1] if digests else "", attempt)


def fetch_base(engine: EngineAPI, client: RegistryClient, remote: str, local: str,
               known: dict[str, ImageInfo | None]) -> Iterator[str]:
    """Pull the offline base from the registry when it holds it (seconds, where debootstrap takes a minute)."""
    host, rest = split_ref(remote)
    repository, _, tag = rest.rpartition(":")
    digest = client.manifest_digest(repository, tag)
    if digest is None:
        return
    yield f"pulling the base {local} from {host}"
    engine.pull(f"{host}/{repository}@{digest}")
    engine.tag(f"{host}/{repository}@{digest}", local)
    known[local] = engine.inspect_image(local)


def push_base(engine: EngineAPI, client: RegistryClient, remote: str, local: str) -> Iterator[str]:
    """Push the offline base beside the images, so that a fresh machine pulls it instead of making it."""
    host, rest = split_ref(remote)
    repository, _, tag = rest.rpartition(":")
    if client.manifest_digest(repository, tag) is not None:
        return
    engine.tag(local, remote)
    list(push_images(engine, {"base": (local, remote)}))
    yield f"pushed the base {local} to {host}"
