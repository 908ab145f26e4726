"""The SBOM of an image: the inventory probe, the CycloneDX document, the references in it."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from infra.build.inventory import (
    DebPackage,
    Inventory,
    PythonDist,
    _collect,
    collect_code,
    inventory,
    parse_dpkg_status,
    parse_inventory,
)
from infra.build.sbom import ImageIdentity, deb_purl, make_sbom, oci_purl, pypi_purl
from infra.engine.fake import FakeEngine
from infra.errors import OperationError
from infra.oci.summary import sbom_summary

STATUS = """\
Package: bsdutils
Status: install ok installed
Priority: required
Architecture: amd64
Source: util-linux (2.38.1-5)
Version: 1:2.38.1-5+deb12u3
Description: basic utilities from 4.4BSD-Lite
 This package contains the bare minimum of BSD utilities
 .
 needed for a Debian system.

Package: oldconf
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0

Package: halfway
Status: install reinstreq half-installed
Architecture: amd64
Version: 2.0

Package: python3-yaml
Status: hold ok installed
Architecture: amd64
Source: pyyaml
Version: 6.0-3+b2

Package: tzdata
Status: install ok installed
Architecture: all
Version: 2024a-0+deb12u1
"""

DIGEST = "sha256:" + "ab" * 32


def test_dpkg_status_keeps_installed_packages_only() -> None:
    found = {p["name"]: p for p in parse_dpkg_status(STATUS)}
    assert sorted(found) == ["bsdutils", "python3-yaml", "tzdata"]
    assert found["bsdutils"] == {"name": "bsdutils", "version": "1:2.38.1-5+deb12u3", "arch": "amd64",
                                 "source": "util-linux"}
    assert found["python3-yaml"]["source"] == "pyyaml"
    assert found["tzdata"]["source"] == "" and found["tzdata"]["arch"] == "all"


def test_the_probe_reads_a_root_and_runs_on_its_own(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The probe sent into images reads dpkg's status and status.d, and os-release, under a root."""
    (tmp_path / "var/lib/dpkg/status.d").mkdir(parents=True)
    (tmp_path / "var/lib/dpkg/status").write_text(STATUS)
    (tmp_path / "var/lib/dpkg/status.d/libssl3").write_text(
        "Package: libssl3\nStatus: install ok installed\nArchitecture: amd64\nVersion: 3.0.15-1\n")
    (tmp_path / "var/lib/dpkg/status.d/libssl3.md5sums").write_text("not a stanza\n")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/os-release").write_text('ID=debian\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\n')
    _collect(str(tmp_path))
    inv = parse_inventory(capsys.readouterr().out, "test")
    assert [d.name for d in inv.debs] == ["bsdutils", "libssl3", "python3-yaml", "tzdata"]
    assert (inv.os_id, inv.os_version, inv.os_codename) == ("debian", "12", "bookworm")
    assert inv.python == "%d.%d.%d" % sys.version_info[:3]
    assert "pytest" in {d.key for d in inv.dists}          # this interpreter's own distributions


def test_the_probe_program_is_self_contained() -> None:
    """What the container runs is a program on its own: a fresh interpreter without infra prints the inventory."""
    proc = subprocess.run([sys.executable, "-I", "-c", collect_code()], capture_output=True, text=True, cwd="/")
    assert proc.returncode == 0, proc.stderr
    inv = parse_inventory(proc.stdout, "host")
    assert inv.python and all(d.version for d in inv.dists)
    assert "infra" not in proc.stdout.split('"dists"')[0]


def test_inventory_through_the_engine() -> None:
    answer = json.dumps({"os": {"id": "debian", "version": "12", "codename": "bookworm"}, "python": "3.11.2",
                         "debs": parse_dpkg_status(STATUS),
                         "dists": [{"name": "PyYAML", "version": "6.0", "location": "/usr/lib/python3/dist-packages"},
                                   {"name": "faster_whisper", "version": "1.2.1", "location": "/opt/venv/lib"}]})
    engine = FakeEngine({"speech-asr:latest-cpu": {}}, python_output={"speech-asr": answer})
    inv = inventory(engine, "speech-asr:latest-cpu")
    assert [d.key for d in inv.dists] == ["faster-whisper", "pyyaml"]
    assert engine.calls[-1] == ("run_python", "speech-asr:latest-cpu")


def test_an_image_without_python_is_one_line() -> None:
    engine = FakeEngine({"plain:latest": {}})
    with pytest.raises(OperationError, match="cannot list what plain:latest holds: the image has no python3"):
        inventory(engine, "plain:latest")


def test_an_answer_that_is_not_the_probe_s_is_refused() -> None:
    with pytest.raises(OperationError, match="is not what infra's probe prints"):
        parse_inventory("Traceback (most recent call last):\n", "x")


def test_purls() -> None:
    assert deb_purl("bsdutils", "1:2.38.1-5+deb12u3", "amd64", "debian", "debian-12") == \
        "pkg:deb/debian/bsdutils@1:2.38.1-5%2Bdeb12u3?arch=amd64&distro=debian-12"
    assert deb_purl("tzdata", "2024a", "all") == "pkg:deb/debian/tzdata@2024a?arch=all"
    assert pypi_purl(PythonDist("Faster_Whisper", "1.2.1", "/x").key, "1.2.1") == "pkg:pypi/faster-whisper@1.2.1"
    assert oci_purl("127.0.0.1:5000/speech/speech-asr", DIGEST, "latest-cpu") == \
        f"pkg:oci/speech-asr@sha256:{'ab' * 32}?repository_url=127.0.0.1:5000/speech/speech-asr&tag=latest-cpu"


INVENTORY = Inventory("debian", "12", "bookworm", "3.11.2",
                      (DebPackage("bsdutils", "1:2.38.1-5+deb12u3", "amd64", "util-linux"),
                       DebPackage("python3-yaml", "6.0-3+b2", "amd64", "pyyaml")),
                      (PythonDist("Faster_Whisper", "1.2.1", "/opt/venv/lib/python3.11/site-packages"),
                       PythonDist("PyYAML", "6.0", "/usr/lib/python3/dist-packages")))
IMAGE = ImageIdentity("127.0.0.1:5000/speech/speech-asr", DIGEST, "latest-cpu",
                      datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc))


def test_the_sbom_is_valid_cyclonedx_1_6() -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    document = make_sbom(INVENTORY, IMAGE)
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(document.decode()) is None


def test_the_sbom_describes_the_image_and_what_it_holds() -> None:
    doc = json.loads(make_sbom(INVENTORY, IMAGE))
    root = doc["metadata"]["component"]
    assert (root["type"], root["name"], root["version"]) == ("container", IMAGE.repository, DIGEST)
    assert root["hashes"] == [{"alg": "SHA-256", "content": "ab" * 32}]
    assert doc["metadata"]["timestamp"].startswith("2026-12-02T12:00:00")
    purls = {c["name"]: c.get("purl") for c in doc["components"]}
    assert purls == {
        "debian": None,
        "bsdutils": "pkg:deb/debian/bsdutils@1:2.38.1-5%2Bdeb12u3?arch=amd64&distro=debian-12",
        "python3-yaml": "pkg:deb/debian/python3-yaml@6.0-3%2Bb2?arch=amd64&distro=debian-12",
        "Faster_Whisper": "pkg:pypi/faster-whisper@1.2.1",
        "PyYAML": "pkg:pypi/pyyaml@6.0",
    }
    [system] = [c for c in doc["components"] if c["type"] == "operating-system"]
    assert (system["name"], system["version"]) == ("debian", "12")
    [graph] = [d for d in doc["dependencies"] if d["ref"] == DIGEST]
    assert len(graph["dependsOn"]) == 5
    summary = sbom_summary(doc)
    assert summary["by_kind"] == {"deb": 2, "pypi": 2} and summary["components"] == 4
    assert summary["operating_system"] == "debian 12" and summary["format"] == "CycloneDX 1.6"


def test_the_same_image_gives_the_same_bytes() -> None:
    """Serial number and timestamp come from the image, so attaching again finds the same artifact."""
    first = make_sbom(INVENTORY, IMAGE)
    assert make_sbom(INVENTORY, IMAGE) == first
    other = ImageIdentity(IMAGE.repository, "sha256:" + "cd" * 32, IMAGE.tag, IMAGE.created)
    assert json.loads(make_sbom(INVENTORY, other))["serialNumber"] != json.loads(first)["serialNumber"]
