"""Each mode's images have their own refs, so building one mode never makes another's images out of date."""

from __future__ import annotations

from pathlib import Path

from infra.build.plan import HASH_LABEL, plan_images, targets_for_mode
from infra.spec import load_stack
from infra.spec.modes import MODES
from infra.stack.readiness import render_to_disk, stale_images
from tests.fake_stack import spec_engine


def test_the_ref_of_an_image_names_its_mode(project: Path) -> None:
    stack = load_stack(project / "infra.yaml")
    assert stack.image_ref("asr", "docker-cpu") == "speech-asr:latest-cpu"
    assert stack.image_ref("asr", "docker-gpu") == "speech-asr:latest-gpu"
    assert stack.image_ref("ffmpeg", "native") == "speech-ffmpeg:latest-native"
    assert stack.image_ref("asr", "docker-gpu", "127.0.0.1:5000/ns") == "127.0.0.1:5000/ns/speech-asr:latest-gpu"
    for name in stack.images:
        assert len({stack.image_ref(name, mode) for mode in MODES}) == len(MODES)


def test_a_docker_gpu_build_leaves_docker_cpu_up_to_date(project: Path) -> None:
    stack = load_stack(project / "infra.yaml")
    engine = spec_engine(stack, "docker-cpu")                  # docker-cpu built and current
    cpu = render_to_disk(stack, "docker-cpu")
    assert stale_images(stack, "docker-cpu", cpu, engine) == []
    gpu = render_to_disk(stack, "docker-gpu")
    plan = plan_images(targets_for_mode(stack, "docker-gpu", gpu.out), lambda ref: None)
    for planned in plan.images.values():                       # then docker-gpu is built beside it
        engine.add_image(planned.target.ref, {HASH_LABEL: planned.content_hash})
    assert stale_images(stack, "docker-gpu", gpu, engine) == []
    assert stale_images(stack, "docker-cpu", cpu, engine) == [], "docker-gpu's images replaced docker-cpu's"
