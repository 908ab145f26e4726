"""The stack spec as pydantic models.

``infra.yaml`` holds the project-wide settings, the base images, the modes and
the stages; each ``images/<name>/image.yaml`` holds one image. Every model
forbids unknown keys, so a typo is an error rather than a silently ignored
setting. Checks that span several files (parents, stage images, cycles) live in
``infra.spec.checks``.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from infra.spec.modes import MODES, Mode

TorchPolicy = Literal["mounted", "baked"]

# Names become image tags, compose service names, paths and Jinja keys: keep them plain.
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
# A pip requirement: name, optional extras, optional version clauses. No URLs,
# no environment markers, nothing a shell would interpret.
PIP_RE = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9._-]+(,[A-Za-z0-9._-]+)*\])?"
    r"((===|==|>=|<=|~=|!=|<|>)[A-Za-z0-9.*+!_-]+)?"
    r"(,(===|==|>=|<=|~=|!=|<|>)[A-Za-z0-9.*+!_-]+)*$"
)
# A Debian package, optionally pinned: name=version.
APT_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+:~-]+)?$")
# An image reference such as python:3.11-slim or registry:5000/ns/name@sha256:...
IMAGE_REF_RE = re.compile(r"^[a-z0-9][a-z0-9._/:-]*(@sha256:[a-f0-9]{64})?$")
REGISTRY_RE = re.compile(r"^[a-z0-9][a-z0-9.-]*(:[0-9]+)?(/[a-z0-9][a-z0-9._-]*)*$")
LABEL_KEY_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
SAFE_TEXT_RE = re.compile(r"^[^\x00-\x1f`$\\\"]*$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_name(value: str) -> str:
    if not NAME_RE.match(value):
        raise ValueError(f"'{value}' is not a valid name (lower-case letters, digits and '-', starting with a letter)")
    return value


Name = Annotated[str, Field(min_length=1)]


def _check_each(values: list[str], pattern: re.Pattern[str], what: str) -> list[str]:
    for value in values:
        if not pattern.match(value):
            raise ValueError(f"{what} '{value}' is not allowed (only plain names and version pins; no spaces or shell characters)")
    if len(set(values)) != len(values):
        dupes = sorted({v for v in values if values.count(v) > 1})
        raise ValueError(f"{what} listed twice: {', '.join(dupes)}")
    return values


class DebootstrapBase(Strict):
    """A base image made from Debian packages with debootstrap and ``docker import``."""

    suite: str = Field("bookworm", description="Debian suite, e.g. bookworm (Python 3.11) or trixie (3.13)")
    mirror: str | None = Field(None, description="Archive URI; default: the host's own Debian mirror")
    packages: list[str] = Field(default_factory=lambda: ["python3", "ca-certificates"])

    @field_validator("suite")
    @classmethod
    def _suite(cls, v: str) -> str:
        return _check_name(v)

    @field_validator("packages")
    @classmethod
    def _packages(cls, v: list[str]) -> list[str]:
        return _check_each(v, APT_RE, "apt package")


class BaseSpec(Strict):
    """Where the root image of a mode starts: a registry image or an offline debootstrap base."""

    image: str | None = Field(None, description="A registry image reference, e.g. python:3.11-slim-bookworm")
    debootstrap: DebootstrapBase | None = None

    @field_validator("image")
    @classmethod
    def _image(cls, v: str | None) -> str | None:
        if v is not None and not IMAGE_REF_RE.match(v):
            raise ValueError(f"'{v}' is not a valid image reference")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> BaseSpec:
        if (self.image is None) == (self.debootstrap is None):
            raise ValueError("give exactly one of 'image' (a registry image) or 'debootstrap' (an offline base)")
        return self


class ModeSpec(Strict):
    base: str = Field(description="Name of an entry under 'bases'")
    gpu: bool = Field(False, description="Stages marked gpu get the NVIDIA GPU in this mode")


class NativeEnvSpec(Strict):
    path: str = Field(".venv-ml", description="The native environment (a virtualenv), relative to the project")
    torch: TorchPolicy = Field("mounted", description="mounted: images carry no torch; baked: images install it")
    torch_version: str = Field("2.13.0", pattern=r"^[0-9]+(\.[0-9]+){1,2}$")
    delivery: Literal["folder", "image"] = Field(
        "folder", description="folder: containers bind-mount `path` (one machine); image: the environment image "
                              "that `infra env push` puts in the registry (compose mounts it as an image, a swarm "
                              "copies it to a volume on each node)")
    wheelhouse: str | None = Field(None, description="A folder of wheels (e.g. a local CPU torch build) that baked "
                                                     "builds install torch from instead of an index")


class SecretsSpec(Strict):
    hf_token_env: str = Field("HF_TOKEN", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                              description="Environment variable that holds the Hugging Face token")
    file: str = Field("config/secrets.json",
                      description="Secrets file under the workspace (JSON object or KEY=VALUE lines); "
                                  "the token's key may be in any casing")
    ca_bundle: str | None = Field(None, description="Path of a CA bundle for TLS-intercepting proxies")
    pip_config: str | None = Field(None, description="Path of a pip.conf (index-url, extra-index-url, trusted-host; "
                                                     "credentials allowed) that pip sees during builds only")

    @field_validator("file")
    @classmethod
    def _inside(cls, v: str) -> str:
        if v.startswith("/") or ".." in v.split("/") or not v.strip():
            raise ValueError(f"'{v}' must be a path inside the workspace")
        return v


class HardwareSpec(Strict):
    cache_ttl_s: int = Field(3600, ge=0, le=7 * 24 * 3600,
                             description="Seconds the hardware cache stays valid (env INFRA_HW_CACHE_TTL overrides)")


# The secret `infra serve` asks for when it serves the network (the environment, or the secrets file).
SERVE_TOKEN = "INFRA_SERVE_TOKEN"
SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*$", re.I)


def size_bytes(text: str) -> int:
    """'16G', '500M', '1048576' -> bytes (powers of 1024); ValueError when it is not a size."""
    match = SIZE_RE.match(text)
    if not match:
        raise ValueError(f"'{text}' is not a size (e.g. 500M, 16G)")
    return int(float(match.group(1)) * 1024 ** " KMGT".index(match.group(2).upper() or " "))


class ServeSpec(Strict):
    """`infra serve` as a service of the stack, beside the workers (docs/SERVE.md, "In the stack")."""

    enabled: bool = Field(False, description="`infra up` and `infra deploy` run `infra serve` as the service 'serve'")
    port: int = Field(9000, ge=1, le=65535, description="The port it listens on, published on the host")
    address: str = Field("0.0.0.0", description="The host address compose publishes the port on (a swarm "
                                                 "publishes it on every node)")
    image: str = Field("serve", description="The image it runs in: one that carries infra (infra: true)")
    max_upload: str = Field("16G", description="The largest upload it takes (e.g. 500M, 16G)")

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        import ipaddress

        try:
            ipaddress.ip_address(v)
        except ValueError:
            raise ValueError(f"'{v}' is not an IP address (0.0.0.0 for every interface)") from None
        return v

    @field_validator("image")
    @classmethod
    def _image(cls, v: str) -> str:
        return _check_name(v)

    @field_validator("max_upload")
    @classmethod
    def _size(cls, v: str) -> str:
        size_bytes(v)                    # ValueError when it is not a size
        return v


class StageSpec(Strict):
    image: str = Field(description="The image the stage runs in (in docker modes)")
    command: list[str] = Field(min_length=1, description="Program and arguments, run in the job directory")
    after: list[str] = Field(default_factory=list, description="Stages that must finish first")
    inputs: list[str] = Field(default_factory=list, description="Files the stage reads, relative to the job directory")
    outputs: list[str] = Field(default_factory=list, description="Files the stage writes")
    reads_media: bool = Field(False, description="Reads the job's input media (job.json's input.file), which lies "
                                                 "outside the job directory unless the job cut a clip")
    gpu: bool = Field(False, description="Uses the GPU in a mode that has one")
    memory: str | None = Field(None, description="Memory the stage needs (e.g. 4G): reserved for each worker, so a "
                                                 "swarm places it only on a node with that much free")

    @field_validator("memory")
    @classmethod
    def _memory(cls, v: str | None) -> str | None:
        if v is not None:
            size_bytes(v)                # ValueError when it is not a size
        return v

    @property
    def memory_bytes(self) -> int | None:
        return size_bytes(self.memory) if self.memory is not None else None

    @field_validator("command")
    @classmethod
    def _command(cls, v: list[str]) -> list[str]:
        for arg in v:
            if not SAFE_TEXT_RE.match(arg):
                raise ValueError(f"argument {arg!r} contains control or shell-quoting characters")
        return v

    @field_validator("inputs", "outputs")
    @classmethod
    def _relative(cls, v: list[str]) -> list[str]:
        for p in v:
            if p.startswith("/") or ".." in p.split("/") or not p:
                raise ValueError(f"'{p}' must be a path inside the job directory")
        return v


class ProjectSpec(Strict):
    """infra.yaml."""

    project: str = Field(description="Project name: prefixes image tags, compose project, labels")
    python: str = Field("3.11", pattern=r"^3\.[0-9]{1,2}$", description="Python minor version of every image")
    registry: str | None = Field(None, description="Registry and namespace images are pushed to, e.g. registry.example.com/speech")
    tag: str = Field("latest", pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
    images_dir: str = Field("images", description="Folder holding images/<name>/image.yaml")
    output_dir: str = Field(".infra/out", description="Where rendered files go, per mode")
    native_env: NativeEnvSpec = Field(default_factory=NativeEnvSpec)
    secrets: SecretsSpec = Field(default_factory=SecretsSpec)
    hardware: HardwareSpec = Field(default_factory=HardwareSpec)
    bases: dict[str, BaseSpec] = Field(min_length=1)
    modes: dict[Mode, ModeSpec] = Field(min_length=1)
    stages: dict[str, StageSpec] = Field(default_factory=dict)
    serve: ServeSpec = Field(default_factory=ServeSpec)
    claim_timeout_s: int = Field(120, ge=2, le=86400,
                                 description="A stage claim its worker has not touched for this long is taken over "
                                             "by another worker (a worker, or the node it ran on, was lost)")

    @field_validator("project")
    @classmethod
    def _project(cls, v: str) -> str:
        return _check_name(v)

    @field_validator("registry")
    @classmethod
    def _registry(cls, v: str | None) -> str | None:
        if v is not None and not REGISTRY_RE.match(v):
            raise ValueError(f"'{v}' is not a registry host with an optional namespace (e.g. 127.0.0.1:5000/speech)")
        return v

    @field_validator("bases", "stages")
    @classmethod
    def _names(cls, v: dict) -> dict:
        for key in v:
            _check_name(key)
        return v


class ImageSpec(Strict):
    """images/<name>/image.yaml."""

    description: str = ""
    parent: str | None = Field(None, description="Image this one builds on; none: the mode's base")
    modes: list[Mode] = Field(default_factory=lambda: list(MODES), min_length=1)
    apt: list[str] = Field(default_factory=list, description="Debian packages")
    pip: list[str] = Field(default_factory=list, description="Python packages that do not need torch")
    torch_pip: list[str] = Field(default_factory=list,
                                 description="Python packages that need torch: installed only with torch: baked")
    torch: bool = Field(False, description="With torch: baked, this image installs torch for the mode (CPU or CUDA)")
    gpu_only: bool = Field(False, description="Only meaningful with a GPU: not allowed in CPU modes")
    files: list[str] = Field(default_factory=list, description="Files from the image folder copied into the image")
    infra: bool = Field(False, description="The image carries infra itself (its package and the stage code), "
                                           "to run infra's own commands such as `infra serve`")
    template: str | None = Field(None, description="A Jinja template in the image folder that extends Dockerfile.j2")
    labels: dict[str, str] = Field(default_factory=dict)
    env: dict[str, str] = Field(default_factory=dict)

    @field_validator("apt")
    @classmethod
    def _apt(cls, v: list[str]) -> list[str]:
        return _check_each(v, APT_RE, "apt package")

    @field_validator("pip", "torch_pip")
    @classmethod
    def _pip(cls, v: list[str]) -> list[str]:
        return _check_each(v, PIP_RE, "pip package")

    @field_validator("modes")
    @classmethod
    def _modes(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("a mode is listed twice")
        return v

    @field_validator("files")
    @classmethod
    def _files(cls, v: list[str]) -> list[str]:
        for p in v:
            if p.startswith("/") or ".." in p.split("/") or not p.strip():
                raise ValueError(f"'{p}' must be a path inside the image folder")
        return v

    @field_validator("labels", "env")
    @classmethod
    def _mapping(cls, v: dict[str, str]) -> dict[str, str]:
        for key, value in v.items():
            if not LABEL_KEY_RE.match(key.lower()):
                raise ValueError(f"key '{key}' is not allowed (letters, digits, '.', '_', '-')")
            if not SAFE_TEXT_RE.match(value):
                raise ValueError(f"value of '{key}' contains control or shell-quoting characters")
        return v
