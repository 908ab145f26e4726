"""How `infra serve` names an upload and confines a path to the workspace (infra/serve/intake.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.errors import BadInputError
from infra.serve.intake import NAME_MAX, NotFoundError, confined, upload_name


@pytest.mark.parametrize(("given", "kept"), [
    ("film.mp4", "film.mp4"), ("../../etc/passwd", "passwd"), ("..", "upload"), ("", "upload"),
    ("..\\..\\win.mkv", "win.mkv"), ("/abs/path/a b.mp4", "a b.mp4"), ("naïve;rm -rf.mp4", "na_ve_rm -rf.mp4"),
    (" .hidden.mp4. ", "hidden.mp4"), ("a\0b.mp4", "a_b.mp4"), ("x\ny.mp4", "x_y.mp4"),
])
def test_an_upload_keeps_only_a_plain_last_name(given: str, kept: str) -> None:
    assert upload_name(given) == kept


def test_a_long_name_is_cut_and_keeps_its_extension() -> None:
    name = upload_name("a" * 500 + ".mkv")
    assert len(name) == NAME_MAX and name.endswith(".mkv")
    assert len(upload_name("b" * 500)) == NAME_MAX


def test_paths_are_confined_after_links_are_followed(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / "in").mkdir(parents=True)
    (ws / "in" / "film.mp4").write_bytes(b"x")
    (ws / "config").mkdir()
    (ws / "config" / "secrets.json").write_text("{}")
    (tmp_path / "outside.mp4").write_bytes(b"x")
    (ws / "in" / "out.mp4").symlink_to(tmp_path / "outside.mp4")
    (ws / "in" / "inner.mp4").symlink_to(ws / "in" / "film.mp4")
    (ws / "loop").symlink_to(ws / "loop")
    secret = ws / "config" / "secrets.json"
    assert confined(ws, "in/film.mp4") == (ws / "in" / "film.mp4").resolve()
    assert confined(ws, str(ws / "in" / "film.mp4")) == (ws / "in" / "film.mp4").resolve()
    assert confined(ws, "in/inner.mp4") == (ws / "in" / "film.mp4").resolve()
    for outside in ("../outside.mp4", str(tmp_path / "outside.mp4"), "in/out.mp4", "in/../../outside.mp4", ".", "/"):
        with pytest.raises(BadInputError, match="not inside the workspace") as caught:
            confined(ws, outside)
        assert not isinstance(caught.value, NotFoundError)
    for missing in ("in/none.mp4", "in", "config/secrets.json"):
        with pytest.raises(NotFoundError):
            confined(ws, missing, never=(secret,))
    for broken in ("a\0b", "x" * 5000 + "/y", "loop/x"):
        with pytest.raises(BadInputError):
            confined(ws, broken)
