"""The stack spec: models, loading, cross-file checks."""

from infra.config.load import Stack, load_stack

__all__ = ["Stack", "load_stack"]
