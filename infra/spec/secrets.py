"""Reading a secret: from the environment, else from the workspace's secrets file (never from the spec).

The secrets file (``secrets.file``, config/secrets.json by default) is JSON (``{"HF_TOKEN": "..."}``) or
lines of ``NAME=value`` (``export`` and quotes allowed); a key matches in any casing. Callers get the
value and where it came from, to say so without showing the value.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from infra.spec import Stack


def read_secret(stack: Stack, name: str, environ: Mapping[str, str] | None = None) -> tuple[str, str] | None:
    """(value, source) of the secret ``name``, or None when neither the environment nor the file has it."""
    environ = os.environ if environ is None else environ
    if environ.get(name, "").strip():
        return environ[name].strip(), f"environment variable {name}"
    path = stack.workdir / stack.spec.secrets.file
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    values: dict[str, object] = {}
    try:
        loaded = json.loads(text)
        values = loaded if isinstance(loaded, dict) else {}
    except ValueError:
        for line in text.splitlines():
            key, sep, value = line.strip().removeprefix("export ").partition("=")
            if sep and not key.startswith("#"):
                values[key.strip()] = value.strip().strip("'\"")
    for key, value in values.items():
        if key.lower() == name.lower() and isinstance(value, str) and value.strip():
            return value.strip(), f"{stack.spec.secrets.file} ({key})"
    return None
