"""The registry as the build's second store: images found by content hash, layer cache, pulls by digest.

Every pushed image also gets a tag derived from its content hash (``content-<hash>``), so a
machine with an empty engine asks the registry one HEAD per image whether an image of exactly
these inputs exists, without pulling it. Such an image is "in registry": nothing is built, a
child that must be built takes it as its parent straight from the registry, and a push is a
registry-side tag at most. The BuildKit cache of each image and mode lives beside it, under
``buildcache-<mode suffix>``, so targets never evict each other's cache.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from infra.oci.client import RegistryClient, split_ref

HASH_TAG_PREFIX = "content-"
CACHE_TAG_PREFIX = "buildcache-"
CACHE_MODES = ("off", "read", "write")


def hash_tag(content_hash: str) -> str:
    return HASH_TAG_PREFIX + content_hash


@dataclass(frozen=True)
class RemoteImage:
    name: str
    repository: str     # the path inside the registry host, e.g. team/speech-asr
    digest: str
    host: str

    @property
    def ref(self) -> str:
        """HOST/repository@digest: what a pull or a build context names."""
        return f"{self.host}/{self.repository}@{self.digest}"


class RemoteStore:
    """The registry that a stack's images of one mode are pushed to.

    ``refs`` maps each image to its remote reference with the mode's tag (``Stack.image_ref(name,
    mode, registry)``, e.g. ``host/team/speech-asr:latest-cpu``)."""

    def __init__(self, refs: dict[str, str], client: RegistryClient | None = None) -> None:
        self.refs = refs
        self.host = split_ref(next(iter(refs.values())))[0] if refs else ""
        self._client = client

    @property
    def client(self) -> RegistryClient:
        if self._client is None:
            self._client = RegistryClient(self.host)
        return self._client

    def repository(self, name: str) -> str:
        rest = split_ref(self.refs[name])[1]
        return rest.rsplit(":", 1)[0] if ":" in rest.rsplit("/", 1)[-1] else rest

    def mode_tag(self, name: str) -> str:
        return self.refs[name].rsplit(":", 1)[1]

    def cache_ref(self, name: str) -> str:
        """One cache reference per image and mode: latest-cpu -> buildcache-cpu."""
        suffix = self.mode_tag(name).rsplit("-", 1)[-1]
        return f"{self.host}/{self.repository(name)}:{CACHE_TAG_PREFIX}{suffix}"

    def lookup(self, hashes: dict[str, str]) -> dict[str, RemoteImage]:
        """The images whose content-hash tag the registry holds (one HEAD each, a few at a time)."""
        client = self.client

        def one(item: tuple[str, str]) -> tuple[str, str | None]:
            name, content_hash = item
            return name, client.manifest_digest(self.repository(name), hash_tag(content_hash))

        with ThreadPoolExecutor(max_workers=4, thread_name_prefix="registry") as pool:
            found = list(pool.map(one, hashes.items()))
        return {name: RemoteImage(name, self.repository(name), digest, self.host)
                for name, digest in found if digest is not None}

    def publish(self, name: str, content_hash: str, digest: str) -> bool:
        """Point the mode tag and the content-hash tag at ``digest`` in the registry (no blob moves);
        False when both already did."""
        repository = self.repository(name)
        changed = False
        for tag in (self.mode_tag(name), hash_tag(content_hash)):
            if self.client.manifest_digest(repository, tag) != digest:
                self.client.tag_manifest(repository, digest, tag)
                changed = True
        return changed


def cache_options(store: RemoteStore | None, name: str, mode: str) -> tuple[list[str], list[str]]:
    """BuildKit's --cache-from and --cache-to for one image under a --cache mode (off, read, write)."""
    if store is None or mode == "off":
        return [], []
    ref = store.cache_ref(name)
    cache_from = [f"type=registry,ref={ref}"]
    cache_to = [f"type=registry,ref={ref},mode=max,ignore-error=true"] if mode == "write" else []
    return cache_from, cache_to


def missing(names: Iterable[str], found: dict[str, RemoteImage]) -> list[str]:
    return [n for n in names if n not in found]
