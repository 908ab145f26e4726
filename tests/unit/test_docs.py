"""docs/RENDER.md shows real output: every marked code block matches the file it names."""

from __future__ import annotations

import json
import re

from tests.conftest import REPO

BLOCK = re.compile(r"<!-- (file|excerpt|bake targets): (\S+) -->\n```\w*\n(.*?)\n```", re.S)


def test_render_doc_blocks_match_the_files_they_name() -> None:
    doc = (REPO / "docs" / "RENDER.md").read_text()
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
