"""The stack on a swarm: `infra deploy --target swarm`, its removal, and what runs where (`infra ps --target swarm`).

Everything that can be known before a service starts is checked first, each refusal one line (exit 2): the
engine is a swarm manager; the images (and, with `native_env.delivery: image`, the environment image) are in
the registry the nodes pull from, and a registry on a loopback address is refused once the swarm has more than
this node; every GPU stage has a node labelled infra.gpu=true; every stage's memory fits on some node. Then the
environment goes out first (the global service native-env, until it is complete on every node), then the
workers, and the deploy waits until they run, reporting on the way what a node says (a pull that fails, a
registry that went away), so that a registry that comes back is a deploy that succeeds.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

from infra.engine import Engine, EngineAPI
from infra.errors import BadInputError, OperationError
from infra.spec import Stack
from infra.stack.readiness import check_native_env, prepare_workspace, render_to_disk, service_images
from infra.stack.serve import ready_for_serve, serve_image

DEPLOY_TIMEOUT_S = 900.0
POLL_S = 2.0


def swarm_stack_name(stack: Stack, mode: str) -> str:
    return f"{stack.spec.project}-{mode}"


def deploy_swarm(stack: Stack, mode: str, engine: EngineAPI | None = None, scale: dict[str, int] | None = None,
                 wait: bool = True, timeout_s: float = DEPLOY_TIMEOUT_S) -> Iterator[str]:
    """Deploy the mode's swarm stack after the checks above; yields what it does and what nodes report."""
    from infra.engine.swarm import stack_deploy, swarm_nodes, swarm_state
    from infra.oci.client import is_loopback
    from infra.render.swarm import GPU_LABEL, NATIVE_ENV_SERVICE

    engine = engine or Engine()
    state, manager = swarm_state(engine)
    if state != "active":
        raise BadInputError(f"this engine is not part of a swarm (state: {state})",
                            hint="`docker swarm init` makes this machine a one-node swarm")
    if not manager:
        raise BadInputError("this node is not a swarm manager; deploy from a manager node")
    from infra.render.compose import compose_stages
    from infra.render.swarm import replicas_variable

    scale = dict(scale or {})
    stages = compose_stages(stack, mode)          # type: ignore[arg-type]
    unknown = sorted(set(scale) - set(stages))
    if unknown:
        raise BadInputError(f"--scale: {', '.join(unknown)} is not a stage of mode {mode}")
    nodes = [n for n in swarm_nodes(engine) if n.usable]
    check_placement(stack, mode, stages, nodes, GPU_LABEL)
    rendered = render_to_disk(stack, mode)
    serving = serve_image(stack, mode)
    if serving:
        ready_for_serve(stack)
    images = [stack.image_ref(n, mode, stack.spec.registry)
              for n in service_images(stack, mode) + ([serving] if serving else [])]
    registry = stack.spec.registry
    env = stack.spec.native_env
    by_image = env.torch == "mounted" and env.delivery == "image"
    if registry is None:
        if len(nodes) > 1:
            raise BadInputError(f"a swarm of {len(nodes)} nodes pulls images from a registry, and infra.yaml sets none",
                                hint="set 'registry' in infra.yaml and `infra build --push`")
        missing = [ref for ref, info in engine.inspect_images(images).items() if info is None]
        if missing:
            raise BadInputError(f"images not built: {', '.join(missing)}", hint=f"`infra build --mode {mode}`")
    else:
        host = registry.split("/", 1)[0]
        if len(nodes) > 1 and is_loopback(host):
            raise BadInputError(f"registry {host} is a loopback address: the other {len(nodes) - 1} node(s) of the "
                                "swarm cannot reach it", hint="give the registry an address every node reaches")
        missing = [ref for ref in images if not engine.remote_image_exists(ref)]
        if missing:
            raise BadInputError(f"not in the registry the nodes pull from: {', '.join(missing)}",
                                hint=f"`infra build --mode {mode} --push`")
    variables = swarm_variables(stack)
    variables.update({replicas_variable(name): str(count) for name, count in scale.items()})
    env_image = None
    if env.torch == "mounted":
        if by_image:
            from infra.stack.envimage import remote_env_image

            env_image = remote_env_image(stack, mode)      # type: ignore[arg-type]
            if env_image.digest is None:
                raise BadInputError(f"the environment image {env_image.ref} is not in the registry, so no node "
                                    "can get the native environment", hint=f"`infra env push --mode {mode}`")
            variables.update(env_variables(env_image))
        elif len(nodes) > 1:
            raise BadInputError(f"native_env.delivery is 'folder': each of the {len(nodes)} nodes would need the "
                                f"environment at {(stack.workdir / env.path).resolve()}",
                                hint="set native_env.delivery: image and `infra env push`")
        else:
            yield (f"note: torch is mounted from {(stack.workdir / env.path).resolve()}; a node that joins later needs "
                   "the same environment at that path (or set native_env.delivery: image)")
        check_native_env(stack, mode, service_images(stack, mode), engine)
    prepare_workspace(stack)
    name = swarm_stack_name(stack, mode)
    if env_image is not None:
        yield f"delivering the native environment {env_image.pinned} to {len(nodes)} node(s)"
        stack_deploy(engine, name, env_only(rendered.stack_file), variables, registry is not None, prune=False)
        yield from wait_for(engine, name, {NATIVE_ENV_SERVICE: len(nodes)}, timeout_s)
    stack_deploy(engine, name, rendered.stack_file, variables, registry is not None)
    yield f"deployed stack {name} from {rendered.stack_file}"
    if wait:
        yield from wait_for(engine, name, {s: scale.get(s, 1) for s in stages}, timeout_s)


def check_placement(stack: Stack, mode: str, names: list[str], nodes: list,  # noqa: ANN001 - NodeInfo
                    gpu_label: str) -> None:
    """Refuse a stage that no node can run: a GPU stage without a GPU node, more memory than any node has."""
    stages = {n: stack.spec.stages[n] for n in names}
    gpu_nodes = [n for n in nodes if n.labels.get(gpu_label) == "true"]
    if stack.spec.modes[mode].gpu:      # type: ignore[index]
        needing = [n for n, s in stages.items() if s.gpu]
        if needing and not gpu_nodes:
            raise BadInputError(f"GPU stage(s) {', '.join(needing)} and no node of the swarm is labelled "
                                f"{gpu_label}=true", hint=f"`docker node update --label-add {gpu_label}=true NODE` on "
                                                         "each node with an NVIDIA GPU")
    biggest = max((n.memory for n in nodes), default=0)
    for name, stage in stages.items():
        need = stage.memory_bytes
        if need and biggest and need > biggest:
            raise BadInputError(f"stage {name} needs {stage.memory} of memory and the largest node has "
                                f"{biggest / 2**30:.1f} GiB")


def env_variables(env_image) -> dict[str, str]:  # noqa: ANN001 - EnvImage
    from infra.render.swarm import ENV_FOLDER_VARIABLE, ENV_IMAGE_VARIABLE

    return {ENV_IMAGE_VARIABLE: env_image.pinned, ENV_FOLDER_VARIABLE: env_image.folder}


def env_only(stack_file: Path) -> Path:
    """The stack file with only the native-env service (and its volume), beside the full one."""
    import yaml

    from infra.jobproto import write_text_atomic
    from infra.render.swarm import NATIVE_ENV_SERVICE

    data = yaml.safe_load(stack_file.read_text(encoding="utf-8"))
    data["services"] = {NATIVE_ENV_SERVICE: data["services"][NATIVE_ENV_SERVICE]}
    data.pop("secrets", None)
    target = stack_file.with_name("stack.native-env.yaml")
    write_text_atomic(target, yaml.safe_dump(data, sort_keys=False))
    return target


def wait_for(engine: EngineAPI, name: str, wanted: dict[str, int], timeout_s: float) -> Iterator[str]:
    """Until each service in ``wanted`` runs that many tasks (a global one: one per node); yields each new
    complaint a node makes on the way (a failed pull, an unreachable registry, a mount that is not there yet)."""
    from infra.engine.swarm import stack_tasks

    deadline = time.monotonic() + timeout_s
    said: set[tuple[str, str, str]] = set()
    while True:
        tasks = [t for t in stack_tasks(engine, name) if t.service in wanted]
        running = {s: sum(1 for t in tasks if t.service == s and t.state == "running" and t.desired == "running")
                   for s in wanted}
        for task in tasks:
            key = (task.service, task.node, short(task.error))
            if task.error and key not in said:
                said.add(key)
                yield f"note: {task.service} on {task.node or 'no node yet'}: {short(task.error)}"
        if all(running[s] >= wanted[s] for s in wanted):
            yield f"running: {', '.join(f'{s} {running[s]}/{wanted[s]}' for s in wanted)}"
            return
        if time.monotonic() > deadline:
            behind = ", ".join(f"{s} {running[s]}/{wanted[s]}" for s in wanted if running[s] < wanted[s])
            raise OperationError(f"stack {name}: not running after {timeout_s:.0f} s ({behind})",
                                 hint=stalled_hint([t for t in tasks if running[t.service] < wanted[t.service]]))
        time.sleep(POLL_S)


def stalled_hint(behind: list) -> str:  # noqa: ANN001 - TaskInfo
    """What to look at when services did not come up: a node whose pull failed says only "No such image"."""
    unpulled = sorted({t.node for t in behind if "No such image" in t.error and t.node})
    if unpulled:
        return (f"{', '.join(unpulled)} could not pull the image (docker says only 'No such image'): check that "
                f"the node reaches the registry and has disk space for the image (`docker system df` there)")
    return "`infra ps --target swarm` shows each task and its node"


def short(error: str) -> str:
    return " ".join(error.split())[:200]


def swarm_variables(stack: Stack) -> dict[str, str]:
    """Where this node keeps what the stack file mounts (the file leaves them to variables)."""
    from infra.render.swarm import DATA_VARIABLE, NATIVE_SITE_VARIABLE
    from infra.stack.envimage import site_packages

    return {DATA_VARIABLE: str(stack.workdir.resolve()), NATIVE_SITE_VARIABLE: str(site_packages(stack))}


def remove_swarm(stack: Stack, mode: str, engine: EngineAPI | None = None) -> str:
    from infra.engine.swarm import stack_remove, swarm_state

    engine = engine or Engine()
    state, _ = swarm_state(engine)
    if state != "active":
        raise BadInputError(f"this engine is not part of a swarm (state: {state})")
    name = swarm_stack_name(stack, mode)
    stack_remove(engine, name)
    return name


def swarm_ps(stack: Stack, mode: str, engine: EngineAPI | None = None) -> list[dict]:
    """Each current task of the deployed stack: service, replica, node, state, error."""
    from infra.engine.swarm import stack_tasks

    tasks = stack_tasks(engine or Engine(), swarm_stack_name(stack, mode))
    return [{"service": t.service, "slot": t.slot, "node": t.node, "state": t.state, "error": short(t.error)}
            for t in sorted(tasks, key=lambda t: (t.service, t.slot or 0, t.node))
            if t.desired == "running" or t.state == "running"]
