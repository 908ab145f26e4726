"""The one adapter over Docker. Only this package imports python-on-whales.

Core code is typed against :class:`EngineAPI` (protocol.py) and gets the real
:class:`Engine` (client.py) unless a caller hands it another, such as the
in-memory FakeEngine of fake.py that unit tests use. Every failure of a docker
command leaves this package as an :class:`~infra.errors.EngineError`, made in
one place (translate.py), that keeps the command and the tail of its stderr.
"""

from infra.engine.client import Engine
from infra.engine.protocol import EngineAPI, EngineVersions, ImageInfo

__all__ = ["Engine", "EngineAPI", "EngineVersions", "ImageInfo"]
