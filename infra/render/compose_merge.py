"""The compose specification's merge rules, as `docker compose -f base.yaml -f overlay.yaml` applies them.

Pure functions over parsed compose files (mappings from YAML):

- mappings merge key by key, recursively; a scalar in the overlay replaces the base's;
- ``environment``, ``labels``, ``extra_hosts``, ``sysctls``, ``annotations``, ``depends_on``, a service's
  ``networks`` (and ``args``/``labels`` below ``build`` and ``deploy``) merge as mappings: their list forms
  (``- KEY=VALUE``, ``- host:ip``, ``- name``) are made mappings first;
- a service's ``volumes`` merge by container target, its ``secrets`` and ``configs`` by target (or source):
  an overlay entry whose target is there already replaces that entry;
- other sequences (``ports``, ``expose``, ``dns``, ...) append what is not already there;
- ``command``, ``entrypoint`` and ``healthcheck.test`` are replaced, never appended;
- top-level ``services``, ``volumes``, ``networks``, ``secrets``, ``configs`` (and ``x-*``) merge by name;
  ``version`` is obsolete and ignored.
"""

from __future__ import annotations

import copy
import posixpath
from typing import Any

TOP_LEVEL = ("configs", "networks", "secrets", "services", "volumes")
MAPPING_LIKE = {"annotations", "depends_on", "environment", "extra_hosts", "labels", "networks", "sysctls"}
NESTED_MAPPING_LIKE = {("build", "args"), ("build", "labels"), ("deploy", "labels")}
REPLACED = {"command", "entrypoint"}


def merge_compose(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """``overlay`` merged over ``base`` (both parsed compose files), as `docker compose -f base -f overlay` does."""
    merged = copy.deepcopy(base)
    for key, value in overlay.items():
        if key == "version":                       # obsolete in the compose specification: ignored
            continue
        if key in TOP_LEVEL or key.startswith("x-"):
            if not isinstance(value, dict):
                merged[key] = copy.deepcopy(value)
                continue
            section = merged.get(key)
            if not isinstance(section, dict):
                section = merged[key] = {}
            for name, entry in value.items():
                entry = {} if entry is None and key in TOP_LEVEL else entry
                if key == "services":
                    section[name] = merge_service(section.get(name) or {}, entry or {})
                elif name in section:
                    section[name] = _merge_value(section[name], entry, (key, name))
                else:
                    section[name] = copy.deepcopy(entry)
        else:
            merged[key] = _merge_value(merged[key], value, (key,)) if key in merged else copy.deepcopy(value)
    return merged


def merge_service(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """One service of an overlay merged over the same service of the rendered file."""
    merged = copy.deepcopy(base)
    for key, value in overlay.items():
        current = merged.get(key)
        if key in UNIQUE_BY:
            merged[key] = _merge_unique([] if current is None else current, value, UNIQUE_BY[key])
        elif current is None:       # a new list still loses its repeated entries, as compose's own merge does
            merged[key] = _merge_unique([], value, None) if isinstance(value, list) and key not in REPLACED \
                else copy.deepcopy(value)
        else:
            merged[key] = _merge_value(current, value, (key,))
    return merged


def _merge_value(base: Any, overlay: Any, path: tuple[str, ...]) -> Any:
    name = path[-1]
    if name in REPLACED or path[-2:] == ("healthcheck", "test"):
        return copy.deepcopy(overlay)
    listed = (len(path) == 1 and name in MAPPING_LIKE) or path[-2:] in NESTED_MAPPING_LIKE
    if listed and isinstance(base, (dict, list)) and isinstance(overlay, (dict, list)):
        return {**as_mapping(base, name), **as_mapping(overlay, name)}
    if isinstance(base, dict) and isinstance(overlay, dict):
        merged = copy.deepcopy(base)
        for key, value in overlay.items():
            merged[key] = _merge_value(merged[key], value, (*path, key)) if key in merged else copy.deepcopy(value)
        return merged
    if isinstance(base, list) and isinstance(overlay, list):
        return _merge_unique(base, overlay, None)
    return copy.deepcopy(overlay)


def as_mapping(value: dict[str, Any] | list[Any], name: str) -> dict[str, Any]:
    """A list-or-mapping attribute as a mapping: ``KEY=VALUE`` (``host:ip`` for extra_hosts) or a bare name."""
    if isinstance(value, dict):
        return copy.deepcopy(value)
    out: dict[str, Any] = {}
    for item in value:
        text = str(item)
        if name == "depends_on":
            out[text] = {"condition": "service_started"}
        elif name == "networks":
            out[text] = None
        else:
            sep = ":" if name == "extra_hosts" and "=" not in text else "="
            key, found, rest = text.partition(sep)
            out[key] = rest if found else None
    return out


def _merge_unique(base: Any, overlay: Any, key_of: Any) -> Any:
    """Append the overlay's entries; one whose key (without a key function: whose value) is there already
    replaces that entry, in its place."""
    if not isinstance(base, list) or not isinstance(overlay, list):
        return copy.deepcopy(overlay)
    merged = copy.deepcopy(base)
    for entry in overlay:
        keys = [key_of(e) if key_of else e for e in merged]
        key = key_of(entry) if key_of else entry
        if key is not None and key in keys:
            merged[keys.index(key)] = copy.deepcopy(entry)
        else:
            merged.append(copy.deepcopy(entry))
    return merged


def _volume_target(entry: Any) -> str | None:
    target = mount_of(entry)[1]
    return posixpath.normpath(target) if target else None


def _file_target(entry: Any) -> str | None:
    if isinstance(entry, dict):
        return entry.get("target") or entry.get("source")
    return str(entry)


UNIQUE_BY = {"volumes": _volume_target, "secrets": _file_target, "configs": _file_target}


def mount_of(entry: Any) -> tuple[str | None, str | None, bool]:
    """(source, target, read-only) of a volume entry in either syntax; a bare target has no source."""
    if isinstance(entry, dict):
        return entry.get("source"), entry.get("target"), bool(entry.get("read_only"))
    parts = str(entry).split(":")
    if len(parts) == 1:
        return None, parts[0], False
    return parts[0], parts[1], len(parts) > 2 and "ro" in parts[2].split(",")
