"""The real spec against the in-memory engine: a stand-in native env, and images made current or stale."""

from __future__ import annotations

from pathlib import Path

from infra.build.plan import HASH_LABEL, plan_images, targets_for_mode
from infra.engine.fake import FakeEngine, probe_answer
from infra.spec import Stack
from infra.stack.readiness import render_to_disk

ENV_PYTHON = "3.11.7"
COMPATIBLE = probe_answer(python="3.11.2", dists={"numpy": "2.1.0"})      # same minor, no clashes
OLD_PYTHON = probe_answer(python="3.9.2")                                   # another minor version
CLASH = probe_answer(python="3.11.2", dists={"torch": "2.1.0"})             # torch at another version


def make_native_env(stack: Stack, dists: dict[str, str] | None = None) -> Path:
    """An empty virtualenv where the spec's native_env.path points: pyvenv.cfg and dist-info folders only."""
    root = stack.workdir / stack.spec.native_env.path
    site = root / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    (root / "pyvenv.cfg").write_text(f"home = /usr/bin\nversion_info = {ENV_PYTHON}.final.0\n")
    for name, version in (dists or {"torch": "2.13.0+cpu", "numpy": "2.1.0"}).items():
        (site / f"{name}-{version}.dist-info").mkdir()
    return root


def spec_engine(stack: Stack, mode: str, current: bool = True, except_: tuple[str, ...] = (),
                **options: object) -> FakeEngine:
    """A fake engine with the mode's base and, when ``current``, every image of the mode built from the
    spec as it is now, but for the images in ``except_`` (absent)."""
    engine = FakeEngine({stack.base_ref(mode): {"io.infra.base": "bookworm"}}, **options)  # type: ignore[arg-type]
    if current:
        targets = targets_for_mode(stack, mode, render_to_disk(stack, mode).out)  # type: ignore[arg-type]
        plan = plan_images(targets, lambda ref: None)
        for name, planned in plan.images.items():
            if name not in except_:
                engine.add_image(planned.target.ref, {HASH_LABEL: planned.content_hash})
    engine.calls.clear()
    return engine
