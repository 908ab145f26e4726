"""The compatibility check's rules on environments laid out on disk and image facts as a probe reports them."""

from __future__ import annotations

from pathlib import Path

from infra.stack.nativeenv import ImageFacts, check_compatible, inspect_env, refusal


def env_with(root: Path, wheels: dict[str, tuple[str, list[str]]], python: str = "3.11.7") -> Path:
    """A virtualenv layout: dist-info folders whose WHEEL files carry the given tags."""
    minor = ".".join(python.split(".")[:2])
    site = root / "lib" / f"python{minor}" / "site-packages"
    site.mkdir(parents=True)
    (root / "pyvenv.cfg").write_text(f"version_info = {python}.final.0\n")
    for name, (version, tags) in wheels.items():
        info = site / f"{name}-{version}.dist-info"
        info.mkdir()
        (info / "WHEEL").write_text("Wheel-Version: 1.0\n" + "".join(f"Tag: {t}\n" for t in tags))
    return root


def image(python: str = "3.11.2", machine: str = "x86_64", glibc: tuple[int, int] = (2, 36),
          dists: dict[str, str] | None = None) -> ImageFacts:
    return ImageFacts("speech-asr:latest", "sha256:0", python, machine, glibc, dists or {})


TORCH = {"torch": ("2.13.0+cpu", ["cp311-cp311-manylinux_2_28_x86_64"]),
         "numpy": ("2.3.0", ["cp311-cp311-manylinux_2_17_x86_64", "cp311-cp311-manylinux2014_x86_64"]),
         "six": ("1.17.0", ["py2.py3-none-any"])}


def test_a_matching_env_passes(tmp_path: Path) -> None:
    env = inspect_env(env_with(tmp_path, TORCH))
    assert env.glibc_required() == ((2, 28), "torch")
    assert check_compatible(env, image(dists={"numpy": "2.3.0", "pip": "23.0.1"})) == []


def test_python_minor_mismatch(tmp_path: Path) -> None:
    env = inspect_env(env_with(tmp_path, TORCH))
    [problem] = check_compatible(env, image(python="3.13.5"))
    assert problem.startswith("Python 3.13 in the image, 3.11 in the environment")


def test_foreign_os_and_architecture(tmp_path: Path) -> None:
    mac = inspect_env(env_with(tmp_path / "mac", {"torch": ("2.13.0", ["cp311-none-macosx_11_0_arm64"])}))
    problems = check_compatible(mac, image())
    assert any("macos packages" in p for p in problems) and any("aarch64 packages" in p for p in problems)
    arm = inspect_env(env_with(tmp_path / "arm", {"torch": ("2.13.0", ["cp311-cp311-manylinux_2_28_aarch64"])}))
    assert check_compatible(arm, image()) == ["the environment holds aarch64 packages; the image is x86_64"]


def test_glibc_older_than_a_wheel_needs(tmp_path: Path) -> None:
    env = inspect_env(env_with(tmp_path, TORCH))
    assert check_compatible(env, image(glibc=(2, 27))) == ["torch needs glibc 2.28; the image has 2.27"]
    local = inspect_env(env_with(tmp_path / "built", {"mylib": ("1.0", ["cp311-cp311-linux_x86_64"])}))
    assert check_compatible(local, image(glibc=(2, 36)), host_glibc=(2, 39)) == \
        ["mylib needs glibc 2.39; the image has 2.36"], "a wheel built here needs the host's glibc"


def test_a_package_in_both_at_different_versions(tmp_path: Path) -> None:
    env = inspect_env(env_with(tmp_path, TORCH))
    [problem] = check_compatible(env, image(dists={"numpy": "1.26.4", "six": "1.17.0", "setuptools": "66.1.1"}))
    assert problem == "installed in both at different versions: numpy 1.26.4 (image) vs 2.3.0 (environment)"


def test_the_refusal_names_both_ways_out(tmp_path: Path) -> None:
    env = inspect_env(env_with(tmp_path, TORCH))
    facts = image(python="3.13.5")
    error = refusal(env, facts, check_compatible(env, facts))
    assert error.exit_code == 2
    assert error.message.startswith(f"speech-asr:latest cannot load the native environment {tmp_path}: Python 3.13")
    assert "infra build" in error.hint and "torch: baked" in error.hint
