"""What each image's apt line installs, asked of apt itself in a throw-away container of the mode's base.

One container per base: it prints what the base's Python and C library are (the pip side of
`infra lock` resolves wheels for them), runs ``apt-get update`` once, then, for every image
with an apt line, ``apt-get install --simulate`` of the apt lines of the image and all its
ancestors. apt answers with an ``Inst`` line per package and the exact version it would take,
dependencies included; an image pins what its own simulation adds over its parent's.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from infra.engine.capture import Captured
from infra.errors import BadInputError, OperationError

MARK = "@@infra-lock"
# Inst NAME [OLD] (VERSION RELEASE [ARCH]): a package apt would install, or upgrade from OLD.
INST_RE = re.compile(r"^Inst (\S+) (?:\[[^\]]*\] )?\((\S+) ")
FACTS = ("import platform, sys; "
         "print('%d.%d' % sys.version_info[:2], platform.libc_ver()[1] or '-', platform.machine())")
Runner = Callable[[str, list[str]], Captured]     # (image ref, command) -> what it printed


@dataclass(frozen=True)
class BaseFacts:
    """The base image's Python (major.minor), C library version and machine, as far as it has them."""

    python: str | None = None
    glibc: tuple[int, int] | None = None
    machine: str | None = None


@dataclass(frozen=True)
class AptAnswer:
    facts: BaseFacts
    installs: dict[str, dict[str, str]]   # image -> every package its simulation installs -> version


def apt_script(simulate: Mapping[str, list[str]]) -> str:
    """The shell the container runs: the facts, one ``apt-get update``, one simulation per image."""
    lines = [
        f"echo \"{MARK} facts $(python3 -c {shlex.quote(FACTS)} 2>/dev/null || echo - - -)\"",
        "export DEBIAN_FRONTEND=noninteractive",
    ]
    if simulate:
        lines.append("apt-get -q update >/dev/null || exit 3")
    for name, packages in simulate.items():
        words = " ".join(shlex.quote(p) for p in packages)
        lines.append(f"echo {MARK} image {shlex.quote(name)}")
        lines.append(f"apt-get install --simulate --no-install-recommends -q {words} 2>&1 || echo {MARK} failed")
    return "\n".join(lines) + "\n"


def parse_answer(stdout: str) -> tuple[BaseFacts, dict[str, list[str]]]:
    """The facts, and each image's section of the output (its lines, a final ``failed`` when apt refused)."""
    facts = BaseFacts()
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in stdout.splitlines():
        if line.startswith(f"{MARK} facts "):
            facts = _facts(line.removeprefix(f"{MARK} facts ").split())
        elif line.startswith(f"{MARK} image "):
            current = sections.setdefault(line.removeprefix(f"{MARK} image ").strip(), [])
        elif line.startswith(f"{MARK} failed") and current is not None:
            current.append("failed")
        elif current is not None:
            current.append(line)
    return facts, sections


def _facts(words: list[str]) -> BaseFacts:
    if len(words) != 3:
        return BaseFacts()
    python, libc, machine = words
    glibc = None
    match = re.match(r"^(\d+)\.(\d+)", libc)
    if match:
        glibc = (int(match.group(1)), int(match.group(2)))
    return BaseFacts(python if re.match(r"^\d+\.\d+$", python) else None, glibc, None if machine == "-" else machine)


def installs(lines: list[str]) -> dict[str, str]:
    """Package -> version of every ``Inst`` line of one simulation."""
    found = {}
    for line in lines:
        match = INST_RE.match(line)
        if match:
            found[match.group(1)] = match.group(2)
    return found


def ask_apt(ref: str, simulate: Mapping[str, list[str]], run: Runner, where: Mapping[str, str]) -> AptAnswer:
    """Run the simulations of ``simulate`` (image -> its and its ancestors' apt packages) in ``ref``.

    ``where`` names each image's file for errors. A package apt does not know is bad input (exit 2)
    naming the image; an archive it cannot reach is an OperationError."""
    result = run(ref, ["sh", "-c", apt_script(simulate)])
    if result.code == 3:
        last = next((line for line in reversed(result.stderr.splitlines()) if line.strip()), "no output")
        raise OperationError(f"apt-get update in {ref} failed: {last.strip()}",
                             hint="containers must reach the base's Debian archive (its sources.list); "
                                  "check the network, or set bases.<name>.debootstrap.mirror")
    if result.code != 0:
        raise OperationError(f"resolving apt packages in {ref} failed (exit {result.code}): "
                             f"{(result.stderr.strip().splitlines() or ['no output'])[-1]}")
    facts, sections = parse_answer(result.stdout)
    found = {}
    for name in simulate:
        lines = sections.get(name)
        if lines is None:
            raise OperationError(f"resolving apt packages in {ref}: no answer for image '{name}'")
        if lines and lines[-1] == "failed":
            error = next((line for line in lines if line.startswith("E:")), lines[-2] if len(lines) > 1 else "")
            raise BadInputError(f"{where[name]}: apt: {error.removeprefix('E:').strip() or 'apt-get refused'} "
                                f"(in {ref})")
        found[name] = installs(lines)
    return AptAnswer(facts, found)


def added_pins(order: list[str], parents: Mapping[str, str | None],
               answer: Mapping[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """Per image (parents first), the packages it adds over its parent: those its simulation installs at
    another version than the parent's (or that the parent lacks). An image without its own simulation
    adds nothing and holds what its parent holds."""
    held: dict[str, dict[str, str]] = {}
    pins: dict[str, dict[str, str]] = {}
    for name in order:
        parent = parents[name]
        before = held.get(parent, {}) if parent is not None else {}
        after = answer.get(name, before)
        held[name] = {**before, **after}
        pins[name] = {pkg: version for pkg, version in sorted(after.items()) if before.get(pkg) != version}
    return pins
