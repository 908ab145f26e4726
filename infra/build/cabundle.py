"""Which CA bundle a build hands to BuildKit, and the hint when a build still fails on a certificate.

Behind a TLS-intercepting proxy, pip and apt inside a build trust only the CA
bundle they are given. The spec's ``secrets.ca_bundle`` (or INFRA_CA_BUNDLE)
comes first; without one, the build uses the bundle the host already trusts:
SSL_CERT_FILE, REQUESTS_CA_BUNDLE, PIP_CERT, then the ``cert`` setting of pip's
own config files. The bundle reaches a build only as a BuildKit secret, and
only its path is ever named.
"""

from __future__ import annotations

import configparser
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from infra.errors import BadInputError
from infra.spec import Stack

HOST_VARIABLES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT")
FIX = "set secrets.ca_bundle in infra.yaml or INFRA_CA_BUNDLE=/path/ca.pem"
# What pip, apt (GnuTLS), curl and OpenSSL print when a certificate is not trusted.
CERTIFICATE_ERROR = re.compile(
    r"certificate[ _]verify[ _]failed|certificate verification failed|ssl certificate problem"
    r"|problem confirming the ssl certificate|SSLCertVerificationError|\[SSL: ", re.IGNORECASE)


@dataclass(frozen=True)
class CaBundle:
    path: Path
    source: str        # where it was found: secrets.ca_bundle, INFRA_CA_BUNDLE, SSL_CERT_FILE, ..., pip config <file>


def find_ca_bundle(stack: Stack) -> CaBundle | None:
    """The CA bundle for a build: the configured one (an error when it is missing), else the host's, else None."""
    configured = stack.spec.secrets.ca_bundle
    if configured:
        path = Path(configured) if Path(configured).is_absolute() else stack.workdir / configured
        if not path.is_file():
            raise BadInputError(f"secrets.ca_bundle: '{configured}' not found",
                                hint="point it (or INFRA_CA_BUNDLE) at a file")
        source = "INFRA_CA_BUNDLE" if os.environ.get("INFRA_CA_BUNDLE") == configured else "secrets.ca_bundle"
        return CaBundle(path, source)
    return host_ca_bundle()


def host_ca_bundle() -> CaBundle | None:
    """The bundle the host already trusts; a setting that names no file is passed over."""
    for variable in HOST_VARIABLES:
        value = os.environ.get(variable)
        if value and Path(value).is_file():
            return CaBundle(Path(os.path.abspath(value)), variable)
    found = pip_config_cert()
    if found is not None and found[0].is_file():
        return CaBundle(found[0], f"pip config {found[1]}")
    return None


def pip_config_files() -> list[Path]:
    """pip's config files, lowest precedence first, the way pip finds them on Linux: the global ones
    (XDG_CONFIG_DIRS, then /etc), the user's (left out when PIP_CONFIG_FILE names a file), the site's
    (this interpreter's prefix), then PIP_CONFIG_FILE; none at all when PIP_CONFIG_FILE is os.devnull."""
    named = os.environ.get("PIP_CONFIG_FILE")
    if named == os.devnull:
        return []
    dirs = os.environ.get("XDG_CONFIG_DIRS", "").strip() or "/etc/xdg"
    files = [Path(folder) / "pip" / "pip.conf" for folder in dirs.split(os.pathsep)] + [Path("/etc/pip.conf")]
    if not (named and os.path.exists(named)):
        home = Path.home()
        config_home = os.environ.get("XDG_CONFIG_HOME", "").strip() or str(home / ".config")
        files += [home / ".pip" / "pip.conf", Path(config_home) / "pip" / "pip.conf"]
    files.append(Path(sys.prefix) / "pip.conf")
    if named:
        files.append(Path(named))
    return files


def pip_config_cert() -> tuple[Path, Path] | None:
    """(cert, the file that sets it) as `pip install` would take it: [install] over [global], later files win."""
    chosen: dict[str, tuple[Path, Path]] = {}
    for file in pip_config_files():
        parser = configparser.RawConfigParser()
        try:
            parser.read(file, encoding="utf-8")
        except (configparser.Error, OSError, UnicodeDecodeError):
            continue
        for section in ("global", "install"):
            value = parser.get(section, "cert", fallback="").strip()
            if value:
                chosen[section] = (Path(os.path.abspath(os.path.expanduser(value))), file)
    return chosen.get("install") or chosen.get("global")


def certificate_hint(lines: Iterable[str], used: CaBundle | None) -> str | None:
    """A one-line fix when a failed build's output shows an untrusted certificate; None otherwise."""
    if not any(CERTIFICATE_ERROR.search(line) for line in lines):
        return None
    if used is None:
        return f"a TLS certificate was not trusted (a TLS-intercepting proxy?): {FIX}"
    return f"a TLS certificate was not trusted with the CA bundle {used.path} (from {used.source}): " \
           f"{FIX} to a bundle that holds the proxy's CA"
