"""One client for a registry's HTTP API (the OCI distribution spec): manifests, blobs, tags.

It is oras-py's ``Registry``, which brings what a registry client must get right: credentials from
docker's config.json and its credential helpers, the Basic and Bearer token flows, monolithic and
chunked blob uploads, artifact manifests. Two things change here:

- a request is sent once (and once more with credentials after a 401), never retried blindly, so an
  unreachable registry or wrong credentials give one line at once, not minutes of back-off;
- failures become :class:`~infra.errors.BadInputError` (credentials: exit 2) or
  :class:`~infra.errors.OperationError` (unreachable, refused: exit 1), and a blob download resumes
  where an interrupted one stopped and verifies the digest before the file is published.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import oras.container
import oras.provider
import requests

from infra.errors import BadInputError, OperationError

MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
TIMEOUT_S = 30.0
CHUNK = 1 << 20
DOCKER_CERTS_D = Path("/etc/docker/certs.d")   # where docker looks for a registry's own CA

logging.getLogger("oras").setLevel(logging.CRITICAL)   # its own messages would repeat ours


def is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return name in ("localhost", "::1", "[::1]") or name.startswith("127.")


def docker_configs() -> list[str] | None:
    """docker's client config as the docker CLI finds it ($DOCKER_CONFIG first, then ~/.docker)."""
    folder = os.environ.get("DOCKER_CONFIG")
    path = Path(folder) / "config.json" if folder else Path.home() / ".docker" / "config.json"
    return [str(path)] if path.is_file() else None


def docker_registry_ca(host: str) -> str | None:
    """The CA that docker itself trusts for this registry (/etc/docker/certs.d/HOST[:PORT]/ca.crt), if any."""
    path = DOCKER_CERTS_D / host / "ca.crt"
    return str(path) if path.is_file() else None


def split_ref(ref: str) -> tuple[str, str]:
    """``HOST/path/name:tag`` or ``...@sha256:...`` as (host, the rest)."""
    host, _, rest = ref.partition("/")
    if not rest or ("." not in host and ":" not in host and host != "localhost"):
        raise BadInputError(f"'{ref}' names no registry host (expected HOST[:PORT]/NAME[:TAG])")
    return host, rest


class RegistryClient(oras.provider.Registry):
    """A client for one registry host; plain HTTP for a loopback host (as docker allows), HTTPS otherwise."""

    def __init__(self, host: str, ca_bundle: str | None = None, timeout: float = TIMEOUT_S) -> None:
        self.timeout = timeout
        insecure = is_loopback(host)
        verify: bool | str = (ca_bundle or docker_registry_ca(host) or os.environ.get("REQUESTS_CA_BUNDLE")
                              or _system_bundle() or True)
        super().__init__(hostname=host, insecure=insecure, tls_verify=verify, auth_backend=self._scheme(host, insecure, verify))
        self.auth.load_configs(oras.container.Container("probe", registry=host), configs=docker_configs())

    def _scheme(self, host: str, insecure: bool, verify: bool | str) -> str:
        """'basic' or 'token', as the registry's /v2/ asks for it ('token' when it asks nothing)."""
        url = f"{'http' if insecure else 'https'}://{host}/v2/"
        try:
            response = requests.get(url, timeout=self.timeout, verify=verify)
        except requests.exceptions.SSLError as exc:
            raise OperationError(f"registry {host}: TLS failed ({_short(exc)})",
                                 hint="pass the CA bundle that signs its certificate (secrets.ca_bundle)") from None
        except requests.RequestException as exc:
            raise OperationError(f"registry {host} is unreachable ({_short(exc)})",
                                 hint="check the address and that the registry runs") from None
        challenge = response.headers.get("Www-Authenticate", "")
        return "basic" if challenge.lower().startswith("basic") else "token"

    @property
    def host(self) -> str:
        return str(self.hostname)

    def container(self, name: str) -> oras.container.Container:
        return oras.container.Container(name, registry=self.host)

    # -- requests --------------------------------------------------------------------------------
    def do_request(self, url: str, method: str = "GET", data: Any = None, headers: dict | None = None,
                   json: Any = None, stream: bool = False) -> requests.Response:
        headers = dict(headers or {})
        if getattr(self.auth, "token", None):
            headers.update(self.auth.get_auth_header())
        elif getattr(self.auth, "_basic_auth", None):
            headers.setdefault("Authorization", f"Basic {self.auth._basic_auth}")
        response = self._send(method, url, data, headers, json, stream)
        if response.status_code in (401, 403) and response.headers.get("Www-Authenticate"):
            if not getattr(self.auth, "_basic_auth", None) and not getattr(self.auth, "token", None):
                raise BadInputError(f"registry {self.host} needs credentials and this machine has none for it",
                                    hint=f"docker login {self.host}")
            retry_headers, changed = self.auth.authenticate_request(response, headers)
            if changed:
                response = self._send(method, url, data, retry_headers, json, stream)
        if response.status_code == 401:
            raise BadInputError(f"registry {self.host} did not accept the credentials", hint=f"docker login {self.host}")
        if response.status_code == 403:
            raise BadInputError(f"registry {self.host} denied {method} {_path(url)}: {_message(response)}")
        return response

    def _send(self, method: str, url: str, data: Any, headers: dict, json: Any, stream: bool) -> requests.Response:
        if hasattr(data, "seek"):
            data.seek(0)
        try:
            return self.session.request(method, url, data=data, json=json, headers=headers, stream=stream,
                                        verify=self._tls_verify, timeout=self.timeout)
        except requests.exceptions.SSLError as exc:
            raise OperationError(f"registry {self.host}: TLS failed ({_short(exc)})") from None
        except requests.RequestException as exc:
            raise OperationError(f"registry {self.host} is unreachable ({_short(exc)})",
                                 hint="check the address and that the registry runs") from None

    def _url(self, container: oras.container.Container, tail: str) -> str:
        return f"{self.prefix}://{self.host}/v2/{container.api_prefix}/{tail}"

    def check(self, response: requests.Response, what: str) -> requests.Response:
        """The response when it succeeded; otherwise OperationError with the registry's own message."""
        if response.status_code >= 300:
            raise OperationError(f"registry {self.host}: {what} failed ({response.status_code} {_message(response)})")
        return response

    # -- manifests -------------------------------------------------------------------------------
    def manifest_digest(self, name: str, reference: str) -> str | None:
        """The digest a tag (or digest) resolves to in repository ``name``, or None when there is none."""
        response = self.do_request(self._url(self.container(name), f"manifests/{reference}"), "HEAD",
                                   headers={"Accept": ", ".join(MANIFEST_TYPES)})
        if response.status_code == 404:
            return None
        self.check(response, f"looking up {name}:{reference}")
        digest = response.headers.get("Docker-Content-Digest")
        if digest:
            return digest
        return self.fetch_manifest(name, reference)[2]

    def fetch_manifest(self, name: str, reference: str) -> tuple[bytes, str, str]:
        """A manifest's exact bytes, media type and digest (OperationError when it does not exist)."""
        response = self.do_request(self._url(self.container(name), f"manifests/{reference}"), "GET",
                                   headers={"Accept": ", ".join(MANIFEST_TYPES)})
        self.check(response, f"reading the manifest {name}:{reference}")
        body = response.content
        media_type = response.headers.get("Content-Type", "").split(";")[0] or _media_type(body)
        return body, media_type, "sha256:" + hashlib.sha256(body).hexdigest()

    def put_manifest(self, name: str, reference: str, body: bytes, media_type: str) -> str:
        """Store a manifest under a tag (or its digest); returns its digest."""
        response = self.do_request(self._url(self.container(name), f"manifests/{reference}"), "PUT",
                                   data=body, headers={"Content-Type": media_type})
        self.check(response, f"writing the manifest {name}:{reference}")
        return response.headers.get("Docker-Content-Digest") or "sha256:" + hashlib.sha256(body).hexdigest()

    def tag_manifest(self, name: str, source: str, tag: str) -> str:
        """Give the manifest that ``source`` (a tag or digest) names one more tag, without moving any blob."""
        body, media_type, _ = self.fetch_manifest(name, source)
        return self.put_manifest(name, tag, body, media_type)

    def push_manifest(self, name: str, reference: str, body: bytes, media_type: str) -> tuple[str, bool]:
        """Store a manifest; its digest, and whether the registry indexed its ``subject`` itself (the
        ``OCI-Subject`` answer of a registry with the referrers API: no referrers tag to maintain then)."""
        response = self.do_request(self._url(self.container(name), f"manifests/{reference}"), "PUT",
                                   data=body, headers={"Content-Type": media_type})
        self.check(response, f"writing the manifest {name}:{reference}")
        digest = response.headers.get("Docker-Content-Digest") or "sha256:" + hashlib.sha256(body).hexdigest()
        return digest, bool(response.headers.get("OCI-Subject"))

    def referrers(self, name: str, digest: str) -> dict | None:
        """The referrers API's image index of what refers to ``digest``; None when the registry has no
        referrers API (a registry that has one never answers 404, says the distribution spec)."""
        response = self.do_request(self._url(self.container(name), f"referrers/{digest}"), "GET",
                                   headers={"Accept": MANIFEST_TYPES[0]})
        if response.status_code == 404:
            return None
        self.check(response, f"listing the referrers of {digest[:19]}")
        try:
            index = response.json()
        except ValueError:
            return None
        return index if isinstance(index, dict) else None

    # -- blobs -----------------------------------------------------------------------------------
    def has_blob(self, name: str, digest: str) -> bool:
        response = self.do_request(self._url(self.container(name), f"blobs/{digest}"), "HEAD")
        if response.status_code == 404:
            return False
        self.check(response, f"looking up blob {digest[:19]}")
        return True

    def download(self, name: str, digest: str, size: int, dest: Path,
                 progress: Callable[[int], None] | None = None) -> Path:
        """Fetch a blob into ``dest``, resuming ``dest.partial`` where an earlier try stopped.

        The bytes are checked against ``digest`` before ``dest`` appears, so a partial or corrupted
        download never looks complete; a corrupted one is deleted (OperationError)."""
        partial = dest.with_name(dest.name + ".partial")
        dest.parent.mkdir(parents=True, exist_ok=True)
        have = partial.stat().st_size if partial.exists() else 0
        if have > size:
            partial.unlink()
            have = 0
        if have < size:
            headers = {"Range": f"bytes={have}-"} if have else {}
            response = self.do_request(self._url(self.container(name), f"blobs/{digest}"), "GET", headers=headers,
                                       stream=True)
            self.check(response, f"downloading blob {digest[:19]}")
            if have and response.status_code != 206:   # the registry ignored the range: start again
                have = 0
            with response, partial.open("ab" if have else "wb") as out:
                for chunk in response.iter_content(CHUNK):
                    out.write(chunk)
                    if progress is not None:
                        progress(len(chunk))
                out.flush()
                os.fsync(out.fileno())
        actual = file_digest(partial)
        if actual != digest:
            partial.unlink()
            raise OperationError(f"blob {digest[:19]} from {self.host}/{name} is corrupted (its bytes hash to "
                                 f"{actual[:19]}); it was deleted, run the command again")
        os.replace(partial, dest)
        return dest

    def push_blob(self, name: str, data: bytes) -> str:
        """Upload a small blob in one request (none when the registry has it already); its digest."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if self.has_blob(name, digest):
            return digest
        started = self.check(self.do_request(self._url(self.container(name), "blobs/uploads/"), "POST"),
                             "starting a blob upload")
        location = started.headers.get("Location", "")
        if location.startswith("/"):
            location = f"{self.prefix}://{self.host}{location}"
        url = f"{location}{'&' if '?' in location else '?'}digest={digest}"
        self.check(self.do_request(url, "PUT", data=data, headers={"Content-Type": "application/octet-stream"}),
                   f"uploading blob {digest[:19]}")
        return digest

    def fetch_blob(self, name: str, digest: str, limit: int = 64 << 20) -> bytes:
        """A small blob's bytes (a manifest's config, an attestation), checked against its digest."""
        response = self.do_request(self._url(self.container(name), f"blobs/{digest}"), "GET", stream=True)
        self.check(response, f"reading blob {digest[:19]}")
        chunks = bytearray()
        with response:
            for chunk in response.iter_content(CHUNK):
                chunks += chunk
                if len(chunks) > limit:
                    raise OperationError(f"blob {digest[:19]} from {self.host}/{name} is larger than {limit} bytes")
        body = bytes(chunks)
        if "sha256:" + hashlib.sha256(body).hexdigest() != digest:
            raise OperationError(f"blob {digest[:19]} from {self.host}/{name} is corrupted (its bytes hash otherwise)")
        return body


def _system_bundle() -> str | None:
    """The operating system's trusted CAs (a registry signed by a company CA is trusted there, not by certifi)."""
    for path in ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"):
        if os.path.isfile(path):
            return path
    return None


def json_object(data: bytes, what: str) -> dict:
    """A document read from the registry as a JSON object; OperationError naming ``what`` when it is not one."""
    import json

    try:
        document = json.loads(data)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise OperationError(f"{what} is not a JSON object")
    return document


def file_digest(path: Path) -> str:
    with path.open("rb") as handle:
        return "sha256:" + hashlib.file_digest(handle, "sha256").hexdigest()


def _media_type(body: bytes) -> str:
    import json

    try:
        return json.loads(body).get("mediaType", MANIFEST_TYPES[1])
    except ValueError:
        return MANIFEST_TYPES[1]


def _message(response: requests.Response) -> str:
    try:
        errors = response.json().get("errors") or []
        return "; ".join(str(e.get("message") or e.get("code")) for e in errors if isinstance(e, dict)) \
            or response.reason or ""
    except ValueError:
        return response.reason or ""


def _path(url: str) -> str:
    return "/" + url.split("/", 3)[-1] if url.count("/") >= 3 else url


def _short(exc: BaseException) -> str:
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "timed out", "No route to host",
                   "certificate verify failed"):
        if marker in text:
            return marker.lower()
    return text.splitlines()[0][:160] if text else type(exc).__name__
