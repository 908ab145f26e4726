"""Golden files: every rendered file of every mode, for the shipped spec and the baked variant.

After a deliberate template change: `pytest tests/unit/test_render_golden.py --update-golden`
(or INFRA_UPDATE_GOLDEN=1), then review the diff of tests/golden/ like code.
"""

from __future__ import annotations

import shutil

import pytest

from tests.render_cases import CASES, GOLDEN, MODES, render


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", list(CASES))
def test_rendered_files_match_golden(case: str, mode: str, update_golden: bool) -> None:
    files = render(CASES[case](), mode)
    folder = GOLDEN / case / mode
    if update_golden:
        shutil.rmtree(folder, ignore_errors=True)
        for rel, text in files.items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_text(text, encoding="utf-8")
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert on_disk == set(files), "rendered file set changed; rerun with --update-golden and review"
    for rel, text in files.items():
        assert (folder / rel).read_text(encoding="utf-8") == text, f"{case}/{mode}/{rel} differs from its golden file"


@pytest.mark.parametrize("mode", MODES)
def test_rendering_is_deterministic_and_has_no_host_paths(mode: str) -> None:
    stack = CASES["default"]()
    first, second = render(stack, mode), render(stack, mode)
    assert first == second
    for rel, text in first.items():
        assert "/work/" not in text and "/tmp/" not in text and "/home/" + "runner" not in text, rel
        assert str(GOLDEN.parents[1]) not in text, f"{rel} holds an absolute host path"


def test_output_folder_moves_only_the_relative_paths(tmp_path) -> None:
    stack = CASES["default"]()
    here = render(stack, "docker-cpu")
    there = render(stack, "docker-cpu", out=tmp_path / "elsewhere")
    dockerfiles = [rel for rel in here if rel.startswith("dockerfiles/")]
    assert dockerfiles and all(here[rel] == there[rel] for rel in dockerfiles)
    assert here["compose.yaml"] != there["compose.yaml"]
    assert '"../../../jobs"' in here["compose.yaml"]
