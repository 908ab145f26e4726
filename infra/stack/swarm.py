"""The stack on a swarm: `infra deploy --target swarm` and its removal."""

from __future__ import annotations

from collections.abc import Iterator

from infra.engine import Engine, EngineAPI
from infra.errors import BadInputError
from infra.spec import Stack
from infra.stack.readiness import check_native_env, prepare_workspace, render_to_disk, service_images
from infra.stack.serve import ready_for_serve, serve_image


def swarm_stack_name(stack: Stack, mode: str) -> str:
    return f"{stack.spec.project}-{mode}"


def deploy_swarm(stack: Stack, mode: str, engine: EngineAPI | None = None) -> Iterator[str]:
    """Deploy the mode's swarm stack file after checking the swarm, the images and the torch policy."""
    from infra.engine.compose import stack_deploy, swarm_nodes, swarm_state

    engine = engine or Engine()
    state, manager = swarm_state(engine)
    if state != "active":
        raise BadInputError(f"this engine is not part of a swarm (state: {state})",
                            hint="`docker swarm init` makes this machine a one-node swarm")
    if not manager:
        raise BadInputError("this node is not a swarm manager; deploy from a manager node")
    rendered = render_to_disk(stack, mode)
    serving = serve_image(stack, mode)
    if serving:
        ready_for_serve(stack)
    images = [stack.image_ref(n, mode, stack.spec.registry)
              for n in service_images(stack, mode) + ([serving] if serving else [])]
    nodes = swarm_nodes(engine)
    if stack.spec.registry is None:
        if nodes > 1:
            raise BadInputError(f"a swarm of {nodes} nodes pulls images from a registry, and infra.yaml sets none",
                                hint="set 'registry' in infra.yaml and `infra build --push`")
        missing = [ref for ref, info in engine.inspect_images(images).items() if info is None]
        if missing:
            raise BadInputError(f"images not built: {', '.join(missing)}", hint=f"`infra build --mode {mode}`")
    else:
        missing = [ref for ref in images if not engine.remote_image_exists(ref)]
        if missing:
            raise BadInputError(f"not in the registry the nodes pull from: {', '.join(missing)}",
                                hint=f"`infra build --mode {mode} --push`")
    if stack.spec.native_env.torch == "mounted":
        env_path = (stack.workdir / stack.spec.native_env.path).resolve()
        yield (f"note: torch is mounted from {env_path}; every node that runs an ML stage needs the same "
               f"environment at that path (or set native_env.torch: baked)")
        if nodes > 1:
            yield f"note: {nodes} nodes in the swarm: make sure each has {env_path}"
        check_native_env(stack, mode, service_images(stack, mode), engine)
    prepare_workspace(stack)
    name = swarm_stack_name(stack, mode)
    stack_deploy(engine, name, rendered.stack_file, swarm_variables(stack))
    yield f"deployed stack {name} from {rendered.stack_file}"


def swarm_variables(stack: Stack) -> dict[str, str]:
    """Where this node keeps what the stack file mounts (the file leaves them to variables)."""
    from infra.render.swarm import DATA_VARIABLE, NATIVE_SITE_VARIABLE

    site = (stack.workdir / stack.spec.native_env.path / "lib" / f"python{stack.spec.python}" / "site-packages")
    return {DATA_VARIABLE: str(stack.workdir.resolve()), NATIVE_SITE_VARIABLE: str(site.resolve())}


def remove_swarm(stack: Stack, mode: str, engine: EngineAPI | None = None) -> str:
    from infra.engine.compose import stack_remove, swarm_state

    engine = engine or Engine()
    state, _ = swarm_state(engine)
    if state != "active":
        raise BadInputError(f"this engine is not part of a swarm (state: {state})")
    name = swarm_stack_name(stack, mode)
    stack_remove(engine, name)
    return name
