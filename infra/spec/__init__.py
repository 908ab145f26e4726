"""The stack spec: models, loading, cross-file checks."""

from infra.spec.load import Stack, load_stack

__all__ = ["Stack", "load_stack"]
