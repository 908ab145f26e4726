"""The one adapter over Docker. Only this package imports python-on-whales.

Core code talks to :class:`Engine`; every DockerException leaves this package
as an :class:`~infra.errors.EngineError` that keeps the command and the tail
of its stderr.
"""

from infra.engine.client import Engine, EngineVersions

__all__ = ["Engine", "EngineVersions"]
