"""Problems in the shared templates are bad input too: one line naming the template file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from infra.errors import BadInputError
from infra.render import compose, dockerfile, swarm
from infra.render.environment import shared_templates
from tests.render_cases import default_stack, render


@pytest.fixture
def templates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "templates"
    shutil.copytree(shared_templates(), folder)
    for module in (dockerfile, compose, swarm):
        monkeypatch.setattr(module, "shared_templates", lambda: folder)
    return folder


def test_a_copy_of_the_templates_renders_the_same(templates: Path) -> None:
    stack = default_stack()
    assert render(stack, "docker-gpu")["compose.yaml"].startswith("# Rendered by infra")


def test_missing_shared_template(templates: Path) -> None:
    (templates / "Dockerfile.j2").unlink()
    with pytest.raises(BadInputError) as exc:
        render(default_stack(), "native")
    assert exc.value.message == "templates/Dockerfile.j2: template not found (looked in templates)"


def test_unparsable_shared_template(templates: Path) -> None:
    (templates / "compose.yaml.j2").write_text("name: x\n{% for s in spec.services %}\n")
    with pytest.raises(BadInputError) as exc:
        render(default_stack(), "native")
    assert exc.value.message.startswith("templates/compose.yaml.j2: line 2: template syntax error: ")


def test_undefined_value_in_a_macro(templates: Path) -> None:
    macros = templates / "_macros.j2"
    macros.write_text(macros.read_text().replace("{{ item|sh }}", "{{ item|sh }}{{ spec.nope }}"))
    with pytest.raises(BadInputError) as exc:
        render(default_stack(), "docker-cpu")
    assert exc.value.message.startswith("templates/_macros.j2: line ")
    assert "'spec' is undefined" in exc.value.message


def test_render_mode_checks_the_mode_for_callers_other_than_the_cli() -> None:
    import dataclasses

    from infra.errors import ConfigError
    from infra.render import check_mode

    stack = default_stack()
    with pytest.raises(BadInputError, match="--mode 'docker-tpu' is not a mode"):
        check_mode(stack, "docker-tpu")
    modes = {k: v for k, v in stack.spec.modes.items() if k != "docker-gpu"}
    stack = dataclasses.replace(stack, spec=stack.spec.model_copy(update={"modes": modes}))
    with pytest.raises(ConfigError, match=r"infra.yaml: modes.docker-gpu: not defined \(defined: native, docker-cpu\)"):
        check_mode(stack, "docker-gpu")
