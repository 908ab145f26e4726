"""Render the stack spec into standard files: Dockerfiles, compose.yaml, docker-bake.json, a swarm stack.

Pure functions (models in, text out) over Jinja templates; writing and
``--check`` live in ``infra.render.write``. Nothing here touches Docker.
"""

from infra.render.mode import check_mode, default_layout, render_mode

__all__ = ["check_mode", "default_layout", "render_mode"]
