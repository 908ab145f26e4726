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
