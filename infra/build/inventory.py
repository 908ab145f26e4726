"""What an image really holds: its Debian packages and its Python distributions, read inside the image.

One throw-away container of the image (no network, no mounts) runs :func:`_collect` with the image's own
``python3``: it parses dpkg's database (``/var/lib/dpkg/status``, and ``status.d/`` where an image keeps
one file per package) and asks ``importlib.metadata`` for the distributions on the interpreter's own
``sys.path``. What a container mounts at run time (the native environment) is therefore not counted: the
inventory is of the image alone. The SBOM (infra/build/sbom.py) is made from it; a lock file can be too.

The two functions sent into the container use the standard library only and run on Python 3.8 and later.
"""

from __future__ import annotations

import inspect
import json
import re
from dataclasses import dataclass, field

from infra.engine import EngineAPI
from infra.errors import EngineError, OperationError


@dataclass(frozen=True)
class DebPackage:
    name: str
    version: str
    arch: str
    source: str = ""          # the source package, when it differs from the binary's name


@dataclass(frozen=True)
class PythonDist:
    name: str                 # as the distribution spells it
    version: str
    location: str             # the sys.path entry it was found in

    @property
    def key(self) -> str:
        """The name normalised as PEP 503 and PyPI do: ``Foo_Bar.baz`` -> ``foo-bar-baz``."""
        return normalize(self.name)


@dataclass(frozen=True)
class Inventory:
    os_id: str                            # os-release ID ("debian"), "" when the image has none
    os_version: str                       # VERSION_ID ("12")
    os_codename: str                      # VERSION_CODENAME ("bookworm")
    python: str                           # the image's python3 version
    debs: tuple[DebPackage, ...] = field(default_factory=tuple)
    dists: tuple[PythonDist, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict:
        return {"os": {"id": self.os_id, "version": self.os_version, "codename": self.os_codename},
                "python": self.python,
                "debs": [d.__dict__ for d in self.debs],
                "dists": [d.__dict__ for d in self.dists]}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_dpkg_status(text: str) -> list[dict]:
    """The installed packages of a dpkg status file (stanzas of ``Field: value`` lines, blank-line separated).

    A package counts when its Status says ``installed`` (``deinstall ok config-files`` and half-installed
    ones do not). Runs inside the image too, so it uses nothing but the standard library."""
    packages = []
    for stanza in text.split("\n\n"):
        fields = {}
        last = None
        for line in stanza.splitlines():
            if line[:1] in (" ", "\t"):
                if last is not None:
                    fields[last] += "\n" + line.strip()
                continue
            key, sep, value = line.partition(":")
            if sep:
                last = key.strip().lower()
                fields[last] = value.strip()
        status = fields.get("status", "").split()
        if not fields.get("package") or not status or status[-1] != "installed":
            continue
        source = fields.get("source", "").split(" ")[0]
        packages.append({"name": fields["package"], "version": fields.get("version", ""),
                         "arch": fields.get("architecture", ""),
                         "source": source if source and source != fields["package"] else ""})
    return packages


def _collect(root="/"):
    """Runs in the image: dpkg's packages, the Python distributions, os-release, as one JSON line on stdout."""
    import json
    import os
    import sys

    def read(path):
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                return handle.read()
        except OSError:
            return ""

    texts = [read(os.path.join(root, "var/lib/dpkg/status"))]
    folder = os.path.join(root, "var/lib/dpkg/status.d")
    if os.path.isdir(folder):
        texts += [read(os.path.join(folder, n)) for n in sorted(os.listdir(folder)) if "." not in n]
    debs = [p for t in texts for p in parse_dpkg_status(t)]
    release = {}
    for line in (read(os.path.join(root, "etc/os-release")) or read(os.path.join(root, "usr/lib/os-release"))).splitlines():
        key, sep, value = line.partition("=")
        if sep:
            release[key.strip()] = value.strip().strip('"')
    dists, seen = [], set()
    try:
        import importlib.metadata as metadata
    except ImportError:          # Python before 3.8: no distributions to report
        metadata = None
    if metadata is not None:
        for entry in [p for p in sys.path if p]:       # '' is the working directory, not the interpreter's
            for dist in metadata.distributions(path=[entry]):
                name, version = dist.metadata["Name"], dist.version
                key = (name or "").lower().replace("_", "-").replace(".", "-")
                if not name or key in seen:             # the first on sys.path is the one import finds
                    continue
                seen.add(key)
                dists.append({"name": name, "version": version or "", "location": entry})
    print(json.dumps({"os": {"id": release.get("ID", ""), "version": release.get("VERSION_ID", ""),
                             "codename": release.get("VERSION_CODENAME", "")},
                      "python": "%d.%d.%d" % sys.version_info[:3], "debs": debs, "dists": dists}))


def collect_code() -> str:
    """The program the container runs: the two functions above, then the call."""
    return f"{inspect.getsource(parse_dpkg_status)}\n{inspect.getsource(_collect)}\n_collect()\n"


def parse_inventory(text: str, ref: str) -> Inventory:
    """The container's JSON line as an :class:`Inventory`, sorted by name."""
    try:
        data = json.loads(text.strip().splitlines()[-1])
        release = data["os"]
        debs = sorted({DebPackage(d["name"], d["version"], d["arch"], d.get("source", "")) for d in data["debs"]},
                      key=lambda d: (d.name, d.arch, d.version))
        dists = sorted((PythonDist(d["name"], d["version"], d["location"]) for d in data["dists"]),
                       key=lambda d: d.key)
        return Inventory(str(release["id"]), str(release["version"]), str(release["codename"]), str(data["python"]),
                         tuple(debs), tuple(dists))
    except (ValueError, KeyError, TypeError, IndexError):
        raise OperationError(f"the inventory of {ref} is not what infra's probe prints: {text.strip()[:200]!r}") from None


def inventory(engine: EngineAPI, ref: str) -> Inventory:
    """List what the local image ``ref`` holds, with its own ``python3`` in a throw-away container."""
    try:
        output = engine.run_python(ref, collect_code())
    except EngineError as exc:
        detail = (exc.stderr_tail or exc.message).strip().splitlines()
        if any("python3" in line and ("not found" in line or "no such file" in line.lower()) for line in detail):
            raise OperationError(f"cannot list what {ref} holds: the image has no python3 to read it with") from None
        raise OperationError(f"cannot list what {ref} holds: {detail[-1] if detail else exc.message}") from None
    return parse_inventory(output, ref)
