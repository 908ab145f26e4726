"""How `infra serve` is exposed: the address it binds, the token it asks for, the upload limit.

A loopback address needs no token. Any other address serves the network, and then a token is required:
``INFRA_SERVE_TOKEN`` in the environment, or ``INFRA_SERVE_TOKEN`` in the workspace's secrets file
(infra/spec/secrets.py). The token is never printed, logged or sent back.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from infra.errors import BadInputError
from infra.spec import Stack
from infra.spec.models import SERVE_TOKEN, size_bytes
from infra.spec.secrets import read_secret

TOKEN_NAME = SERVE_TOKEN


@dataclass(frozen=True)
class ServeSettings:
    host: str
    port: int
    token: str | None
    token_source: str | None
    max_upload_bytes: int
    films_at_once: int
    stack_mode: str | None = None     # the stack's service 'serve' (docs/SERVE.md, "In the stack")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_size(text: str) -> int:
    """'16G', '500M', '1048576' -> bytes (powers of 1024)."""
    try:
        return size_bytes(text)
    except ValueError as exc:
        raise BadInputError(f"--max-upload: {exc}") from None


def serve_settings(stack: Stack, host: str, port: int, max_upload: str, films_at_once: int,
                   stack_mode: str | None = None) -> ServeSettings:
    if stack_mode is not None:
        stack.check_mode(stack_mode, flag="--stack-mode")
    if not 0 < port < 65536:
        raise BadInputError(f"--port: {port} is not a port number")
    if films_at_once < 1:
        raise BadInputError(f"--films-at-once: must be at least 1, got {films_at_once}")
    found = read_secret(stack, TOKEN_NAME)
    if found is None and not is_loopback(host):
        raise BadInputError(f"--host {host} serves the network, so a token is required",
                            hint=f"set {TOKEN_NAME} in the environment or in {stack.spec.secrets.file}")
    return ServeSettings(host, port, found[0] if found else None, found[1] if found else None,
                         parse_size(max_upload), films_at_once, stack_mode)
