"""The Jinja environment: where templates are found, the filters, and errors as one line.

Templates get exactly one object, ``spec``, built in Python; they only loop and
format. Every value that lands in a shell line or a Dockerfile instruction goes
through the ``sh`` filter (shlex.quote); every value in YAML through ``yaml``.
A template problem (missing, unparsable, an undefined value) becomes a
BadInputError naming the template file and the line, never a traceback.
"""

from __future__ import annotations

import json
import re
import shlex
from functools import lru_cache
from pathlib import Path
from typing import Any

from infra.errors import BadInputError
from infra.resources import data_root

DOCKERFILE_TEMPLATE = "Dockerfile.j2"
MACROS_TEMPLATE = "_macros.j2"
COMPOSE_TEMPLATE = "compose.yaml.j2"
SWARM_TEMPLATE = "stack.yaml.j2"


def shared_templates() -> Path:
    """The templates that ship with infra (repo data, carried by the wheel)."""
    return data_root() / "templates"


class Interpolated(str):
    """A string infra wrote with compose variables in it (``${INFRA_DATA:-/srv/x}``): not escaped."""


def yaml_scalar(value: Any) -> str:
    """A YAML scalar that means exactly ``value``: JSON's quoting, and a ``$`` doubled so that
    compose does not interpolate it, unless infra put a variable there on purpose."""
    if isinstance(value, str) and not isinstance(value, Interpolated):
        value = value.replace("$", "$$")
    return json.dumps(value)


def json_list(values: Any) -> str:
    """The exec form of a Dockerfile instruction or a YAML flow list: ["a", "b"]."""
    return json.dumps(list(values))


@lru_cache(maxsize=32)
def template_environment(*search: Path) -> Any:
    """A Jinja environment over ``search`` folders, first match wins (an image's folder, then the shared ones)."""
    import jinja2

    loader = jinja2.ChoiceLoader([jinja2.FileSystemLoader(str(folder)) for folder in search])
    env = jinja2.Environment(
        loader=loader,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
        bytecode_cache=_bytecode_cache(),
    )
    env.filters["sh"] = lambda value: shlex.quote(str(value))
    env.filters["yaml"] = yaml_scalar
    env.filters["json_list"] = json_list
    return env


def _bytecode_cache() -> Any:
    """Compiled templates kept under the user's cache folder: compiling them is most of a render's cost.

    Jinja keys each entry by the template's file name and checks it against the
    source, and writes entries atomically; without a writable folder there is no cache.
    """
    import os

    import jinja2

    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    folder = Path(base) / "infra" / "jinja"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return jinja2.FileSystemBytecodeCache(str(folder))


def render_template(search: tuple[Path, ...], name: str, spec: Any, shown: dict[Path, str]) -> str:
    """Render template ``name`` found in ``search`` with ``spec``.

    ``shown`` maps each search folder to how the user knows it (e.g.
    ``images/asr``), so errors name files the user can open.
    """
    import jinja2

    env = template_environment(*search)
    try:
        return env.get_template(name).render(spec=spec)
    except jinja2.TemplateSyntaxError as exc:
        where = _display(exc.filename, shown) if exc.filename else _display_name(exc.name or name, search, shown)
        raise BadInputError(f"{where}: line {exc.lineno}: template syntax error: {exc.message}",
                            hint="fix the template; it is Jinja2") from None
    except jinja2.TemplateNotFound as exc:
        missing = exc.name if isinstance(exc.name, str) else name
        places = ", ".join(shown.get(f, str(f)) for f in search)
        parent = _failing_template(exc, shown)
        if parent is None:  # the template asked for is itself missing
            raise BadInputError(f"{_display_name(missing, search, shown)}: template not found "
                                f"(looked in {places})") from None
        raise BadInputError(f"{parent}: template '{missing}' not found (looked in {places})") from None
    except jinja2.UndefinedError as exc:
        where = _failing_template(exc, shown) or _display_name(name, search, shown)
        message = re.sub(r"'(?:[\w.]+\.)?(\w+) object'", r"\1", exc.message or "")
        raise BadInputError(f"{where}: undefined value: {message}",
                            hint="the template uses a name that `spec` does not have; see docs/RENDER.md") from None


def _failing_template(exc: BaseException, shown: dict[Path, str]) -> str | None:
    """'file:line N' of the innermost template frame in the traceback, if any."""
    found = None
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.endswith(".j2"):
            found = f"{_display(filename, shown)}: line {tb.tb_lineno}"
        tb = tb.tb_next
    return found


def _display(filename: str, shown: dict[Path, str]) -> str:
    path = Path(filename)
    for folder, name in shown.items():
        if path.is_relative_to(folder):
            return f"{name}/{path.relative_to(folder).as_posix()}"
    return filename


def _display_name(name: str, search: tuple[Path, ...], shown: dict[Path, str]) -> str:
    first = search[0] if search else None
    return f"{shown.get(first, str(first))}/{name}" if first is not None else name
