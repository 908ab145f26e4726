"""Where model artifacts live in a registry, and the blob transfers that oras-py's client lacks for them.

A model's repository is ``HOST/NS/<project>-models/<model id with '-' for '/'>``, e.g.
``127.0.0.1:5000/speech/speech-models/whisper-base``. Uploads stream the file from disk (a large
Whisper model is gigabytes; oras-py's own monolithic upload reads a blob into memory first).
"""

from __future__ import annotations

import hashlib
import queue
import threading
import urllib.parse
from collections.abc import Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from infra.errors import BadInputError, OperationError
from infra.jobproto import model_cache
from infra.models.artifacts import COMPLETE, MARKER, repository_name
from infra.models.catalogue import FetchEvent
from infra.oci.client import RegistryClient, split_ref
from infra.spec.models import REGISTRY_RE

if TYPE_CHECKING:
    from infra.spec import Stack

SMALL_BLOB = 1 << 20          # a config blob larger than this is not one infra wrote
T = TypeVar("T")


def check_registry(value: str) -> str:
    value = value.strip().rstrip("/")
    if not REGISTRY_RE.match(value):
        raise BadInputError(f"'{value}' is not a registry host with an optional namespace (e.g. 127.0.0.1:5000/speech)")
    return value


def repository(registry: str, project: str, model: str) -> str:
    """The full repository of a model under ``registry`` (HOST[/NS])."""
    return f"{check_registry(registry)}/{project}-models/{repository_name(model)}"


class Registries:
    """One client per registry host, made on first use (each asks the host once how it wants credentials)."""

    def __init__(self) -> None:
        self._clients: dict[str, RegistryClient] = {}

    def split(self, repo: str) -> tuple[RegistryClient, str]:
        host, path = split_ref(repo)
        if host not in self._clients:
            self._clients[host] = RegistryClient(host)
        return self._clients[host], path


def stack_cache(stack: Stack) -> Path:
    """The shared model cache the stack's jobs read: $INFRA_CACHE, else the workspace's shared-model-and-cache/."""
    return model_cache({"workspace": str(stack.workdir)})


def cached_models(cache: Path) -> list[str]:
    """The models in the cache: KIND/NAME folders that a fetch, a push or a pull finished."""
    if not cache.is_dir():
        return []
    return sorted(f"{kind.name}/{folder.name}" for kind in cache.iterdir()
                  if kind.is_dir() and not kind.name.startswith(".")
                  for folder in kind.iterdir()
                  if folder.is_dir() and not folder.name.startswith(".") and ((folder / COMPLETE).is_file() or (folder / MARKER).is_file()))


def _blob_url(client: RegistryClient, path: str, tail: str) -> str:
    return f"{client.prefix}://{client.host}/v2/{path}/{tail}"


def upload_file(client: RegistryClient, path: str, digest: str, size: int, source: Path | bytes) -> None:
    """A blob into repository ``path``: POST an upload session, then one PUT that streams the file."""
    response = client.do_request(_blob_url(client, path, "blobs/uploads/"), "POST",
                                 headers={"Content-Length": "0"})
    client.check(response, f"starting the upload of {digest[:19]} to {path}")
    location = response.headers.get("Location", "")
    if not location:
        raise OperationError(f"registry {client.host} started an upload without saying where to send it")
    if not location.startswith("http"):
        location = f"{client.prefix}://{client.host}{location}"
    parts = urllib.parse.urlsplit(location)
    query = urllib.parse.urlencode([*urllib.parse.parse_qsl(parts.query), ("digest", digest)])
    url = urllib.parse.urlunsplit(parts._replace(query=query))
    headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
    if isinstance(source, bytes):
        response = client.do_request(url, "PUT", data=source, headers=headers)
    else:
        with source.open("rb") as handle:
            response = client.do_request(url, "PUT", data=handle, headers=headers)
    client.check(response, f"uploading {digest[:19]} to {path}")


def fetch_small_blob(client: RegistryClient, path: str, digest: str, size: int) -> bytes:
    """A small blob (a config) into memory, checked against its digest."""
    if size > SMALL_BLOB:
        raise OperationError(f"{client.host}/{path}: its config blob is {size} bytes, not a model config")
    response = client.do_request(_blob_url(client, path, f"blobs/{digest}"), "GET")
    client.check(response, f"reading blob {digest[:19]} of {path}")
    body = response.content
    if "sha256:" + hashlib.sha256(body).hexdigest() != digest:
        raise OperationError(f"blob {digest[:19]} from {client.host}/{path} is corrupted (its bytes do not hash "
                             "to its digest)")
    return body


def with_events(work: Callable[[Callable[[FetchEvent], None]], T]) -> Generator[FetchEvent, None, T]:
    """Run ``work(emit)`` in a thread and yield its events as they come; returns what it returns (or raises
    what it raised), so a caller can show live progress: ``result = yield from with_events(...)``."""
    events: queue.Queue[FetchEvent | None] = queue.Queue()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = work(events.put)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            outcome["error"] = exc
        finally:
            events.put(None)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    while (event := events.get()) is not None:
        yield event
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]
