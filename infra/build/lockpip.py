"""What each image's pip line installs, resolved with the host's pip for the image's Python and platform.

``pip install --dry-run --ignore-installed --report`` resolves the whole closure without
installing anything and reports, for every distribution, the version and the hash of the
exact file it chose. When the host runs the image's Python on the same machine with a C
library no newer than the image's, pip resolves as itself (source distributions allowed);
otherwise it is told the image's Python and manylinux platforms and takes wheels only.

pip sees what a build's pip sees: no host configuration (``PIP_CONFIG_FILE`` is the spec's
``secrets.pip_config`` or nothing, no ``PIP_*`` variables), the CA bundle a build would get,
and the pins of the image's ancestors as constraints, so a child never moves a parent's package.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from infra.errors import BadInputError, OperationError
from infra.spec.lock import PipPin, canonical_name

# pip's words for a request that cannot be met: bad input, not a failed operation.
UNRESOLVABLE = re.compile(r"Could not find a version|No matching distribution|ResolutionImpossible|"
                          r"conflicting dependencies|Invalid requirement|cannot install", re.IGNORECASE)
OLDEST_MANYLINUX = 5          # manylinux_2_5 is manylinux1
LEGACY_MANYLINUX = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}


@dataclass(frozen=True)
class PipTarget:
    """The interpreter and platform an image's pip installs for."""

    python: str                        # major.minor, e.g. 3.11
    machine: str = "x86_64"
    glibc: tuple[int, int] = (2, 17)

    def host_matches(self) -> bool:
        """The host's Python is the image's, on the same machine, with a C library no newer than the image's."""
        host_libc = platform.libc_ver()
        match = re.match(r"^(\d+)\.(\d+)", host_libc[1]) if host_libc[0] == "glibc" else None
        return (f"{sys.version_info[0]}.{sys.version_info[1]}" == self.python and sys.platform == "linux"
                and platform.machine() == self.machine and match is not None
                and (int(match.group(1)), int(match.group(2))) <= self.glibc)

    def platforms(self) -> list[str]:
        """Every manylinux tag the image can load, newest first (pip takes each --platform as it is)."""
        major, minor = self.glibc
        tags = []
        for m in range(minor, OLDEST_MANYLINUX - 1, -1):
            tags.append(f"manylinux_{major}_{m}_{self.machine}")
            if m in LEGACY_MANYLINUX:
                tags.append(f"{LEGACY_MANYLINUX[m]}_{self.machine}")
        return tags

    def flags(self, folder: Path) -> list[str]:
        """pip's options for this target: none when the host matches; else the image's Python and platforms,
        wheels only (pip wants --target with them even for a dry run; nothing is written there)."""
        if self.host_matches():
            return []
        abi = "cp" + self.python.replace(".", "")
        return ["--target", str(folder / "target"), "--python-version", self.python, "--implementation", "cp",
                "--abi", abi, "--abi", "abi3", "--abi", "none", *(f"--platform={tag}" for tag in self.platforms()),
                "--only-binary=:all:"]


def pip_environment(pip_config: Path | None) -> dict[str, str]:
    """The environment pip resolves in: the host's, less every PIP_* setting, with only the spec's pip.conf."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = str(pip_config) if pip_config is not None else os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    return env


def resolve(requirements: list[str], constraints: Mapping[str, str], target: PipTarget, *, env: Mapping[str, str],
            cert: Path | None, where: str) -> dict[str, PipPin]:
    """Every distribution pip installs for ``requirements`` that ``constraints`` (name -> the version an
    ancestor pins) do not already hold: name -> version and the hash of the file pip chose."""
    with tempfile.TemporaryDirectory(prefix="infra-lock-") as tmp:
        folder = Path(tmp)
        report = folder / "report.json"
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
               "--report", str(report), *target.flags(folder)]
        if cert is not None:
            cmd += ["--cert", str(cert)]
        if constraints:
            (folder / "constraints.txt").write_text("".join(f"{n}=={v}\n" for n, v in sorted(constraints.items())))
            cmd += ["--constraint", str(folder / "constraints.txt")]
        cmd += requirements
        proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(env), cwd=tmp, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise _failure(proc.stderr, where)
        try:
            data = json.loads(report.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise OperationError(f"{where}: pip wrote no readable report ({exc})") from None
    return parse_report(data, constraints)


def parse_report(data: Mapping, constraints: Mapping[str, str]) -> dict[str, PipPin]:
    """name -> pin of every install in pip's report, less what ``constraints`` (the ancestors' pins) hold."""
    pins = {}
    for item in data.get("install", []):
        name = canonical_name(item["metadata"]["name"])
        version = item["metadata"]["version"]
        if constraints.get(name) == version:
            continue
        hashes = ((item.get("download_info") or {}).get("archive_info") or {}).get("hashes") or {}
        pins[name] = PipPin(version=version, sha256=hashes.get("sha256"))
    return dict(sorted(pins.items()))


def _failure(stderr: str, where: str) -> Exception:
    errors = [line.removeprefix("ERROR: ").strip() for line in stderr.splitlines() if line.startswith("ERROR:")]
    if "No module named pip" in stderr:
        return BadInputError("`infra lock` needs pip in infra's own environment, and it has none",
                             hint=f"{sys.executable} -m ensurepip")
    text = "; ".join(errors[-2:]) or (stderr.strip().splitlines() or ["no output"])[-1]
    if UNRESOLVABLE.search(stderr):
        return BadInputError(f"{where}: pip: {text}")
    return OperationError(f"{where}: pip could not resolve the packages: {text}",
                          hint="pip must reach the package index (a CA bundle behind a proxy: secrets.ca_bundle)")
