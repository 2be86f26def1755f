"""`runbook lock status` and `runbook lock release --force` on two local hosts (each with its own lock directory),
and the forced release in the run history."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner import cli
from runner.engine import host_leases
from runner.records import lease_history


@pytest.fixture
def two_hosts(tmp_path: Path) -> Path:
    inventory = tmp_path / "hosts.yml"
    host = '{ansible_connection: local, ansible_python_interpreter: "{{ ansible_playbook_python }}", '
    inventory.write_text(
        "all:\n  children:\n    app:\n      hosts:\n"
        f"        h1: {host}runbook_lock_dir: {tmp_path / 'h1'}}}\n"
        f"        h2: {host}runbook_lock_dir: {tmp_path / 'h2'}}}\n"
    )
    return inventory


def test_status_names_each_lease_and_its_holder(
    two_hosts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host_leases.acquire_leases(two_hosts, "h1", "run-a", 600, owner="alice@control")
    host_leases.acquire_leases(two_hosts, "h1", "run-b", 600, owner="bob@control", name="db-maintenance")
    assert cli.main(["lock", "status", "-i", str(two_hosts)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:4] == ["HOST", "LEASE", "RUN", "OWNER"]
    rows = {tuple(line.split()[:4]) for line in out[1:]}
    assert ("h1", "host", "run-a", "alice@control") in rows and ("h1", "db-maintenance", "run-b", "bob@control") in rows
    assert any(line.startswith("h2 ") and line.endswith("(no lease)") for line in out)
    lease = next(line for line in out if " run-a " in line)
    assert "9m" in lease.split()[-1] or "10m" in lease.split()[-1]  # expires in, by the host's clock

    assert cli.main(["lock", "status", "h1", "-i", str(two_hosts), "--name", "host", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [(e["host"], e["name"], e["run_id"], e["live"]) for e in report["leases"]] == [("h1", "host", "run-a", True)]
    assert report["free"] == [] and report["no_answer"] == {}


def test_release_needs_force_then_removes_the_lease_and_history_shows_it(
    two_hosts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    host_leases.acquire_leases(two_hosts, "h1", "run-a", 600, owner="alice@control")
    assert cli.main(["lock", "release", "h1", "-i", str(two_hosts), "--state-dir", str(state)]) == 2
    assert "--force" in capsys.readouterr().err
    assert (tmp_path / "h1" / "host.json").exists()

    assert cli.main(["lock", "release", "app", "-i", str(two_hosts), "--force", "--state-dir", str(state)]) == 0
    out = capsys.readouterr().out
    assert "h1: removed lease 'host' of run run-a (alice@control" in out
    assert "h2: no lease to remove" in out
    assert not (tmp_path / "h1" / "host.json").exists()

    (event,) = lease_history.list_lease_events(state)
    assert (event.kind, event.host, event.name, event.holder_run_id) == ("forced_release", "h1", "host", "run-a")
    assert event.lease["owner"] == "alice@control" and event.operator
    assert cli.main(["history", "--state-dir", str(state)]) == 0
    shown = capsys.readouterr().out
    assert "released by hand" in shown and "h1" in shown and "held by run run-a" in shown


def test_a_pattern_matching_no_host_is_invalid(two_hosts: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["lock", "status", "nosuchhost", "-i", str(two_hosts)]) == 2
    assert "no host" in capsys.readouterr().err
