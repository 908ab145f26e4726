"""Load the stack spec from disk: YAML, pydantic validation, cross-file checks.

Every problem becomes one line that names the file and the dotted path, e.g.
``images/asr/image.yaml: parent: unknown image 'base-mll' (known: base, base-ml)``.
All problems are collected before anything is raised, so one run shows them all.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.spec.lock import Lock, lock_path, read_lock
from infra.spec.models import NAME_RE, ImageSpec, ProjectSpec
from infra.spec.modes import Mode, check_mode
from infra.errors import ConfigError
from infra.resources import data_root

SPEC_FILE = "infra.yaml"
IMAGE_FILE = "image.yaml"
OVERLAY_DIR = "compose"          # the user's compose overlays, beside infra.yaml
OVERLAY_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class ComposeOverlay:
    """One of the user's compose overlay files, parsed: merged over the rendered compose and swarm files."""

    file: str                    # as messages name it, e.g. compose/docker-gpu/nas.yaml
    mode: str | None             # the one mode it is for (compose/<mode>/), or None: every mode
    data: dict[str, Any]


@dataclass(frozen=True)
class Stack:
    """A validated spec: the project settings plus every image, and where they came from."""

    spec: ProjectSpec
    images: dict[str, ImageSpec]
    spec_path: Path
    workdir: Path = field(compare=False)
    embedded: bool = False
    overlays: tuple[ComposeOverlay, ...] = ()   # all-mode files first, then per-mode ones; each in file-name order
    lock: Lock | None = field(default=None, compare=False)   # infra.lock beside the spec, when there is one

    @property
    def root(self) -> Path:
        """The folder holding infra.yaml; images/ and templates are found from here."""
        return self.spec_path.parent

    @property
    def images_dir(self) -> Path:
        return self.root / self.spec.images_dir

    def images_for_mode(self, mode: Mode) -> list[str]:
        """Image names built in ``mode``, parents before children, ties by name."""
        from graphlib import TopologicalSorter

        graph = {n: ({i.parent} if i.parent else set()) for n, i in self.images.items() if mode in i.modes}
        return [n for n in TopologicalSorter(graph).static_order() if n in graph]

    def check_mode(self, mode: str, flag: str = "--mode") -> Mode:
        """``mode`` if the spec defines it; else a one-line error (exit 2) that lists the defined modes."""
        return check_mode(mode, self.spec.modes, self.spec_path.name, flag)

    def check_modes(self, modes: list[str] | None, flag: str = "--mode") -> list[Mode]:
        """Each of ``modes`` checked, duplicates dropped; every mode of the spec when none is given."""
        return [self.check_mode(m, flag) for m in dict.fromkeys(modes)] if modes else list(self.spec.modes)

    def base_ref(self, mode: Mode) -> str:
        """The image a mode's root image starts FROM.

        A registry base is used as written. An offline base is tagged by a hash of
        what makes it (suite, mirror, packages), so a changed package list is a new
        base and `infra base` knows whether it already exists.
        """
        import hashlib
        import json

        name = self.spec.modes[mode].base
        base = self.spec.bases[name]
        if base.image is not None:
            return base.image
        assert base.debootstrap is not None
        recipe = json.dumps(base.debootstrap.model_dump(), sort_keys=True).encode()
        return f"{self.spec.project}-os-{name}:{base.debootstrap.suite}-{hashlib.sha256(recipe).hexdigest()[:12]}"

    def image_ref(self, name: str, mode: Mode, registry: str | None = None) -> str:
        """The tag an image gets in ``mode``: [registry/]project-name:tag-variant, the variant being the mode
        without its ``docker-`` prefix (speech-asr:latest-cpu, speech-asr:latest-gpu, speech-ffmpeg:latest-native).
        Every mode has its own tags, so the images of all modes live side by side and building one mode
        never replaces another's (even the same image differs by mode: its io.infra.mode label)."""
        repo = f"{self.spec.project}-{name}"
        tag = f"{self.spec.tag}-{mode.removeprefix('docker-')}"
        registry = registry if registry is not None else self.spec.registry
        return f"{registry}/{repo}:{tag}" if registry else f"{repo}:{tag}"


def find_spec(start: Path) -> Path | None:
    """The nearest infra.yaml in ``start`` or one of its parents, like compose does."""
    for folder in (start, *start.parents):
        candidate = folder / SPEC_FILE
        if candidate.is_file():
            return candidate
    return None


def resolve_spec_path(explicit: str | os.PathLike[str] | None, cwd: Path) -> tuple[Path, bool]:
    """The spec file to use and whether it is the embedded default."""
    if explicit:
        return Path(explicit), False
    env = os.environ.get("INFRA_FILE")
    if env:
        return Path(env), False
    found = find_spec(cwd)
    if found is not None:
        return found, False
    return data_root() / SPEC_FILE, True


def load_stack(path: str | os.PathLike[str] | None = None, cwd: Path | None = None, with_lock: bool = True) -> Stack:
    """Read, validate and cross-check the spec (and the lock beside it, unless ``with_lock`` is False: `infra lock`
    replaces a lock it cannot read). Raises ConfigError with every problem found."""
    from infra.spec.checks import check_stack

    cwd = cwd or Path.cwd()
    spec_path, embedded = resolve_spec_path(path, cwd)
    spec_path = spec_path if spec_path.is_absolute() else (cwd / spec_path)
    shown = _display_name(spec_path, cwd)
    problems: list[str] = []

    raw = _read_yaml(spec_path, shown)
    spec = _validate(ProjectSpec, raw, shown, problems)

    images: dict[str, ImageSpec] = {}
    image_files: dict[str, str] = {}
    if spec is not None:
        images_dir = spec_path.parent / spec.images_dir
        if not images_dir.is_dir():
            problems.append(f"{shown}: images_dir: folder '{spec.images_dir}' not found")
        else:
            for folder in sorted(p for p in images_dir.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
                file = folder / IMAGE_FILE
                file_shown = _display_name(file, cwd, spec_path.parent)
                if not NAME_RE.match(folder.name):
                    problems.append(f"{file_shown}: '{folder.name}' is not a valid image name "
                                    "(lower-case letters, digits and '-', starting with a letter)")
                    continue
                if not file.is_file():
                    problems.append(f"{file_shown}: not found (every folder in {spec.images_dir}/ is an image)")
                    continue
                try:
                    image_raw = _read_yaml(file, file_shown)
                except ConfigError as exc:
                    problems.extend(exc.problems)
                    continue
                image = _validate(ImageSpec, image_raw, file_shown, problems)
                if image is not None:
                    images[folder.name] = image
                    image_files[folder.name] = file_shown
        if spec is not None and not problems:
            problems.extend(check_stack(spec, images, shown, image_files, spec_path.parent))
    overlays = () if embedded or spec is None else _read_overlays(spec_path, list(spec.modes), cwd, problems)

    if problems:
        raise ConfigError(problems, hint=f"fix the lines above; `infra config schema` prints the spec's JSON Schema")
    assert spec is not None
    spec = _apply_environment(spec)
    workdir = cwd if embedded else spec_path.parent
    lock_file = lock_path(spec_path)
    lock = read_lock(lock_file, _display_name(lock_file, cwd, spec_path.parent)) if with_lock else None
    return Stack(spec=spec, images=images, spec_path=spec_path, workdir=workdir, embedded=embedded,
                 overlays=overlays, lock=lock)


def _read_overlays(spec_path: Path, modes: list[str], cwd: Path, problems: list[str]) -> tuple[ComposeOverlay, ...]:
    """The overlay files in compose/ (every mode) and compose/<mode>/ (that mode), parsed, in the order they merge.

    Other folders in compose/ (examples/, say) are not read; one whose name is close to a mode is
    reported, since it is most likely that mode misspelt. A YAML error names the file and the line.
    """
    folder = spec_path.parent / OVERLAY_DIR
    if not folder.is_dir():
        return ()
    found: list[tuple[str | None, Path]] = [(None, p) for p in _overlay_files(folder)]
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        if sub.name in modes:
            found.extend((sub.name, p) for p in _overlay_files(sub))
            continue
        close = difflib.get_close_matches(sub.name, modes, n=1, cutoff=0.8)
        if close:
            problems.append(f"{_display_name(sub, cwd, spec_path.parent)}/: not a mode of {spec_path.name} "
                            f"(did you mean '{close[0]}'?); overlays for one mode go in {OVERLAY_DIR}/<mode>/")
    overlays = []
    for mode, path in found:
        file_shown = _display_name(path, cwd, spec_path.parent)
        try:
            overlays.append(ComposeOverlay(file_shown, mode, _read_yaml(path, file_shown)))
        except ConfigError as exc:
            problems.extend(exc.problems)
    return tuple(overlays)


def _overlay_files(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix in OVERLAY_SUFFIXES
                   and not p.name.startswith(".")), key=lambda p: p.name)


def _apply_environment(spec: ProjectSpec) -> ProjectSpec:
    """Settings the machine supplies rather than the spec: INFRA_CA_BUNDLE (a CA bundle for a
    TLS-intercepting proxy) and INFRA_PIP_CONFIG (a pip.conf with the site's package index). Both
    reach builds only as BuildKit secrets, never a layer; the spec's own values win."""
    update = {}
    for key, variable in (("ca_bundle", "INFRA_CA_BUNDLE"), ("pip_config", "INFRA_PIP_CONFIG")):
        value = os.environ.get(variable)
        if value and getattr(spec.secrets, key) is None:
            update[key] = value
    if update:
        return spec.model_copy(update={"secrets": spec.secrets.model_copy(update=update)})
    return spec


def _display_name(path: Path, cwd: Path, root: Path | None = None) -> str:
    for base in filter(None, (root, cwd)):
        try:
            return str(path.relative_to(base))
        except ValueError:
            continue
    return str(path)


def _read_yaml(path: Path, shown: str) -> dict[str, Any]:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{shown}: not found"]) from None
    except IsADirectoryError:
        raise ConfigError([f"{shown}: is a directory, not a YAML file"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{shown}: cannot be read ({exc.__class__.__name__}: {exc})"]) from None
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        data = yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError([f"{shown}: {where}invalid YAML: {exc.problem or exc.context}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{shown}: invalid YAML: {exc}"]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"{shown}: the top level must be a mapping of keys, not a {type(data).__name__}"])
    return data


def dotted(loc: tuple[int | str, ...]) -> str:
    """('stages', 'asr', 'after', 0) -> 'stages.asr.after[0]'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _validate(model: type, raw: dict[str, Any], shown: str, problems: list[str]) -> Any:
    from pydantic import ValidationError

    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            problems.append(f"{shown}: {_describe(model, err)}")
        return None


def _describe(model: type, err: dict[str, Any]) -> str:
    loc = tuple(err["loc"])
    kind = err["type"]
    if loc and loc[-1] == "[key]":  # a bad mapping key, e.g. an unknown mode name
        loc = loc[:-1]
        return f"{dotted(loc[:-1])}: unknown key '{loc[-1]}': {str(err['msg'])[:1].lower()}{str(err['msg'])[1:]}"
    if kind == "extra_forbidden":
        parent, key = loc[:-1], loc[-1]
        known = _known_keys(model, parent)
        hint = difflib.get_close_matches(str(key), known, n=1)
        where = f"{dotted(parent)}: " if parent else ""
        suggestion = f" (did you mean '{hint[0]}'?)" if hint else (f" (known: {', '.join(known)})" if known else "")
        return f"{where}unknown key '{key}'{suggestion}"
    if kind == "missing":
        return f"{dotted(loc)}: required"
    msg = str(err["msg"])
    msg = msg.removeprefix("Value error, ")
    msg = msg[:1].lower() + msg[1:]
    if kind not in ("value_error", "assertion_error") and "input" in err and not isinstance(err["input"], (dict, list)):
        msg += f", got {err['input']!r}"
    return f"{dotted(loc)}: {msg}"


def _known_keys(model: type, loc: tuple[int | str, ...]) -> list[str]:
    """The field names allowed at ``loc`` inside ``model``, for 'did you mean' hints."""
    import typing

    current: Any = model
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        fields = getattr(current, "model_fields", None)
        if fields is None:
            return []
        if part in fields:
            annotation = fields[part].annotation
        else:
            # a key of a dict[str, Model]: step into the value type
            annotation = current
        current = _model_in(annotation, typing)
    fields = getattr(current, "model_fields", None)
    return sorted(fields) if fields else []


def _model_in(annotation: Any, typing: Any) -> Any:
    if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg, typing)
        if found is not None:
            return found
    return None
