"""docs/RENDER.md shows real output: every marked code block matches the file it names."""

from __future__ import annotations

import json
import re

from tests.conftest import REPO

BLOCK = re.compile(r"<!-- (file|excerpt|bake targets): (\S+) -->\n```\w*\n(.*?)\n```", re.S)


def refresh_file_blocks(doc: str) -> str:
    """The doc with every whole-file block replaced by the file's current text (for `--update-golden`)."""
    def fresh(match: re.Match[str]) -> str:
        kind, path, body = match.groups()
        if kind == "file":
            return match.group(0).replace(body, (REPO / path).read_text().rstrip("\n"), 1)
        if kind == "bake targets":
            targets = json.loads((REPO / path).read_text())["target"]
            shown = {name: targets[name] for name in json.loads(body)}
            return match.group(0).replace(body, json.dumps(shown, indent=2, sort_keys=True), 1)
        return match.group(0)

    return BLOCK.sub(fresh, doc)


def test_render_doc_blocks_match_the_files_they_name(update_golden: bool) -> None:
    path = REPO / "docs" / "RENDER.md"
    if update_golden:
        path.write_text(refresh_file_blocks(path.read_text()))
    doc = path.read_text()
    blocks = BLOCK.findall(doc)
    assert {kind for kind, _, _ in blocks} == {"file", "excerpt", "bake targets"}
    assert ("file", "tests/golden/default/docker-cpu/dockerfiles/asr.Dockerfile") in {(k, p) for k, p, _ in blocks}
    for kind, path, body in blocks:
        text = (REPO / path).read_text()
        if kind == "file":
            assert body + "\n" == text, f"docs/RENDER.md shows an old {path}"
        elif kind == "excerpt":
            assert body in text, f"docs/RENDER.md shows a passage that is no longer in {path}"
        else:
            targets = json.loads(text)["target"]
            for name, target in json.loads(body).items():
                assert targets[name] == target, f"docs/RENDER.md shows an old bake target {name}"
