"""Where the data that ships with infra lives: the default spec, images/, templates/, stages/.

An installed wheel carries them under ``infra/_data`` (hatch force-include); a
source checkout has them at the repository root, beside the package.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path


@cache
def data_root() -> Path:
    package = Path(__file__).resolve().parent
    installed = package / "_data"
    if (installed / "infra.yaml").is_file():
        return installed
    return package.parent


def package_root() -> Path:
    """infra's own package folder: the job protocol (jobproto.py) that the stage images copy lives here."""
    return Path(__file__).resolve().parent


def stage_search_path() -> list[Path]:
    """What a stage program run natively needs on its path: the folder holding ``stages/`` and the one holding
    ``infra/jobproto.py``. In a checkout that is the repository; an installed wheel keeps the stages under
    ``infra/_data``, so the protocol comes from a folder with one link to the package (never the whole
    site-packages of infra's own environment, whose packages would shadow the native env's)."""
    root = data_root()
    if (root / "infra" / "jobproto.py").is_file():
        return [root]
    return [root, protocol_link_folder()]


def protocol_link_folder() -> Path:
    """A folder in the user's cache whose ``infra`` links to this package; made once, atomically."""
    import hashlib
    import os
    import tempfile

    package = package_root()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    folder = cache / "infra" / "protocol" / hashlib.sha256(str(package).encode()).hexdigest()[:16]
    if (folder / "infra").resolve() == package:
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".protocol-", dir=folder.parent))
    (tmp / "infra").symlink_to(package, target_is_directory=True)
    try:
        os.replace(tmp, folder)
    except OSError:                      # another process made it first
        (tmp / "infra").unlink()
        tmp.rmdir()
    return folder
