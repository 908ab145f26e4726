"""Merge the user's compose overlays (compose/*.yaml, compose/<mode>/*.yaml) over the rendered compose and swarm files.

Pure: the rendered text and the overlays parsed when the spec loaded go in, text comes out, keys sorted.
The merge is ``docker compose -f base.yaml -f overlay.yaml``'s (``infra.render.compose_merge``), one
file after another: every-mode files first, then the mode's own, each in file-name order.

Relative host paths in an overlay are relative to the project (the folder of infra.yaml), as the spec's
are; they are rewritten to be relative to the rendered file. What an overlay may not do is refused
with one line per problem, naming the file and the dotted path (:func:`check_overlay`). stack.yaml takes
the same overlays less what `docker stack deploy` does not (:func:`_for_swarm`), noted in its header.
"""

from __future__ import annotations

import copy
import difflib
import posixpath
from dataclasses import dataclass
from typing import Any

from infra.errors import ConfigError
from infra.render import paths
from infra.render.compose import compose_stages
from infra.render.compose_merge import TOP_LEVEL, merge_compose, mount_of
from infra.spec.load import ComposeOverlay, Stack

# Service keys `docker stack deploy` takes (its compose file schema 3.x), less the ones it only ignores
# (build) or that the stack file leaves out on purpose (depends_on): the rest is left out of stack.yaml.
SWARM_SERVICE_KEYS = frozenset({
    "cap_add", "cap_drop", "cgroup_parent", "cgroupns_mode", "command", "configs", "container_name",
    "credential_spec", "deploy", "devices", "dns", "dns_search", "domainname", "entrypoint", "env_file",
    "environment", "expose", "external_links", "extra_hosts", "healthcheck", "hostname", "image", "init", "ipc",
    "isolation", "labels", "links", "logging", "mac_address", "network_mode", "networks", "oom_score_adj", "pid",
    "ports", "privileged", "read_only", "restart", "secrets", "security_opt", "shm_size", "stdin_open",
    "stop_grace_period", "stop_signal", "sysctls", "tmpfs", "tty", "ulimits", "user", "userns_mode", "volumes",
    "working_dir"})
HOST_NAMESPACES = ("pid", "network_mode", "ipc", "userns_mode")
DOCKER_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")


@dataclass(frozen=True)
class OverlayContext:
    """What the checks and the path rewriting need to know about the rendered files."""

    services: tuple[str, ...]        # the services compose.yaml renders (stage workers and infra's helpers)
    stages: frozenset[str]           # which of them are stage workers
    all_stages: frozenset[str]       # every stage of the spec, also those without a service in this mode
    to_project: str                  # from the rendered files' folder to the project
    out: str                         # the rendered files' folder, absolute
    env_dir: str | None              # the native environment's folder, absolute (under the mounted policy)


def overlays_for(stack: Stack, mode: str) -> list[ComposeOverlay]:
    """The overlays that apply to ``mode``: every-mode files first, then the mode's own, each in file-name order."""
    return [o for o in stack.overlays if o.mode is None] + [o for o in stack.overlays if o.mode == mode]


def apply_overlays(stack: Stack, mode: str, layout: paths.Layout, compose_text: str,
                   swarm_text: str) -> tuple[str, str]:
    """compose.yaml and stack.yaml with the mode's overlays merged in; both unchanged when there are none."""
    overlays = overlays_for(stack, mode)
    if not overlays:
        return compose_text, swarm_text
    compose = _load(compose_text)
    project = posixpath.normpath(stack.workdir.as_posix())
    env = stack.spec.native_env
    context = OverlayContext(
        services=tuple(sorted(compose.get("services") or {})),
        stages=frozenset(compose_stages(stack, mode)),  # type: ignore[arg-type]
        all_stages=frozenset(stack.spec.stages),
        to_project=layout.to_project,
        out=posixpath.normpath(posixpath.join(project, layout.from_project)),
        env_dir=posixpath.normpath(posixpath.join(project, env.path)) if env.torch == "mounted" else None,
    )
    problems = [p for overlay in overlays for p in check_overlay(overlay, context)]
    if problems:
        raise ConfigError(problems, hint="an overlay may add to infra's services but not loosen them or touch the "
                                         "native environment; what needs more belongs in a sidecar service")
    swarm = _load(swarm_text)
    not_here: list[str] = []
    not_swarm: list[str] = []
    for overlay in overlays:
        data = _for_mode(rewrite_paths(overlay.data, context.to_project), context, overlay.file, not_here)
        compose = merge_compose(compose, data)
        swarm = merge_compose(swarm, _for_swarm(data, context, overlay.file, not_swarm))
    files = ", ".join(o.file for o in overlays)
    notes = [f"# Merged with the compose overlays {files} (keys sorted).",
             *(f"# Left out here (no such service in {mode}): {item}" for item in not_here)]
    swarm_notes = notes + [f"# Left out here (not for docker stack deploy): {item}" for item in not_swarm]
    return _dump(compose_text, compose, notes), _dump(swarm_text, swarm, swarm_notes)


# --- host paths ---------------------------------------------------------------------------------------------------

def rewrite_paths(data: dict[str, Any], to_project: str) -> dict[str, Any]:
    """The overlay with its relative host paths (bind sources, env_file, build contexts, secret and config
    files) made relative to the rendered file instead of the project."""
    data = copy.deepcopy(data)
    for service in (data.get("services") or {}).values():
        if not isinstance(service, dict):
            continue
        if isinstance(service.get("volumes"), list):
            service["volumes"] = [_rewrite_volume(v, to_project) for v in service["volumes"]]
        env_file = service.get("env_file")
        if isinstance(env_file, str):
            service["env_file"] = _relocate(env_file, to_project)
        elif isinstance(env_file, list):
            service["env_file"] = [_relocate(e, to_project) if isinstance(e, str) else
                                   {**e, "path": _relocate(e.get("path"), to_project)} if isinstance(e, dict) else e
                                   for e in env_file]
        build = service.get("build")
        if isinstance(build, str) and "://" not in build:
            service["build"] = _relocate(build, to_project)
        elif isinstance(build, dict) and isinstance(build.get("context"), str) and "://" not in build["context"]:
            build["context"] = _relocate(build["context"], to_project)
    for section in ("secrets", "configs"):
        for entry in (data.get(section) or {}).values():
            if isinstance(entry, dict) and isinstance(entry.get("file"), str):
                entry["file"] = _relocate(entry["file"], to_project)
    return data


def _rewrite_volume(entry: Any, to_project: str) -> Any:
    if isinstance(entry, dict):
        if entry.get("type") == "bind" and isinstance(entry.get("source"), str):
            return {**entry, "source": _relocate(entry["source"], to_project)}
        return entry
    source, _, _ = mount_of(entry)
    if source is not None and source.startswith("."):          # a path; a bare name is a named volume
        return _relocate(source, to_project) + str(entry)[len(source):]
    return entry


def _relocate(path: Any, to_project: str) -> Any:
    if not isinstance(path, str) or posixpath.isabs(path) or path.startswith(("$", "~")):
        return path
    joined = posixpath.normpath(posixpath.join(to_project, path))
    return joined if joined.startswith((".", "/")) else f"./{joined}"


# --- what an overlay may not do -----------------------------------------------------------------------------------

def check_overlay(overlay: ComposeOverlay, context: OverlayContext) -> list[str]:
    """One line per thing ``overlay`` may not do, each naming the file and the dotted path.

    Refused: an unknown top-level key or ``name`` (infra.yaml's ``project`` names the project); an entry for
    a service that is neither rendered nor complete (a new one needs ``image``); on any service, a mount
    or tmpfs at or under the native environment's target, a writable mount of the environment's folder,
    ``volumes_from`` a rendered service with ``:rw``; on a rendered service, ``privileged``, ``cap_add``,
    a host pid/network/ipc/user namespace, a ``security_opt`` that lifts its confinement, the Docker socket.
    """
    where, data, problems = overlay.file, overlay.data, []
    for key in data:
        if key == "name":
            problems.append(f"{where}: name: the compose project is named by 'project' in infra.yaml")
        elif key not in (*TOP_LEVEL, "version") and not str(key).startswith("x-"):
            close = difflib.get_close_matches(str(key), TOP_LEVEL, n=1)
            tail = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(TOP_LEVEL)}, x-*"
            problems.append(f"{where}: unknown top-level key '{key}' ({tail})")
        elif key in TOP_LEVEL and data[key] is not None and not isinstance(data[key], dict):
            problems.append(f"{where}: {key}: must be a mapping of names")
    services = data.get("services")
    for name, service in (services.items() if isinstance(services, dict) else ()):
        problems.extend(f"{where}: {line}" for line in _check_service(str(name), service, context))
    return problems


def _check_service(name: str, service: Any, context: OverlayContext) -> list[str]:
    at = f"services.{name}"
    if service is not None and not isinstance(service, dict):
        return [f"{at}: must be a mapping of service attributes"]
    service = service or {}
    known = sorted({*context.services, *context.all_stages})
    if name not in known and not isinstance(service.get("image"), str):
        close = difflib.get_close_matches(name, known, n=1)
        need = f"did you mean '{close[0]}'? (a new service needs an 'image')" if close \
            else "a new service needs an 'image'"
        return [f"{at}: unknown service '{name}' (services: {', '.join(known)}); {need}"]
    problems = _check_mounts(at, service, context)
    if name in known:
        problems.extend(_check_rendered(at, name, service, context))
    return problems


def _check_mounts(at: str, service: dict[str, Any], context: OverlayContext) -> list[str]:
    problems = []
    for key in ("volumes", "tmpfs", "volumes_from"):
        if key in service and not isinstance(service[key], list) and (key, type(service[key])) != ("tmpfs", str):
            problems.append(f"{at}.{key}: must be a list")
    volumes = service.get("volumes") if isinstance(service.get("volumes"), list) else []
    for i, entry in enumerate(volumes):
        source, target, read_only = mount_of(entry)
        if _under(target, paths.NATIVE_SITE):
            problems.append(f"{at}.volumes[{i}]: target '{target}' is the read-only native environment "
                            f"({paths.NATIVE_SITE}); an overlay may not mount over it")
        elif context.env_dir and not read_only and _under(_absolute(entry, context), context.env_dir):
            problems.append(f"{at}.volumes[{i}]: mounts the native environment ({source}) writable; "
                            f"mount it read-only (':ro' or read_only: true) or not at all")
    tmpfs = service.get("tmpfs")
    for i, entry in enumerate([tmpfs] if isinstance(tmpfs, str) else tmpfs if isinstance(tmpfs, list) else []):
        if _under(str(entry).split(":")[0], paths.NATIVE_SITE):
            problems.append(f"{at}.tmpfs[{i}]: '{entry}' would hide the read-only native environment "
                            f"({paths.NATIVE_SITE})")
    shared = service.get("volumes_from")
    for i, entry in enumerate(shared if isinstance(shared, list) else []):
        parts = str(entry).split(":")
        source = parts[1] if parts[0] == "container" and len(parts) > 1 else parts[0]
        if parts[-1] == "rw" and source in context.services:
            problems.append(f"{at}.volumes_from[{i}]: '{entry}' would make the native environment writable; "
                            f"use '{source}:ro'")
    return problems


def _check_rendered(at: str, name: str, service: dict[str, Any], context: OverlayContext) -> list[str]:
    what = f"stage service '{name}'" if name in context.all_stages else f"infra's service '{name}'"
    problems = []
    if service.get("privileged"):
        problems.append(f"{at}.privileged: refused on {what}; run what needs it in a sidecar service")
    if service.get("cap_add"):
        problems.append(f"{at}.cap_add: refused on {what}, which drops every capability; "
                        f"run what needs it in a sidecar service")
    for key in HOST_NAMESPACES:
        if str(service.get(key, "")).strip() == "host":
            problems.append(f"{at}.{key}: 'host' is refused on {what}: it would share the host's namespace")
    options = service.get("security_opt")
    for i, option in enumerate(options if isinstance(options, list) else []):
        text = str(option).replace("=", ":").replace(" ", "")
        if "unconfined" in text or text in ("no-new-privileges:false", "no-new-privileges:0"):
            problems.append(f"{at}.security_opt[{i}]: '{option}' is refused on {what}: it lifts its confinement")
    volumes = service.get("volumes") if isinstance(service.get("volumes"), list) else []
    for i, entry in enumerate(volumes):
        source = mount_of(entry)[0]
        if source and posixpath.normpath(source) in DOCKER_SOCKETS:
            problems.append(f"{at}.volumes[{i}]: the Docker socket is refused on {what}: it is root on the host")
    return problems


def _absolute(entry: Any, context: OverlayContext) -> str | None:
    """The host path a volume entry of the overlay binds (relative to the project), absolute; None for a volume."""
    source = mount_of(entry)[0]
    bind = entry.get("type") == "bind" if isinstance(entry, dict) else str(source).startswith((".", "/"))
    if not isinstance(source, str) or not bind or source.startswith(("$", "~")):
        return None
    return posixpath.normpath(posixpath.join(context.out, _relocate(source, context.to_project)))


def _under(path: Any, root: str) -> bool:
    if not isinstance(path, str) or not path:
        return False
    path, root = posixpath.normpath(path), posixpath.normpath(root)
    return path == root or path.startswith(root.rstrip("/") + "/")


# --- swarm and output ----------------------------------------------------------------------------------------------

def _for_mode(data: dict[str, Any], context: OverlayContext, file: str, left_out: list[str]) -> dict[str, Any]:
    """The overlay without its entries for stages that have no service in this mode (noted in ``left_out``),
    so that a file for every mode can name a stage that only some modes run."""
    services = data.get("services")
    for name in list(services) if isinstance(services, dict) else []:
        if name in context.all_stages and name not in context.services:
            left_out.append(f"services.{name} ({file})")
            del services[name]
    return data


def _for_swarm(data: dict[str, Any], context: OverlayContext, file: str, left_out: list[str]) -> dict[str, Any]:
    """The overlay as it applies to stack.yaml: without the services swarm does not run (infra's compose helpers)
    and without the service keys `docker stack deploy` does not take; each is noted in ``left_out``."""
    data = copy.deepcopy(data)
    services = data.get("services")
    if not isinstance(services, dict):
        return data
    for name in list(services):
        if name in context.services and name not in context.stages:
            left_out.append(f"services.{name} ({file}: compose only)")
            del services[name]
            continue
        service = services[name] or {}
        for key in sorted(service):
            if key not in SWARM_SERVICE_KEYS and not str(key).startswith("x-"):
                left_out.append(f"services.{name}.{key} ({file})")
                del service[key]
    return data


def _load(text: str) -> dict[str, Any]:
    import yaml

    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}  # a safe loader


def _dump(rendered: str, data: dict[str, Any], notes: list[str]) -> str:
    """``data`` as YAML (sorted keys, no anchors) under the rendered file's leading comments and ``notes``."""
    import yaml

    class Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:  # every value written out in full, no anchors
            return True

    header = []
    for line in rendered.splitlines():
        if not line.startswith("#"):
            break
        header.append(line)
    body = yaml.dump(data, Dumper=Dumper, sort_keys=True, default_flow_style=False, allow_unicode=True, width=4096)
    return "\n".join([*header, *notes, body.rstrip("\n")]) + "\n"
