"""The folder tree is the architecture: no import circles, small modules, one job protocol, one docstring per package.

Every import counts, also the ones inside functions and under TYPE_CHECKING: an import made late still ties
two modules together, and a circle of them is a module that cannot be understood (or tested) alone.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "infra"
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path) -> dict[str, Path]:
    return {module_name(p): p for p in sorted(root.rglob("*.py")) if "__pycache__" not in p.parts}


def imported(path: Path, name: str, known: dict[str, Path]) -> set[str]:
    """The modules of ``known`` that ``path`` imports; ``from pkg import mod`` counts as an import of pkg.mod."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {m for m in found if m in known and m != name}


def import_graph(root: Path) -> dict[str, set[str]]:
    known = modules(root)
    return {name: imported(path, name, known) for name, path in known.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        return list(exc.args[1])
    return None


def test_the_checker_finds_a_circle(tmp_path: Path) -> None:
    """The check itself can fail: two modules that import each other, one of them late, form a circle."""
    pkg = tmp_path / "infra"
    pkg.mkdir()
    (pkg / "__init__.py").write_text('"""x."""\n')
    (pkg / "a.py").write_text("from infra import b\n")
    (pkg / "b.py").write_text("def f():\n    from infra.a import g\n")
    graph = {module_name_in(tmp_path, p): set() for p in pkg.glob("*.py")}
    known = {module_name_in(tmp_path, p): p for p in pkg.glob("*.py")}
    for name, path in known.items():
        graph[name] = imported(path, name, known)
    assert find_cycle(graph) is not None


def module_name_in(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_import_circles_in_infra() -> None:
    cycle = find_cycle(import_graph(PACKAGE))
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_no_import_circles_in_stages() -> None:
    cycle = find_cycle(import_graph(REPO / "stages"))
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_modules_stay_small() -> None:
    big = {name: n for name, p in modules(PACKAGE).items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines: {big}"


def test_every_package_says_what_it_is() -> None:
    for init in PACKAGE.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc.splitlines()[0]) > 10, f"{init.relative_to(REPO)} has no one-line docstring"


def test_only_a_few_modules_outside_packages() -> None:
    """The package's top level holds the entry points and what every package shares, nothing else."""
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert top == ["__init__.py", "__main__.py", "errors.py", "jobproto.py", "resources.py", "workspace.py"], top


def test_only_the_engine_imports_python_on_whales() -> None:
    graph_files = modules(PACKAGE)
    users = [name for name, path in graph_files.items()
             if "python_on_whales" in path.read_text() and not name.startswith("infra.engine")]
    assert not users, f"python_on_whales used outside infra.engine: {users}"


# --- one job protocol ------------------------------------------------------------------------------------------

# What only the job protocol may define: its functions, its lock, its file and variable names, its atomic rename.
PROTOCOL_MARKERS = ("def locked_job(", "def write_text_atomic(", "def write_json_atomic(", "def update_stage_entry(",
                    "def model_cache(job", "def enqueue(", "def run_lock(", '".job.lock"', '"run.lock"', '"job.json"',
                    '"INFRA_CACHE"', "fcntl.flock(", "mkstemp(")


@pytest.mark.parametrize("marker", PROTOCOL_MARKERS)
def test_the_job_protocol_is_written_once(marker: str) -> None:
    """job.json's lock, the atomic writers, the stage-entry update, the model cache and the queue entry live in
    infra/jobproto.py alone: infra, the stage programs and the workers import it."""
    places = [str(p.relative_to(REPO)) for folder in ("infra", "stages") for p in (REPO / folder).rglob("*.py")
              if marker in p.read_text(encoding="utf-8")]
    assert places == ["infra/jobproto.py"], f"{marker!r} is written in {places}"


def test_stage_images_carry_the_protocol() -> None:
    """Every stage image copies infra/jobproto.py (with the import-free infra/__init__.py) beside the stage code."""
    from infra.render import default_layout, render_mode
    from infra.spec import load_stack

    stack = load_stack(REPO / "infra.yaml")
    for mode in ("docker-cpu", "docker-gpu"):
        files = render_mode(stack, mode, default_layout(stack, mode))
        for stage in stack.spec.stages.values():
            text = files[f"dockerfiles/{stage.image}.Dockerfile"]
            assert '"__init__.py", "jobproto.py", "/opt/infra/infra/"' in text, (mode, stage.image)


def test_the_job_protocol_needs_only_the_standard_library() -> None:
    import sys

    tree = ast.parse((PACKAGE / "jobproto.py").read_text())
    roots = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    roots |= {node.module.split(".")[0] for node in ast.walk(tree)
              if isinstance(node, ast.ImportFrom) and node.module and not node.level}
    assert roots <= set(sys.stdlib_module_names) | {"__future__"}, roots - set(sys.stdlib_module_names)
    init = ast.parse((PACKAGE / "__init__.py").read_text())
    assert not [n for n in ast.walk(init) if isinstance(n, (ast.Import, ast.ImportFrom))], \
        "infra/__init__.py must import nothing: the stage images carry it beside jobproto.py"


def test_the_architecture_doc_names_every_package_and_nothing_else() -> None:
    """docs/ARCHITECTURE.md's diagram and table speak of the folders that exist, and of all of them."""
    import re

    doc = (REPO / "docs" / "ARCHITECTURE.md").read_text()
    named = set(re.findall(r"(?<![.\w])infra/([a-z_]+)/", doc))
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert named == packages, f"named but missing: {named - packages}; missing from the doc: {packages - named}"
    files = set(re.findall(r"infra/([a-z_]+\.py)", doc))
    assert files <= {p.name for p in PACKAGE.glob("*.py")}, files
