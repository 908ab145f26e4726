"""`infra bootstrap`: the one-time setup of a workspace, safe to run again.

It creates the workspace folders (owned by the images' non-root user, uid and gid 10001),
checks FFmpeg, writes the hardware cache, and fetches the models the
recommendation needs into shared-model-and-cache/, several at once. A model
that cannot be fetched (no network, no token for a gated one) is reported and
the rest carries on. Yields a Check per step and the fetchers' progress events.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Union

from infra.hardware.doctor import Check, ffmpeg_check
from infra.models.catalogue import (DIARIZATION_MODEL, SEGMENTATION_MODEL, FetchEvent, HubToken, fetch_models,
                                    whisper_model)
from infra.workspace import Workspace

if TYPE_CHECKING:
    from infra.spec import Stack
    from infra.hardware.recommend import Recommendation

BootstrapEvent = Union[Check, FetchEvent]


def read_hf_token(stack: Stack, environ: Mapping[str, str] | None = None) -> HubToken | None:
    """The Hugging Face token from the environment, else from the secrets file (the key in any casing)."""
    from infra.spec.secrets import read_secret

    found = read_secret(stack, stack.spec.secrets.hf_token_env, environ)
    return HubToken(*found) if found else None


def needed_models(rec: Recommendation) -> list[str]:
    """Whisper, pyannote's pipeline (gated: only with a token), and the segmentation model that the offline
    diarizer uses for speech and overlap when the pipeline is not there (a small sdist from PyPI, no token)."""
    return [whisper_model(rec.whisper_model), DIARIZATION_MODEL, SEGMENTATION_MODEL]


def make_workspace(ws: Workspace, uid: int, gid: int) -> Check:
    created = [p.name for p in ws.folders() if not p.is_dir()]
    try:
        for folder in ws.folders():
            folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return Check("workspace", "fail", f"cannot create {exc.filename}: {exc.strerror}",
                     "run from a folder you can write to, or fix its permissions")
    made = f"created {', '.join(created)}" if created else "all folders present"
    owner = give_to_owner(ws.folders(), uid, gid)
    return Check("workspace", "ok" if owner is None else "warn", f"{ws.root}: {made}; "
                 + (f"owned by {uid}:{gid}" if owner is None else owner),
                 "" if owner is None else f"run `sudo infra bootstrap`, or `sudo chown -R {uid}:{gid}` the folders")


def give_to_owner(paths: list[Path], uid: int, gid: int) -> str | None:
    """chown the paths (recursively) to uid:gid when running as root; None when they are owned right."""
    if not hasattr(os, "geteuid"):
        return None
    if os.geteuid() != 0:
        wrong = [p for p in paths if p.exists() and p.stat().st_uid != uid]
        return f"owned by uid {os.geteuid()}, not {uid}: containers may not write here" if wrong else None
    for path in paths:
        for root, dirs, files in os.walk(path):
            for name in (root, *(os.path.join(root, n) for n in dirs + files)):
                os.chown(name, uid, gid, follow_symlinks=False)
    return None


def run_bootstrap(stack: Stack, models: list[str] | None = None, fetch: bool = True,
                  environ: Mapping[str, str] | None = None, from_registry: bool = False,
                  registry: str | None = None) -> Iterator[BootstrapEvent]:
    from infra.hardware.cache import stack_hardware
    from infra.hardware.recommend import recommend

    if registry and not from_registry:
        from infra.errors import BadInputError

        raise BadInputError("--registry goes with --from-registry (bootstrap fetches from the models' sources "
                            "otherwise)")
    ws = Workspace(stack.workdir)
    from infra.render.paths import UID

    uid = gid = UID  # the images' non-root user and group
    step = make_workspace(ws, uid, gid)
    yield step
    if step.status == "fail":
        return
    state = stack_hardware(stack, refresh=True)
    hw = state.snapshot
    yield Check("hardware", "ok", f"{hw.gpu_class}; {hw.cpu.physical_cores} cores, {hw.memory.total_gb:.0f} GB RAM; "
                f"cache written to {state.path.relative_to(ws.root)}")
    yield ffmpeg_check(hw.ffmpeg)
    rec = recommend(hw, allowed=tuple(stack.spec.modes))
    yield Check("recommendation", "ok", f"mode {rec.mode}, whisper {rec.whisper_model} {rec.compute_type}, "
                f"batch {rec.batch_size}")
    if from_registry:
        yield from pull_from_registry(stack, ws, models, rec, fetch, registry)
        give_to_owner([ws.models], uid, gid)
        return
    token = read_hf_token(stack, environ)
    env_name, secrets_file = stack.spec.secrets.hf_token_env, stack.spec.secrets.file
    yield Check("hugging face token", "ok" if token else "warn",
                f"from {token.source}" if token else "none: gated models (pyannote) are skipped",
                "" if token else f"set {env_name}, or put it in {secrets_file}")
    names = list(dict.fromkeys(models or needed_models(rec)))
    if not fetch:
        yield Check("models", "warn", f"not fetched (--no-models): {', '.join(names)}")
        return
    outcome: dict[str, FetchEvent] = {}
    for event in fetch_models(names, ws.models, token):
        if event.kind in ("done", "present", "failed"):
            outcome[event.model] = event
        yield event
    give_to_owner([ws.models], uid, gid)
    for name in names:
        event = outcome.get(name)
        if event is None or event.kind == "failed":
            yield Check(f"model {name}", "warn", f"could not fetch: {event.detail if event else 'no answer'}",
                        "fetch it later with `infra bootstrap` where the source is reachable")
        elif event.kind == "present":
            yield Check(f"model {name}", "ok", event.detail)
        else:
            yield Check(f"model {name}", "ok", f"fetched {event.done_bytes / 1e6:.0f} MB {event.detail}")


def pull_from_registry(stack: Stack, ws: Workspace, models: list[str] | None, rec: Recommendation, fetch: bool,
                       registry: str | None) -> Iterator[BootstrapEvent]:
    """The models from the registry (infra/models/pull.py): those named, else those models.lock pins, else the
    recommended ones. Every lookup happens first: for named or pinned models a bad name or credentials stop
    bootstrap with one line, a recommended model the registry lacks is a warning. A model whose transfer
    fails is reported and the others carry on."""
    from infra.errors import InfraError
    from infra.models.lock import lock_path, read_lock
    from infra.models.pull import plan_pull, pull_one
    from infra.models.remote import with_events

    names = models or sorted(read_lock(lock_path(stack)).pins)
    recommended = not names
    names = names or needed_models(rec)
    if not fetch:
        yield Check("models", "warn", f"not pulled (--no-models): {', '.join(names)}")
        return
    plans = []
    for name in names if recommended else [None]:
        try:
            plans += plan_pull(stack, ws.models, [name] if name else names, registry)
        except InfraError as exc:
            if not recommended:
                raise
            yield Check(f"model {name}", "warn", f"not pulled: {exc.message}", exc.hint or "")
    for plan in plans:
        try:
            result = yield from with_events(lambda emit, plan=plan: pull_one(plan, ws.models, emit))
        except InfraError as exc:
            yield FetchEvent(plan.model, "failed", detail=exc.message)
            yield Check(f"model {plan.model}", "fail", f"could not pull {plan.repository}: {exc.message}",
                        exc.hint or "run the command again: it resumes")
            continue
        how = "already there" if result.status == "present" else f"pulled {result.fetched_bytes / 1e6:.0f} MB"
        yield Check(f"model {plan.model}", "ok", f"{how} ({result.reference})")
