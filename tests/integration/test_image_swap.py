"""image_swap and verify roles against the lab, driven with plain ansible-playbook over SSH on app1.

Everything is asserted from outside: the container through app1's own Docker engine, the service over HTTP,
the release ledger by reading the file on the host.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

from runner import lab as lab_module

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = ROOT / "inventories" / "lab" / "hosts.yml"
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
HOST = "app1"
ADDRESS = "127.0.10.11"
LEDGER = "/var/lib/runbook/releases/backend.json"
HEALTH_URL = f"http://{ADDRESS}:8080/health"


# ------------------------------------------------------------------------------------------------- helpers


@dataclass
class Run:
    rc: int
    stdout: str
    outputs: Any

    @property
    def changed(self) -> int:
        match = re.search(rf"^{HOST}\s*:.*\bchanged=(\d+)", self.stdout, re.MULTILINE)
        assert match, self.stdout
        return int(match.group(1))


def play(tmp_path: Path, role: str, options: dict[str, Any], check: bool = False) -> Run:
    """Run one role on app1 with the given short options; returns rc, output and the role's runbook_outputs."""
    index = len(list(tmp_path.glob("play-*.yml")))
    out = tmp_path / f"outputs-{index}.json"
    playbook = [
        {
            "name": f"Drive the {role} role",
            "hosts": HOST,
            "gather_facts": False,
            "tasks": [
                {
                    "name": "Run the role and keep its outputs",
                    "block": [
                        {
                            "name": f"Include {role}",
                            "ansible.builtin.include_role": {"name": role},
                            "vars": {f"{role}_{key}": value for key, value in options.items()},
                        }
                    ],
                    "always": [
                        {
                            "name": "Save the outputs on the control node",
                            "ansible.builtin.copy": {
                                "content": "{{ runbook_outputs | default(none) | to_json }}",
                                "dest": str(out),
                                "mode": "0644",
                            },
                            "delegate_to": "localhost",
                            "check_mode": False,
                            "changed_when": False,
                        }
                    ],
                }
            ],
        }
    ]
    path = tmp_path / f"play-{index}.yml"
    path.write_text(json.dumps(playbook, indent=2))
    env = {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(ROOT / "runner" / "collections"),
        "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
        "ANSIBLE_PIPELINING": "1",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_LOCALHOST_WARNING": "0",
    }
    argv = [str(ANSIBLE_PLAYBOOK), "-i", str(INVENTORY), str(path)] + (["--check"] if check else [])
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300, check=False, cwd=tmp_path)
    outputs = json.loads(out.read_text()) if out.exists() else None
    return Run(proc.returncode, proc.stdout + proc.stderr, outputs)


def engine() -> docker.DockerClient:
    return docker.DockerClient(base_url=lab_module.docker_host(HOST))


def backend() -> dict[str, Any]:
    client = engine()
    try:
        attrs: dict[str, Any] = client.api.inspect_container("backend")
        return attrs
    finally:
        client.close()


def image_id(ref: str) -> str:
    client = engine()
    try:
        return str(client.api.inspect_image(ref)["Id"])
    finally:
        client.close()


def run_spec(attrs: dict[str, Any]) -> dict[str, Any]:
    """What the operator configured on the container (what a swap must keep)."""
    config, host_config = attrs["Config"], attrs["HostConfig"]
    return {
        "env": sorted(e for e in config["Env"] if e.startswith("APP_")),
        "labels": {k: v for k, v in (config.get("Labels") or {}).items() if k == "runbook.lab"},
        "restart": host_config["RestartPolicy"],
        "network": host_config["NetworkMode"],
        "ports": host_config.get("PortBindings") or {},
        "healthcheck": config.get("Healthcheck"),
    }


def health() -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(HEALTH_URL, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def ledger() -> dict[str, Any] | None:
    proc = subprocess.run(
        [*lab_module.ssh_argv(HOST), "--", f"cat {LEDGER}"], capture_output=True, text=True, timeout=30, check=False
    )
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def remove_ledger() -> None:
    subprocess.run([*lab_module.ssh_argv(HOST), "--", f"rm -f {LEDGER}"], timeout=30, check=True)


SWAP = {"container": "backend"}
VERIFY_V1 = {
    "http": [{"url": HEALTH_URL, "status": 200, "json": {"version": "v1", "status": "ok"}, "max_ms": 2000}],
    "attempts": 20,
    "interval": "500ms",
    "release": "backend",
}


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def lab_once(lab: object) -> object:
    """One reset for this module (about a minute); the tests below leave app1 on v1 or reset it again."""
    lab_module.reset(progress=lambda line: None)
    return lab


@pytest.fixture
def pristine(lab_once: object) -> dict[str, Any]:
    """app1's backend on v1, running, with an empty release ledger."""
    attrs = backend()
    if attrs["Config"]["Image"] != "lab/backend:v1" or not attrs["State"]["Running"]:
        lab_module.reset(progress=lambda line: None)
    remove_ledger()
    assert health() == (200, {"status": "ok", "version": "v1"})
    return backend()


# --------------------------------------------------------------------------------------------------- tests


def test_deploy_verify_and_roll_back_to_previous(pristine: dict[str, Any], tmp_path: Path) -> None:
    spec_v1 = run_spec(pristine)

    # The running v1 is adopted and marked verified (checks from the control node).
    verified = play(tmp_path, "verify", {**VERIFY_V1, "delegate": "control"})
    assert verified.rc == 0, verified.stdout
    assert verified.outputs["healthy"] is True and verified.outputs["release_id"] == 1
    assert [c["ok"] for c in verified.outputs["checks"]] == [True]

    # Deploy v2: same run spec, new image, the image's own defaults.
    deployed = play(tmp_path, "image_swap", {**SWAP, "to": "v2", "stop_timeout": 2})
    assert deployed.rc == 0, deployed.stdout
    assert deployed.outputs["version_before"] == "lab/backend:v1"
    assert deployed.outputs["version_after"] == "lab/backend:v2"
    assert deployed.outputs["release_id"] == 2
    attrs = backend()
    assert attrs["Config"]["Image"] == "lab/backend:v2"
    assert attrs["Image"] == image_id("lab/backend:v2")
    assert attrs["State"]["Running"]
    assert run_spec(attrs) == spec_v1
    assert (attrs["Config"].get("Labels") or {}).get("org.opencontainers.image.version") == "v2"
    assert health()[1].get("version") == "v2"

    # Same target again: nothing changes.
    again = play(tmp_path, "image_swap", {**SWAP, "to": "lab/backend:v2"})
    assert again.rc == 0, again.stdout
    assert again.changed == 0, again.stdout
    assert backend()["Id"] == attrs["Id"]

    # v2 fails verification: the step fails, its release stays unverified.
    failed = play(tmp_path, "verify", {**VERIFY_V1, "attempts": 2})
    assert failed.rc != 0
    assert "verification failed on app1" in failed.stdout
    assert failed.outputs["healthy"] is False and failed.outputs["checks"][0]["ok"] is False
    assert "status 500" in failed.outputs["checks"][0]["detail"]

    # previous = the last verified release before the current one: v1.
    rolled = play(tmp_path, "image_swap", {**SWAP, "to": "previous", "stop_timeout": 2})
    assert rolled.rc == 0, rolled.stdout
    assert rolled.outputs["version_before"] == "lab/backend:v2"
    assert rolled.outputs["version_after"] == "lab/backend:v1"
    assert rolled.outputs["action"] == "rollback"
    attrs = backend()
    assert attrs["Config"]["Image"] == "lab/backend:v1" and attrs["Image"] == image_id("lab/backend:v1")
    assert run_spec(attrs) == spec_v1
    assert health() == (200, {"status": "ok", "version": "v1"})

    verified_again = play(tmp_path, "verify", VERIFY_V1)
    assert verified_again.rc == 0, verified_again.stdout
    data = ledger()
    assert data is not None
    summary = [(r["id"], r["action"], r["image"], r["verified"]) for r in data["releases"]]
    assert summary == [
        (1, "adopt", "lab/backend:v1", True),
        (2, "deploy", "lab/backend:v2", False),
        (3, "rollback", "lab/backend:v1", True),
    ]
    assert data["current"] == 3 and data["releases"][2]["source_release"] == 1
    assert data["releases"][1]["image_id"] == image_id("lab/backend:v2")
    assert all(r["deployed_at"].endswith("Z") for r in data["releases"])

    # Nothing verified before v1 other than v1 itself: previous now refuses.
    none_left = play(tmp_path, "image_swap", {**SWAP, "to": "previous"})
    assert none_left.rc != 0
    assert "no earlier verified release of backend on app1; nothing changed" in none_left.stdout


def test_previous_on_an_empty_ledger_fails_and_changes_nothing(pristine: dict[str, Any], tmp_path: Path) -> None:
    result = play(tmp_path, "image_swap", {**SWAP, "to": "previous"})
    assert result.rc != 0
    assert "no earlier verified release of backend on app1; nothing changed" in result.stdout
    after = backend()
    assert after["Id"] == pristine["Id"]
    assert after["State"]["StartedAt"] == pristine["State"]["StartedAt"]
    assert health() == (200, {"status": "ok", "version": "v1"})
    assert ledger() is None


def test_missing_image_fails_before_the_old_container_stops(pristine: dict[str, Any], tmp_path: Path) -> None:
    result = play(tmp_path, "image_swap", {**SWAP, "to": "v9", "pull": True})
    assert result.rc != 0
    assert "image lab/backend:v9 is not present" in result.stdout
    assert "nothing changed" in result.stdout
    assert result.outputs["version_after"] == "lab/backend:v1"  # published by the failed step
    after = backend()
    assert after["Id"] == pristine["Id"]
    assert after["State"]["StartedAt"] == pristine["State"]["StartedAt"]  # never stopped
    assert health() == (200, {"status": "ok", "version": "v1"})
    client = engine()
    try:
        names = sorted(c.name for c in client.containers.list(all=True))
    finally:
        client.close()
    assert names == ["backend"]


def test_check_mode_says_what_it_would_do_and_changes_nothing(pristine: dict[str, Any], tmp_path: Path) -> None:
    result = play(tmp_path, "image_swap", {**SWAP, "to": "v2"}, check=True)
    assert result.rc == 0, result.stdout
    assert "Would swap backend on app1 (docker) from lab/backend:v1 to lab/backend:v2 (deploy)" in result.stdout
    assert result.outputs["check_mode"] is True and result.outputs["version_after"] == "lab/backend:v2"
    assert backend()["Id"] == pristine["Id"]
    assert ledger() is None

    checked = play(tmp_path, "verify", VERIFY_V1, check=True)
    assert checked.rc == 0, checked.stdout
    assert checked.outputs["healthy"] is None and checked.outputs["checks"][0]["ok"] is None
    assert ledger() is None


def test_unhealthy_new_image_puts_the_old_container_back(pristine: dict[str, Any], tmp_path: Path) -> None:
    result = play(tmp_path, "image_swap", {**SWAP, "to": "v2", "wait_healthy": 60, "stop_timeout": 2})
    assert result.rc != 0
    assert "became unhealthy" in result.stdout and "restored the old container (lab/backend:v1)" in result.stdout
    assert result.outputs["restored"] is True and result.outputs["version_after"] == "lab/backend:v1"
    after = backend()
    assert after["Id"] == pristine["Id"]  # the very same container, started again
    assert after["State"]["Running"] and after["Config"]["Image"] == "lab/backend:v1"
    assert run_spec(after) == run_spec(pristine)
    client = engine()
    try:
        names = sorted(c.name for c in client.containers.list(all=True))
    finally:
        client.close()
    assert names == ["backend"]
    deadline_ok = play(tmp_path, "verify", {**VERIFY_V1, "release": ""})
    assert deadline_ok.rc == 0, deadline_ok.stdout
