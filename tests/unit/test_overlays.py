"""User compose overlays (compose/*.yaml, compose/<mode>/*.yaml): the merge rules, loading, render, and refusals."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest
import yaml

from infra.errors import ConfigError
from infra.render.compose_merge import as_mapping, merge_compose
from tests.conftest import REPO

MODE = "docker-cpu"
STAGES = ["asr", "demux", "diarize", "mux", "setup-dirs", "subtitles", "vad"]


def write(project: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = project / "compose" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def render(project: Path, mode: str = MODE) -> dict[str, str]:
    from infra.render import default_layout, render_mode
    from infra.spec import load_stack

    stack = load_stack(project / "infra.yaml")
    return render_mode(stack, mode, default_layout(stack, mode))  # type: ignore[arg-type]


def services(files: dict[str, str], name: str = "compose.yaml") -> dict:
    return yaml.safe_load(files[name])["services"]


def refused(project: Path, text: str) -> list[str]:
    write(project, {"x.yaml": text})
    with pytest.raises(ConfigError) as caught:
        render(project)
    return caught.value.problems


# --- the merge rules, on parsed files ------------------------------------------------------------------------------

BASE = {
    "name": "speech",
    "services": {"asr": {
        "image": "speech-asr:latest",
        "command": ["python3", "-m", "stages.worker", "asr"],
        "environment": {"INFRA_STAGE": "asr", "HF_HOME": "/data/cache/huggingface"},
        "labels": {"io.infra.stage": "asr"},
        "healthcheck": {"test": ["CMD", "true"], "interval": "30s"},
        "depends_on": {"vad": {"condition": "service_started"}},
        "cap_drop": ["ALL"],
        "volumes": [{"type": "bind", "source": "../../../in", "target": "/data/in", "read_only": True},
                    {"type": "bind", "source": "../../../jobs", "target": "/data/jobs", "read_only": False}],
        "deploy": {"resources": {"reservations": {"cpus": "1"}}},
    }},
    "secrets": {"ca_bundle": {"file": "ca.pem"}},
}


def asr(overlay: dict) -> dict:
    return merge_compose(BASE, {"services": {"asr": overlay}})["services"]["asr"]


def test_mappings_merge_recursively_and_scalars_replace() -> None:
    merged = asr({"image": "other:1", "deploy": {"resources": {"limits": {"memory": "2g"}}},
                  "healthcheck": {"interval": "5s"}})
    assert merged["image"] == "other:1"
    assert merged["deploy"] == {"resources": {"reservations": {"cpus": "1"}, "limits": {"memory": "2g"}}}
    assert merged["healthcheck"] == {"test": ["CMD", "true"], "interval": "5s"}
    assert BASE["services"]["asr"]["image"] == "speech-asr:latest", "the base is not changed"


def test_environment_and_labels_merge_as_mappings_from_either_form() -> None:
    merged = asr({"environment": ["EXTRA=1", "HF_HOME=/nas/hf", "FROM_SHELL", "EQ=a=b"], "labels": ["team=speech"]})
    assert merged["environment"] == {"INFRA_STAGE": "asr", "HF_HOME": "/nas/hf", "EXTRA": "1", "FROM_SHELL": None,
                                     "EQ": "a=b"}
    assert merged["labels"] == {"io.infra.stage": "asr", "team": "speech"}
    again = merge_compose(merge_compose(BASE, {"services": {"asr": {"extra_hosts": ["nas:10.0.0.5"]}}}),
                          {"services": {"asr": {"extra_hosts": ["nas=10.0.0.6", "db:10.0.0.7"]}}})
    assert again["services"]["asr"]["extra_hosts"] == {"nas": "10.0.0.6", "db": "10.0.0.7"}


def test_list_forms_become_mappings() -> None:
    assert as_mapping(["A=1", "B"], "environment") == {"A": "1", "B": None}
    assert as_mapping(["host:10.0.0.1", "v6=::1"], "extra_hosts") == {"host": "10.0.0.1", "v6": "::1"}
    assert as_mapping(["demux"], "depends_on") == {"demux": {"condition": "service_started"}}
    assert as_mapping(["default"], "networks") == {"default": None}
    assert asr({"depends_on": ["demux"]})["depends_on"] == {"vad": {"condition": "service_started"},
                                                            "demux": {"condition": "service_started"}}


def test_volumes_merge_by_target() -> None:
    merged = asr({"volumes": ["/srv/nas:/data/nas:ro", "/srv/in:/data/in:ro",
                              {"type": "bind", "source": "/srv/jobs", "target": "/data/jobs/"}]})
    assert merged["volumes"] == ["/srv/in:/data/in:ro", {"type": "bind", "source": "/srv/jobs", "target": "/data/jobs/"},
                                 "/srv/nas:/data/nas:ro"]


def test_ports_expose_dns_append_without_duplicates() -> None:
    once = merge_compose(BASE, {"services": {"asr": {"ports": ["8080:80", "8080:80"], "dns": ["1.1.1.1"]}}})
    twice = merge_compose(once, {"services": {"asr": {"ports": ["8080:80", "9090:90"], "expose": [80],
                                                      "dns": ["1.1.1.1", "8.8.8.8"], "cap_drop": ["ALL", "NET_RAW"]}}})
    svc = twice["services"]["asr"]
    assert once["services"]["asr"]["ports"] == ["8080:80"]
    assert svc["ports"] == ["8080:80", "9090:90"] and svc["expose"] == [80]
    assert svc["dns"] == ["1.1.1.1", "8.8.8.8"] and svc["cap_drop"] == ["ALL", "NET_RAW"]


def test_command_entrypoint_and_healthcheck_test_replace() -> None:
    merged = asr({"command": ["sleep", "sleep"], "entrypoint": ["tini", "--"], "healthcheck": {"test": ["CMD", "x"]}})
    assert merged["command"] == ["sleep", "sleep"] and merged["entrypoint"] == ["tini", "--"]
    assert merged["healthcheck"]["test"] == ["CMD", "x"]
    assert merge_compose(BASE, {"services": {"new": {"image": "i", "command": ["a", "a"]}}})["services"]["new"] == \
        {"image": "i", "command": ["a", "a"]}


def test_top_level_sections_merge_by_name() -> None:
    merged = merge_compose(BASE, {"version": "3.8", "services": {"tool": {"image": "busybox"}},
                                  "volumes": {"nas": {"driver": "local"}, "cache": None},
                                  "networks": {"back": {}}, "secrets": {"ca_bundle": {"file": "other.pem"}, "t": {"file": "t"}},
                                  "x-note": {"a": 1}})
    assert sorted(merged["services"]) == ["asr", "tool"]
    assert merged["volumes"] == {"nas": {"driver": "local"}, "cache": {}}
    assert merged["networks"] == {"back": {}} and merged["x-note"] == {"a": 1}
    assert merged["secrets"] == {"ca_bundle": {"file": "other.pem"}, "t": {"file": "t"}}
    assert "version" not in merged


# --- loading ------------------------------------------------------------------------------------------------------

def test_the_repository_has_no_active_overlay() -> None:
    """compose/ holds an example and a README; neither is loaded, so the default rendered files stay as they are."""
    from infra.spec import load_stack

    assert (REPO / "compose" / "examples").is_dir()
    assert load_stack(REPO / "infra.yaml").overlays == ()


def test_files_load_all_modes_first_each_in_file_name_order(project: Path) -> None:
    from infra.render.overlay import overlays_for
    from infra.spec import load_stack

    write(project, {"b.yaml": "services: {}\n", "a.yml": "{}\n", "docker-cpu/0.yaml": "services: {}\n",
                    "docker-gpu/g.yaml": "{}\n", "examples/e.yaml": "{}\n", "notes.txt": "x\n"})
    stack = load_stack(project / "infra.yaml")
    assert [(o.file, o.mode) for o in stack.overlays] == [
        ("compose/a.yml", None), ("compose/b.yaml", None), ("compose/docker-cpu/0.yaml", "docker-cpu"),
        ("compose/docker-gpu/g.yaml", "docker-gpu")]
    assert [o.file for o in overlays_for(stack, "docker-gpu")] == ["compose/a.yml", "compose/b.yaml",
                                                                   "compose/docker-gpu/g.yaml"]


def test_later_files_win(project: Path) -> None:
    write(project, {"1.yaml": "services: {asr: {environment: {LEVEL: one}}}\n",
                    "docker-cpu/0.yaml": "services: {asr: {environment: {LEVEL: mode}}}\n",
                    "2.yaml": "services: {asr: {environment: [LEVEL=two]}}\n"})
    assert services(render(project))["asr"]["environment"]["LEVEL"] == "mode"
    assert services(render(project, "docker-gpu"))["asr"]["environment"]["LEVEL"] == "two"


def test_a_yaml_error_names_the_file_and_line(project: Path, run_cli) -> None:
    write(project, {"docker-cpu/nas.yaml": "services:\n  asr:\n    environment: [A=1\n"})
    result = run_cli("render", "--mode", MODE, cwd=project)
    assert result.code == 2
    first = result.stderr.splitlines()[0]
    assert first.startswith("error: compose/docker-cpu/nas.yaml: line 4, column 1: invalid YAML"), result.stderr
    assert "Traceback" not in result.stderr


def test_an_overlay_must_be_a_mapping_and_a_mode_folder_be_spelt_right(project: Path) -> None:
    from infra.spec import load_stack

    write(project, {"list.yaml": "- a\n", "docker-gpuu/x.yaml": "{}\n"})
    with pytest.raises(ConfigError) as caught:
        load_stack(project / "infra.yaml")
    assert caught.value.problems == [
        ("compose/docker-gpuu/: not a mode of infra.yaml (did you mean 'docker-gpu'?); "
        "overlays for one mode go in compose/<mode>/"),
        "compose/list.yaml: the top level must be a mapping of keys, not a list"]


# --- render -------------------------------------------------------------------------------------------------------

OVERLAY = """\
services:
  asr:
    environment:
      - EXTRA=1
    volumes:
      - ./nas:/data/nas:ro
      - {type: bind, source: /srv/models, target: /models, read_only: true}
  tool:
    image: speech-ffmpeg:latest
    command: [sleep, infinity]
    build: ./tool
    pull_policy: never
    ports: ["127.0.0.1:8080:8080"]
  setup-dirs:
    environment: {A: "1"}
volumes:
  nas: {}
"""


def test_render_merges_the_overlay_into_compose_and_swarm(project: Path) -> None:
    plain = render(project)
    write(project, {"10-nas.yaml": OVERLAY, "docker-gpu/gpu.yaml": "services: {asr: {environment: {GPU_ONLY: '1'}}}\n"})
    files = render(project)
    assert {k: v for k, v in files.items() if k not in ("compose.yaml", "stack.yaml")} == \
        {k: v for k, v in plain.items() if k not in ("compose.yaml", "stack.yaml")}
    compose = services(files)
    asr = compose["asr"]
    assert asr["environment"]["EXTRA"] == "1" and asr["environment"]["INFRA_STAGE"] == "asr"
    assert "GPU_ONLY" not in asr["environment"], "a file in compose/docker-gpu/ is for docker-gpu only"
    assert "../../../nas:/data/nas:ro" in asr["volumes"], "a relative path is the project's, seen from the output"
    assert {"type": "bind", "source": "/srv/models", "target": "/models", "read_only": True} in asr["volumes"]
    assert asr["cap_drop"] == ["ALL"] and asr["security_opt"] == ["no-new-privileges:true"]
    assert compose["tool"] == {"image": "speech-ffmpeg:latest", "command": ["sleep", "infinity"],
                               "build": "../../../tool", "pull_policy": "never", "ports": ["127.0.0.1:8080:8080"]}
    assert compose["setup-dirs"]["environment"] == {"A": "1"}
    assert yaml.safe_load(files["compose.yaml"])["volumes"] == {"nas": {}}
    header = files["compose.yaml"].split("\nname:")[0]
    assert header == plain["compose.yaml"].split("\nname:")[0] + \
        "\n# Merged with the compose overlays compose/10-nas.yaml (keys sorted)."

    swarm = services(files, "stack.yaml")
    assert swarm["tool"] == {"image": "speech-ffmpeg:latest", "command": ["sleep", "infinity"],
                             "ports": ["127.0.0.1:8080:8080"]}, "compose-only keys stay out of the swarm file"
    assert "setup-dirs" not in swarm and swarm["asr"]["environment"]["EXTRA"] == "1"
    assert "# Left out here (not for docker stack deploy): services.tool.build (compose/10-nas.yaml)" in files["stack.yaml"]
    assert "# Left out here (not for docker stack deploy): services.setup-dirs (compose/10-nas.yaml: compose only)" \
        in files["stack.yaml"]
    assert render(project) == files, "rendering again gives the same bytes"
    assert services(render(project, "docker-gpu"))["asr"]["environment"]["GPU_ONLY"] == "1"


def test_a_stage_without_a_service_in_a_mode_is_left_out_there(project: Path) -> None:
    """A file for every mode may name a stage that native mode runs on the host (it has no service there)."""
    write(project, {"asr.yaml": "services: {asr: {environment: {EXTRA: '1'}}, demux: {environment: {EXTRA: '2'}}}\n"})
    native = render(project, "native")
    assert "asr" not in services(native) and services(native)["demux"]["environment"]["EXTRA"] == "2"
    assert "# Left out here (no such service in native): services.asr (compose/asr.yaml)" in native["compose.yaml"]
    assert "# Left out here (no such service in native): services.asr (compose/asr.yaml)" in native["stack.yaml"]
    assert services(render(project))["asr"]["environment"]["EXTRA"] == "1"
    assert refused(project, "services: {asr: {privileged: true}}\n")  # in docker-cpu, where it runs


def test_render_check_compares_the_merged_files(project: Path, run_cli) -> None:
    write(project, {"env.yaml": "services: {asr: {environment: {EXTRA: '1'}}}\n"})
    assert run_cli("render", "--mode", MODE, cwd=project).code == 0
    written = (project / ".infra" / "out" / MODE / "compose.yaml").read_text()
    assert yaml.safe_load(written)["services"]["asr"]["environment"]["EXTRA"] == "1"
    assert run_cli("render", "--check", "--mode", MODE, cwd=project).code == 0
    write(project, {"env.yaml": "services: {asr: {environment: {EXTRA: '2'}}}\n"})
    result = run_cli("render", "--check", "--mode", MODE, cwd=project)
    assert result.code == 1
    assert "-      EXTRA: '1'\n+      EXTRA: '2'\n" in result.stdout


def test_the_example_overlay_renders_when_copied_in(project: Path) -> None:
    plain = render(project)
    shutil.copytree(REPO / "compose", project / "compose")
    before = render(project)
    assert before == plain, "README.md and examples/ are not loaded"
    shutil.copy(REPO / "compose" / "examples" / "nas-and-sidecar.yaml", project / "compose" / "nas-and-sidecar.yaml")
    after = services(render(project))
    assert services(before)["asr"] != after["asr"]
    assert after["asr"]["environment"]["HF_HUB_OFFLINE"] == "1" and "nas:/data/nas:ro" in after["asr"]["volumes"]
    assert after["results"]["image"] == "speech-base:latest-cpu"
    assert after["results"]["volumes"] == ["../../../out:/data/out:ro"]


# --- refusals -----------------------------------------------------------------------------------------------------

def test_an_unknown_service_without_an_image_is_a_typo(project: Path) -> None:
    assert refused(project, "services: {asrr: {environment: {A: '1'}}}\n") == [
        (f"compose/x.yaml: services.asrr: unknown service 'asrr' (services: {', '.join(STAGES)}); "
        "did you mean 'asr'? (a new service needs an 'image')")]
    assert refused(project, "services: {zzz: {}}\n") == [
        (f"compose/x.yaml: services.zzz: unknown service 'zzz' (services: {', '.join(STAGES)}); "
        "a new service needs an 'image'")]


@pytest.mark.parametrize("volume", [
    "./mine:/opt/infra/native-site",
    "./mine:/opt/infra/native-site/torch:ro",
    "{type: bind, source: ./mine, target: /opt/infra/native-site/, read_only: false}",
    "{type: tmpfs, target: /opt/infra/native-site}",
])
@pytest.mark.parametrize("service", ["asr", "tool"])
def test_nothing_mounts_over_the_native_environment(project: Path, volume: str, service: str) -> None:
    image = "image: busybox, " if service == "tool" else ""
    problems = refused(project, f"services: {{{service}: {{{image}volumes: [{volume}]}}}}\n")
    assert len(problems) == 1
    assert problems[0].startswith(f"compose/x.yaml: services.{service}.volumes[0]: target '/opt/infra/native-site")
    assert "is the read-only native environment (/opt/infra/native-site); an overlay may not mount over it" in problems[0]


def test_nothing_makes_the_native_environment_writable(project: Path) -> None:
    problems = refused(project, """\
        services:
          tool:
            image: busybox
            volumes: ["./.venv-ml:/env", "./.venv-ml/lib:/lib-ro:ro", {type: bind, source: venv-ml-link/../.venv-ml/lib, target: /l},
                      {type: bind, source: ./.venv-ml, target: /ro, read_only: true}]
            tmpfs: [/opt/infra/native-site/x]
            volumes_from: ["asr:rw", "demux:ro"]
        """)
    assert problems == [
        ("compose/x.yaml: services.tool.volumes[0]: mounts the native environment (./.venv-ml) writable; "
        "mount it read-only (':ro' or read_only: true) or not at all"),
        ("compose/x.yaml: services.tool.volumes[2]: mounts the native environment (venv-ml-link/../.venv-ml/lib) writable; "
        "mount it read-only (':ro' or read_only: true) or not at all"),
        ("compose/x.yaml: services.tool.tmpfs[0]: '/opt/infra/native-site/x' would hide the read-only native "
        "environment (/opt/infra/native-site)"),
        ("compose/x.yaml: services.tool.volumes_from[0]: 'asr:rw' would make the native environment writable; "
        "use 'asr:ro'")]


def test_a_stage_service_is_not_loosened_but_a_sidecar_may_be(project: Path) -> None:
    loosening = """\
        privileged: true
        cap_add: [SYS_ADMIN]
        pid: host
        network_mode: host
        ipc: host
        security_opt: ["seccomp:unconfined", "no-new-privileges=false", "label:disable"]
        volumes: ["/var/run/docker.sock:/var/run/docker.sock"]
    """
    body = textwrap.indent(textwrap.dedent(loosening), "    ")
    problems = refused(project, "services:\n  asr:\n" + body + "  tool:\n    image: busybox\n" + body)
    what = "stage service 'asr'"
    assert problems == [
        f"compose/x.yaml: services.asr.privileged: refused on {what}; run what needs it in a sidecar service",
        (f"compose/x.yaml: services.asr.cap_add: refused on {what}, which drops every capability; "
        "run what needs it in a sidecar service"),
        f"compose/x.yaml: services.asr.pid: 'host' is refused on {what}: it would share the host's namespace",
        f"compose/x.yaml: services.asr.network_mode: 'host' is refused on {what}: it would share the host's namespace",
        f"compose/x.yaml: services.asr.ipc: 'host' is refused on {what}: it would share the host's namespace",
        (f"compose/x.yaml: services.asr.security_opt[0]: 'seccomp:unconfined' is refused on {what}: "
        "it lifts its confinement"),
        (f"compose/x.yaml: services.asr.security_opt[1]: 'no-new-privileges=false' is refused on {what}: "
        "it lifts its confinement"),
        f"compose/x.yaml: services.asr.volumes[0]: the Docker socket is refused on {what}: it is root on the host",
    ], "the sidecar 'tool' may do all of it"
    assert refused(project, "services: {setup-dirs: {cap_add: [SYS_ADMIN]}}\n") == [
        ("compose/x.yaml: services.setup-dirs.cap_add: refused on infra's service 'setup-dirs', which drops every "
        "capability; run what needs it in a sidecar service")]


def test_unknown_top_level_keys_and_the_project_name(project: Path) -> None:
    assert refused(project, "servces: {}\nname: other\nvolumes: [a]\n") == [
        "compose/x.yaml: unknown top-level key 'servces' (did you mean 'services'?)",
        "compose/x.yaml: name: the compose project is named by 'project' in infra.yaml",
        "compose/x.yaml: volumes: must be a mapping of names"]
    assert refused(project, "services: {asr: {volumes: ./x:/y}}\n") == [
        "compose/x.yaml: services.asr.volumes: must be a list"]


def test_every_problem_of_every_file_is_reported_with_exit_2(project: Path, run_cli) -> None:
    write(project, {"a.yaml": "services: {asr: {privileged: true}}\n",
                    "docker-cpu/b.yaml": "services: {vadd: {environment: [A=1]}}\n"})
    result = run_cli("render", "--mode", MODE, cwd=project)
    assert result.code == 2 and "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == ("error: compose/a.yaml: services.asr.privileged: refused on stage service 'asr'; "
                        "run what needs it in a sidecar service")
    assert lines[1].startswith("error: compose/docker-cpu/b.yaml: services.vadd: unknown service 'vadd' (services: ")
    assert "did you mean 'vad'?" in lines[1] and "sidecar service" in lines[-1]
    assert not (project / ".infra" / "out" / MODE / "compose.yaml").exists(), "nothing is written"
