"""Which shared libraries the GPU packages load, and where the dynamic loader would find each one.

Standard library only: infra reads the CUDA majors of a native environment
with it on the host, and the library closure check (infra/stack/libclosure.py)
runs this very file with ``python3 -c`` inside a stage image, where infra is
not installed. It never loads a library and needs no GPU.

For every ELF file of a package (``torch/lib/*.so``, ``ctranslate2.libs/...``)
it reads the dynamic section (DT_NEEDED, DT_RPATH, DT_RUNPATH) and, for the
libraries opened at run time with dlopen, the CUDA library names written in
the file's read-only data (``libcublas.so.12`` in libctranslate2, cuDNN's
``libcudnn_graph.so.9`` in libcudnn.so.9). Each name is then resolved the way
ld.so does: the object's RPATH chain (without RUNPATH), LD_LIBRARY_PATH, its
RUNPATH, then the system folders; and what is found is read in turn. Names a
file lists as alternatives (the same library, several versions) count as
found when one of them is. Only what the NVIDIA container runtime injects
(the driver: libcuda.so.1, libnvidia-*) may come from the host.
"""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
from dataclasses import dataclass, field

# CUDA-family names: the toolkit's libraries, cuDNN, NCCL, and the driver's.
CUDA_NAME = re.compile(rb"lib(?:cu|nv|nccl)[A-Za-z0-9_+.-]*?\.so(?:\.[0-9]+)*")
# Such a name as a whole string of a file's data (after a NUL or a folder, up to a NUL): what dlopen gets.
# Names inside longer text ("libcudnn.so bindings") or prefixes the code completes ("libnvrtc.so.") are not.
CUDA_STRING = re.compile(rb"(?<=[\x00/])" + CUDA_NAME.pattern + rb"(?=\x00)")
# What the NVIDIA container runtime (or the host's driver natively) provides: never looked for in an image.
HOST_PROVIDED = re.compile(r"^(libcuda\.so|libcudadebugger\.so|libnvidia-|libnvcuvid\.so|libnvoptix\.so)")
# Libraries whose soname major is the CUDA major (libcufft, libcurand, libcusolver number themselves).
CUDA_MARKERS = re.compile(
    r"^lib(cudart|cublas|cublasLt|nvrtc|nvrtc-builtins|nvJitLink|cupti)\.so\.([0-9]+)(\.[0-9]+)?$")
CUDNN_MARKER = re.compile(r"^libcudnn\.so\.([0-9]+)$")
# Libraries a caller opens only for features the stages never use, and runs on without: (caller, library) stems.
OPTIONAL = {
    ("libctranslate2", "libnccl"): "CTranslate2 opens NCCL for tensor parallelism only, which the asr stage "
                                   "never asks for",
    ("libcufile", "libcufile_rdma"): "cuFile's RDMA plugin, for GPUDirect Storage over InfiniBand; without it "
                                     "cuFile disables that capability and carries on",
    ("libcufile", "libcufile_ck"): "cuFile's optional concurrency library; cuFile carries on without it",
    ("libcudnn_graph", "libcudnn_engines_tensor_ir"): "named by cuDNN 9.20's graph library among the engines it "
                                                      "loads when present; the cuDNN wheel does not ship it",
}
DT_NEEDED, DT_STRTAB, DT_STRSZ, DT_SONAME, DT_RPATH, DT_RUNPATH = 1, 5, 10, 14, 15, 29
PT_LOAD, PT_DYNAMIC = 1, 2
MAX_RODATA = 512 * 1024 * 1024


@dataclass
class Elf:
    path: str
    machine: int
    needed: list[str] = field(default_factory=list)
    rpath: list[str] = field(default_factory=list)
    runpath: list[str] = field(default_factory=list)
    opened: list[str] = field(default_factory=list)       # CUDA libraries named in its data (dlopen)


def read_elf(path: str) -> Elf | None:
    """The dynamic facts of a 64-bit little-endian ELF file; None for anything else."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
                return None
            (machine,) = struct.unpack_from("<H", head, 18)
            phoff, shoff = struct.unpack_from("<QQ", head, 32)
            phentsize, phnum, shentsize, shnum, shstrndx = struct.unpack_from("<HHHHH", head, 54)
            elf = Elf(path, machine)
            f.seek(phoff)
            phdrs = [struct.unpack_from("<IIQQQQQQ", f.read(phentsize)) for _ in range(phnum)]
            loads = [(p[3], p[2], p[5]) for p in phdrs if p[0] == PT_LOAD]       # vaddr, offset, filesz
            dynamic = next((p for p in phdrs if p[0] == PT_DYNAMIC), None)
            if dynamic is not None:
                _read_dynamic(f, elf, dynamic[2], dynamic[5], loads)
            elf.opened = _named_libraries(f, shoff, shentsize, shnum, shstrndx)
            return elf
    except (OSError, struct.error):
        return None


def _read_dynamic(f, elf: Elf, offset: int, size: int, loads: list[tuple[int, int, int]]) -> None:  # noqa: ANN001
    f.seek(offset)
    raw = f.read(size)
    entries = [struct.unpack_from("<qQ", raw, i) for i in range(0, len(raw) - 15, 16)]
    values: dict[int, list[int]] = {}
    for tag, value in entries:
        if tag == 0:
            break
        values.setdefault(tag, []).append(value)
    strtab = next(iter(values.get(DT_STRTAB, [])), None)
    if strtab is None:
        return
    base = next((off + strtab - vaddr for vaddr, off, filesz in loads if vaddr <= strtab < vaddr + filesz), strtab)
    f.seek(base)
    table = f.read(next(iter(values.get(DT_STRSZ, [])), 0) or 1 << 20)

    def text(at: int) -> str:
        return table[at:table.index(b"\0", at)].decode("utf-8", "replace")

    elf.needed = [text(v) for v in values.get(DT_NEEDED, [])]
    elf.rpath = [p for v in values.get(DT_RPATH, []) for p in text(v).split(":") if p]
    elf.runpath = [p for v in values.get(DT_RUNPATH, []) for p in text(v).split(":") if p]


def _named_libraries(f, shoff: int, shentsize: int, shnum: int, shstrndx: int) -> list[str]:  # noqa: ANN001
    """CUDA library names in .rodata: what the file passes to dlopen (its own soname aside)."""
    if not shoff or not shnum or shstrndx >= shnum:
        return []
    f.seek(shoff)
    sections = [struct.unpack_from("<IIQQQQIIQQ", f.read(shentsize)) for _ in range(shnum)]
    names_at, names_size = sections[shstrndx][4], sections[shstrndx][5]
    f.seek(names_at)
    names = f.read(names_size)
    found: set[str] = set()
    for sec in sections:
        name = names[sec[0]:names.index(b"\0", sec[0])]
        if name == b".rodata" and sec[1] != 8 and sec[5] <= MAX_RODATA:      # 8: SHT_NOBITS
            f.seek(sec[4])
            found.update(m.decode() for m in CUDA_STRING.findall(b"\0" + f.read(sec[5])))
    return sorted(found)


def stem(name: str) -> str:
    """'libnvrtc.so.12' -> 'libnvrtc': names with one stem are one library's versions."""
    return name.split(".so", 1)[0]


def system_dirs() -> list[str]:
    """Where ld.so looks last: the folders of ld.so.cache (ldconfig -p), then the trusted defaults."""
    found: list[str] = []
    try:
        out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, timeout=30).stdout
        found = [line.rsplit("=>", 1)[1].strip().rsplit("/", 1)[0] for line in out.splitlines() if "=>" in line]
    except (OSError, subprocess.SubprocessError):
        pass
    import platform

    triplet = f"{platform.machine()}-linux-gnu"
    defaults = [f"/lib/{triplet}", f"/usr/lib/{triplet}", "/lib64", "/usr/lib64", "/lib", "/usr/lib"]
    return list(dict.fromkeys(found + defaults))


class Resolver:
    def __init__(self, library_path: list[str], system: list[str]) -> None:
        self.library_path = library_path
        self.system = system
        self.elves: dict[str, Elf | None] = {}

    def elf(self, path: str) -> Elf | None:
        real = os.path.realpath(path)
        if real not in self.elves:
            self.elves[real] = read_elf(real)
        return self.elves[real]

    def find(self, name: str, caller: Elf, chain: list[str]) -> str | None:
        """Where ld.so finds ``name`` for ``caller`` (``chain``: the RPATHs of the objects that loaded it)."""
        if "/" in name:
            return name if os.path.isfile(name) else None
        origin = os.path.dirname(caller.path)
        expand = [p.replace("$ORIGIN", origin).replace("${ORIGIN}", origin) for p in
                  ([] if caller.runpath else caller.rpath + chain)]
        after = [p.replace("$ORIGIN", origin).replace("${ORIGIN}", origin) for p in caller.runpath]
        for folder in [*expand, *self.library_path, *after, *self.system]:
            for candidate in [os.path.join(folder, name), *self.versions(folder, name)]:
                if os.path.isfile(candidate):
                    other = self.elf(candidate)
                    if other is not None and other.machine == caller.machine:
                        return os.path.normpath(candidate)
        return None

    @staticmethod
    def versions(folder: str, name: str) -> list[str]:
        """For an unversioned name (libcudnn_graph.so, the development link that wheels never ship), the
        versioned files of that library in ``folder``, newest first: the code that names it adds the
        version (cuDNN opens its parts by their major)."""
        if not name.endswith(".so"):
            return []
        try:
            found = [f for f in os.listdir(folder) if re.fullmatch(re.escape(name) + r"(\.[0-9]+)+", f)]
        except OSError:
            return []
        newest = sorted(found, key=lambda f: [int(x) for x in f[len(name) + 1:].split(".")], reverse=True)
        return [os.path.join(folder, f) for f in newest]


def closure(roots: list[str], library_path: list[str], system: list[str] | None = None) -> dict:
    """Walk everything ``roots`` load: {'missing': [...], 'host': [...], 'optional': {...}, 'objects': n}."""
    resolver = Resolver(library_path, system if system is not None else system_dirs())
    missing: dict[str, dict] = {}
    optional: dict[str, str] = {}
    host: set[str] = set()
    seen: set[str] = set()
    todo = [(r, []) for r in roots]
    while todo:
        path, chain = todo.pop()
        real = os.path.realpath(path)
        if real in seen:
            continue
        seen.add(real)
        elf = resolver.elf(real)
        if elf is None:
            continue
        elf.path = path
        groups: dict[str, list[str]] = {}
        for name in elf.opened:
            if not name.startswith(stem(os.path.basename(path)) + ".so"):
                groups.setdefault(stem(name), []).append(name)
        wanted = [(n, "needed", [n]) for n in elf.needed] + [(g[0], "dlopen", g) for g in groups.values()]
        for name, how, alternatives in wanted:
            if HOST_PROVIDED.match(name):
                host.add(name)
                continue
            found = next((p for p in (resolver.find(a, elf, chain) for a in sorted(alternatives, reverse=True)) if p),
                         None)
            reason = next((why for (who, lib), why in OPTIONAL.items()
                           if how == "dlopen" and os.path.basename(path).startswith(who) and stem(name) == lib), None)
            if reason is not None:
                if found is None:
                    optional[name] = reason
                continue                                   # not followed either: its own needs are optional too
            if found is None:
                missing.setdefault(name, {"library": name, "needed_by": path, "how": how,
                                          "alternatives": sorted(alternatives)})
            else:
                todo.append((found, chain + ([] if elf.runpath else [
                    p.replace("$ORIGIN", os.path.dirname(path)) for p in elf.rpath])))
    return {"missing": sorted(missing.values(), key=lambda m: m["library"]), "host": sorted(host),
            "optional": dict(sorted(optional.items())), "objects": len(seen)}


def package_files(folder: str) -> list[str]:
    """The shared objects of a package folder (and of its auditwheel '<name>.libs' sibling)."""
    found = []
    for place in (folder, folder.rstrip("/") + ".libs"):
        for root, _dirs, files in os.walk(place):
            found.extend(os.path.join(root, f) for f in files if re.search(r"\.so(\.[0-9]+)*$", f))
    return sorted(found)


def cuda_majors(names: list[str]) -> tuple[list[int], list[int]]:
    """The CUDA and cuDNN majors that these library names belong to."""
    cuda = {int(m.group(2)) for m in map(CUDA_MARKERS.match, names) if m}
    cudnn = {int(m.group(1)) for m in map(CUDNN_MARKER.match, names) if m}
    return sorted(cuda), sorted(cudnn)


def package_needs(folder: str) -> dict:
    """What a package's own files ask for: the CUDA libraries they need or open, and their majors."""
    names: set[str] = set()
    for path in package_files(folder):
        elf = read_elf(path)
        if elf is not None:
            names.update(n for n in elf.needed + elf.opened if CUDA_NAME.fullmatch(n.encode()))
    cuda, cudnn = cuda_majors(sorted(names))
    return {"libraries": sorted(names), "cuda": cuda, "cudnn": cudnn}


def probe(packages: list[str]) -> dict:
    """Run inside an image: where python finds each package, what it needs, and the closure of its files."""
    import importlib.util

    library_path = [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(":") if p]
    found, roots = {}, []
    for name in packages:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            continue
        folder = list(spec.submodule_search_locations)[0]
        found[name] = {"location": folder, **package_needs(folder)}
        roots.extend(package_files(folder))
    result = closure(roots, library_path)
    result.update({"packages": found, "library_path": library_path})
    return result


if __name__ == "__main__":
    print(json.dumps(probe(json.loads(sys.argv[1]) if len(sys.argv) > 1 else ["torch", "ctranslate2"])))
