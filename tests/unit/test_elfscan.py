"""The ELF reader and the library closure (infra/stack/elfscan.py) on shared objects that gcc builds here: what a
file links (DT_NEEDED), where it looks (RPATH, RUNPATH, LD_LIBRARY_PATH), the CUDA libraries named in its data
(what it opens with dlopen), alternatives, unversioned names, optional and host-provided libraries."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from infra.stack import elfscan



def require_gcc() -> None:
    """gcc builds the shared objects; scripts/setup.sh --test installs it (under CI=true its absence fails)."""
    if shutil.which("gcc") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("gcc is not installed: scripts/setup.sh --test installs it")
        pytest.skip("needs gcc (scripts/setup.sh --test installs it)")


def build(folder: Path, file: str, soname: str | None = None, links: list[Path] = (), rpath: str | None = None,
          runpath: str | None = None, strings: list[str] = ()) -> Path:
    """A shared object ``folder/file`` that links ``links`` and holds ``strings`` as constants in .rodata."""
    require_gcc()
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / f"{file}.c"
    body = "".join(f'__attribute__((used)) static const char s{i}[] = "{s}";\n' for i, s in enumerate(strings))
    source.write_text(body + "int value(void) { return 1; }\n")
    cmd = ["gcc", "-shared", "-fPIC", "-O0", "-o", str(folder / file), str(source),
           f"-Wl,-soname,{soname or file}", "-Wl,--no-as-needed", *map(str, links)]
    if rpath:
        cmd += [f"-Wl,-rpath,{rpath}", "-Wl,--disable-new-dtags"]
    if runpath:
        cmd += [f"-Wl,-rpath,{runpath}", "-Wl,--enable-new-dtags"]
    subprocess.run(cmd, check=True, capture_output=True)
    source.unlink()
    return folder / file


def test_reads_needed_rpath_runpath_and_the_cuda_names_in_its_data(tmp_path: Path) -> None:
    dep = build(tmp_path / "b", "libdep.so.1")
    one = build(tmp_path / "a", "libone.so", links=[dep], rpath="$ORIGIN/../b",
                strings=["libcublas.so.12", "libcudnn.so bindings", "libnvrtc.so.", "/usr/lib/libcuda.so.1"])
    two = build(tmp_path / "a", "libtwo.so", links=[dep], runpath="$ORIGIN/../b")
    elf = elfscan.read_elf(str(one))
    assert elf is not None
    assert "libdep.so.1" in elf.needed and "libc.so.6" in elf.needed
    assert elf.rpath == ["$ORIGIN/../b"] and elf.runpath == []
    # whole strings only: text that merely starts with a name, or a prefix the code completes, is no dlopen
    assert elf.opened == ["libcublas.so.12", "libcuda.so.1"]
    other = elfscan.read_elf(str(two))
    assert other is not None and other.runpath == ["$ORIGIN/../b"] and other.rpath == []
    assert elfscan.read_elf(str(tmp_path / "a" / "missing.so")) is None
    (tmp_path / "text.so").write_text("not an ELF file")
    assert elfscan.read_elf(str(tmp_path / "text.so")) is None


def test_closure_finds_what_the_loader_would_and_names_what_it_would_not(tmp_path: Path) -> None:
    dep = build(tmp_path / "b", "libdep.so.1")
    root = build(tmp_path / "pkg", "libroot.so", links=[dep], runpath="$ORIGIN/../b",
                 strings=["libcublas.so.12", "libcuda.so.1", "libnvidia-ml.so.1"])
    result = elfscan.closure([str(root)], library_path=[])
    assert [m["library"] for m in result["missing"]] == ["libcublas.so.12"]
    missing = result["missing"][0]
    assert missing["how"] == "dlopen" and missing["needed_by"] == str(root)
    assert result["host"] == ["libcuda.so.1", "libnvidia-ml.so.1"], "the driver's libraries come from the host"

    cublas = build(tmp_path / "nvidia" / "cublas" / "lib", "libcublas.so.12", strings=["libcublasLt.so.12"])
    found = elfscan.closure([str(root)], library_path=[str(cublas.parent)])
    assert [m["library"] for m in found["missing"]] == ["libcublasLt.so.12"], "what a found library opens counts too"
    build(cublas.parent, "libcublasLt.so.12")
    assert elfscan.closure([str(root)], library_path=[str(cublas.parent)])["missing"] == []


def test_a_needed_library_off_every_path_is_missing(tmp_path: Path) -> None:
    dep = build(tmp_path / "elsewhere", "libdep.so.1")
    root = build(tmp_path / "pkg", "libroot.so", links=[dep])          # no RPATH or RUNPATH to find it
    result = elfscan.closure([str(root)], library_path=[])
    assert result["missing"] == [{"library": "libdep.so.1", "needed_by": str(root), "how": "needed",
                                  "alternatives": ["libdep.so.1"]}]
    assert elfscan.closure([str(root)], library_path=[str(dep.parent)])["missing"] == []


def test_rpath_is_searched_before_ld_library_path_and_runpath_after(tmp_path: Path) -> None:
    """ld.so's order: RPATH (only without RUNPATH), LD_LIBRARY_PATH, RUNPATH. A 32-bit or foreign file
    of the right name is skipped like the loader skips it."""
    near = build(tmp_path / "near", "libdep.so.1", strings=["libcufft.so.11"])
    far = build(tmp_path / "far", "libdep.so.1", strings=["libcurand.so.10"])
    with_rpath = build(tmp_path / "pkg", "librp.so", links=[near], rpath=str(near.parent))
    with_runpath = build(tmp_path / "pkg", "librun.so", links=[near], runpath=str(near.parent))
    first = elfscan.closure([str(with_rpath)], library_path=[str(far.parent)])
    assert [m["library"] for m in first["missing"]] == ["libcufft.so.11"], "RPATH wins over LD_LIBRARY_PATH"
    second = elfscan.closure([str(with_runpath)], library_path=[str(far.parent)])
    assert [m["library"] for m in second["missing"]] == ["libcurand.so.10"], "LD_LIBRARY_PATH wins over RUNPATH"


def test_unversioned_names_alternatives_and_optional_libraries(tmp_path: Path) -> None:
    lib = tmp_path / "nvidia" / "cudnn" / "lib"
    build(lib, "libcudnn_graph.so.9")
    cudnn = build(lib, "libcudnn.so.9", runpath="$ORIGIN", strings=["libcudnn_graph.so"])   # it adds the major
    root = build(tmp_path / "pkg", "libroot.so", links=[cudnn], runpath=str(lib),
                 strings=["libnvrtc.so.12", "libnvrtc.so.13"])
    nvrtc = build(tmp_path / "nvidia" / "cuda_nvrtc" / "lib", "libnvrtc.so.12")
    result = elfscan.closure([str(root)], library_path=[str(nvrtc.parent)])
    assert result["missing"] == [], "one version of a library named in several is enough"
    assert elfscan.Resolver.versions(str(lib), "libcudnn_graph.so") == [str(lib / "libcudnn_graph.so.9")]
    (lib / "libcudnn_graph.so.9").unlink()
    assert [m["library"] for m in elfscan.closure([str(root)], [str(nvrtc.parent)])["missing"]] == ["libcudnn_graph.so"]

    helper = build(tmp_path / "ctranslate2.libs", "libctranslate2-0a1b2c3d.so.4", strings=["libnccl.so.2"])
    optional = elfscan.closure([str(helper)], library_path=[])
    assert optional["missing"] == []
    assert "tensor parallelism" in optional["optional"]["libnccl.so.2"]


def test_package_needs_reads_the_cuda_and_cudnn_majors(tmp_path: Path) -> None:
    pkg = tmp_path / "ctranslate2"
    build(pkg, "_ext.so", strings=[])
    build(tmp_path / "ctranslate2.libs", "libctranslate2-0a1b2c3d.so.4",
          strings=["libcublas.so.12", "libcudnn.so.9", "libcufft.so.11", "libcuda.so.1"])
    needs = elfscan.package_needs(str(pkg))
    assert needs["cuda"] == [12] and needs["cudnn"] == [9], "libcufft numbers itself: not a CUDA major"
    assert "libcublas.so.12" in needs["libraries"]
    assert elfscan.cuda_majors(["libcudart.so.13", "libcublasLt.so.12", "libcusolver.so.11"]) == ([12, 13], [])
