"""Host leases taken and given back inside the run's own ansible-playbook calls (real Ansible, local hosts), and
`runbook lock status` / `lock release --force` on the lab's hosts.

Each local host gets a lock directory of its own under tmp_path (runbook_lock_dir), so that other local runs,
which share /var/lib/runbook/locks on this machine, can neither hold nor see these leases.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ansible_runner
import pytest
from labtools import INVENTORY, host_sh, runbook_cli

from runner import api
from runner.engine import host_leases, run_leases
from runner.engine.lease_holder import HolderIdentity, process_start
from runner.engine.runflow import RunOptions
from runner.language.model import Step

LOCAL = 'ansible_connection: local, ansible_python_interpreter: "{{ ansible_playbook_python }}"'


# A host whose SSH fails while the lease is taken and works again right after: local once the lease task's
# result is registered on it (only when the lease play ignores an unreachable host), ssh to a closed port before.
FLAKY = (
    "ansible_host: 127.0.0.1, ansible_port: 1, ansible_python_interpreter: \"{{ ansible_playbook_python }}\", "
    "ansible_connection: \"{{ 'local' if runbook_lease_result is defined else 'ssh' }}\""
)


def inventory(tmp_path: Path, *, unreachable: bool = False, flaky: bool = False) -> Path:
    lines = ["all:", "  children:", "    app:", "      hosts:"]
    for host in ("h1", "h2"):
        lines.append(f"        {host}: {{{LOCAL}, runbook_lock_dir: {tmp_path / 'locks' / host}}}")
    if unreachable:  # connection refused at once: nothing listens on port 1
        lines.append(
            "        gone: {ansible_host: 127.0.0.1, ansible_port: 1, ansible_connection: ssh, "
            f"runbook_lock_dir: {tmp_path / 'locks' / 'gone'}}}"
        )
    if flaky:
        lines.append(f"        flaky: {{{FLAKY}, runbook_lock_dir: {tmp_path / 'locks' / 'flaky'}}}")
    path = tmp_path / "hosts.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


def runbook_text(*, gate: bool = False, gate_first: bool = False, fail: bool = False) -> str:
    first_gate = "confirm: 'Go?'," if gate_first else ""
    second_gate = "confirm: 'Really?'," if gate else ""
    return f"""apiVersion: runbook/v1
kind: Runbook
metadata: {{name: leases, severity: SEV2}}
spec:
  params:
    out: {{type: string}}
  steps:
    - {{id: write, hosts: app, uses: fixture_step, {first_gate}
       with: {{write: one, file: "{{{{ params.out }}}}-write-{{{{ inventory_hostname }}}}"}}}}
    - {{id: second, hosts: app, uses: fixture_step, {second_gate}
       with: {{write: two, file: "{{{{ params.out }}}}-second-{{{{ inventory_hostname }}}}",
              fail: {str(fail).lower()}}}}}
  on_failure:
    - {{id: undo, hosts: app, uses: fixture_step, with: {{healthy: true}}}}
"""


def lease_of(tmp_path: Path, host: str) -> dict[str, Any] | None:
    path = tmp_path / "locks" / host / "host.json"
    return json.loads(path.read_text()) if path.exists() else None


def hold(tmp_path: Path, host: str, run_id: str, pid: int) -> None:
    """A live lease of another run of this control node (its process: pid), as the lease module writes it."""
    directory = tmp_path / "locks" / host
    directory.mkdir(parents=True, exist_ok=True)
    lease = {
        "format": 1,
        "name": "host",
        "run_id": run_id,
        "owner": "other@control",
        **HolderIdentity.of_this_process().lease_fields(),
        "pid": pid,
        "pid_start": process_start(pid) or 1,
        "expires_at": "2999-01-01T00:00:00.000Z",
        "expires_epoch": 32503680000.0,
        "ttl": 600,
    }
    (directory / "host.json").write_text(json.dumps(lease))


@pytest.fixture
def playbook_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every ansible-playbook the run starts (its own calls and any lease playbook), by playbook name."""
    calls: list[str] = []
    original = ansible_runner.run

    def counted(**kwargs: Any) -> Any:
        calls.append(str(kwargs.get("playbook")))
        return original(**kwargs)

    monkeypatch.setattr(ansible_runner, "run", counted)
    return calls


def run(
    tmp_path: Path,
    roles_paths: list[Path],
    text: str,
    *,
    hosts: Path | None = None,
    progress: Callable[[str, dict[str, Any]], None] | None = None,
    params: tuple[str, ...] = (),
    **options: Any,
) -> Any:
    path = tmp_path / "leases.yml"
    path.write_text(text)
    runbook = api.load(path, roles_paths)
    params_given = api.resolve_params(runbook, [f"out={tmp_path}/out", *params])
    opts = RunOptions(
        inventory=hosts or inventory(tmp_path),
        roles_paths=roles_paths,
        state_dir=tmp_path / "state",
        progress=progress,
        **options,
    )
    return api.run(runbook, params_given, opts)


def artifacts(result: Any) -> list[str]:
    return sorted(p.name for p in (result.run_dir / "ansible" / "artifacts").iterdir())


def journal(result: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (result.run_dir / "journal.jsonl").read_text().splitlines()]


def test_success_is_one_playbook_call_and_leaves_no_lease(
    tmp_path: Path, roles_paths: list[Path], playbook_calls: list[str]
) -> None:
    during: list[dict[str, Any] | None] = []

    def progress(kind: str, data: dict[str, Any]) -> None:
        if kind == "step_result" and data["step_id"] == "second":
            during.append(lease_of(tmp_path, data["host"]))

    result = run(tmp_path, roles_paths, runbook_text(gate=True), progress=progress, assume_yes=True)
    assert (result.status, result.exit_status) == ("succeeded", 0)
    # --yes: the approval is known before the run, so the gate does not split the call
    assert playbook_calls == ["runbook_lease_main_last.yml"]
    assert artifacts(result) == ["main-write"]
    assert [r["step"] for r in journal(result) if r["kind"] == "approved"] == ["second"]
    assert len(during) == 2 and all(lease and lease["run_id"] == result.run_id for lease in during)
    assert lease_of(tmp_path, "h1") is None and lease_of(tmp_path, "h2") is None  # released in the same call
    assert result.report.to_json()["lock"]["hosts"] == ["h1", "h2"]


def test_later_calls_keep_the_lease_and_the_last_gives_it_back(
    tmp_path: Path, roles_paths: list[Path], playbook_calls: list[str]
) -> None:
    at_gate: list[dict[str, Any] | None] = []

    def approver(step: Step, question: str) -> bool:
        at_gate.extend(lease_of(tmp_path, h) for h in ("h1", "h2"))
        return True

    result = run(tmp_path, roles_paths, runbook_text(gate=True), approver=approver)
    assert result.exit_status == 0
    assert playbook_calls == ["runbook_lease_main.yml", "runbook_lease_main_last.yml"]  # one call per segment
    assert artifacts(result) == ["main-second", "main-write"]
    assert all(lease and lease["run_id"] == result.run_id for lease in at_gate)  # held between the two calls
    assert lease_of(tmp_path, "h1") is None and lease_of(tmp_path, "h2") is None


def test_a_held_host_stops_every_step_on_every_host_with_exit_4(
    tmp_path: Path, roles_paths: list[Path], playbook_calls: list[str]
) -> None:
    hold(tmp_path, "h2", "other-run", os.getpid())  # alive: this very process
    with pytest.raises(host_leases.LeaseHeld) as caught:
        run(tmp_path, roles_paths, runbook_text(), assume_yes=True)
    assert caught.value.exit_status == 4
    assert caught.value.holders["h2"] is not None and caught.value.holders["h2"]["run_id"] == "other-run"
    assert "held by run other-run" in str(caught.value)
    assert not list(tmp_path.glob("out-*")), "a step ran although a host was held"
    assert lease_of(tmp_path, "h1") is None  # what the run took is given back
    held = lease_of(tmp_path, "h2")
    assert held is not None and held["run_id"] == "other-run"  # the other run's lease is untouched
    assert playbook_calls == ["runbook_lease_main_last.yml", "lease.yml"]  # the call, then the slow-path release
    run_dir = next((tmp_path / "state" / "runs").iterdir())
    report = json.loads((run_dir / "report.json").read_text())
    assert report["lock"]["held_by"]["h2"]["run_id"] == "other-run" and report["steps"] == []
    kinds = [json.loads(line)["kind"] for line in (run_dir / "journal.jsonl").read_text().splitlines()]
    assert kinds == ["lock_held", "run_end"]


def test_a_dead_holder_on_this_control_node_is_taken_over(
    tmp_path: Path, roles_paths: list[Path], playbook_calls: list[str]
) -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)  # a pid that surely is gone
    hold(tmp_path, "h2", "dead-run", pid)
    result = run(tmp_path, roles_paths, runbook_text(), assume_yes=True)
    assert result.exit_status == 0
    assert result.report.to_json()["lock"]["taken_over"]["h2"]["run_id"] == "dead-run"
    assert (tmp_path / "out-write-h2").read_text() == "one"
    assert lease_of(tmp_path, "h1") is None and lease_of(tmp_path, "h2") is None


def test_on_failure_runs_under_the_lease_and_then_it_is_released(
    tmp_path: Path, roles_paths: list[Path], playbook_calls: list[str]
) -> None:
    during: list[dict[str, Any] | None] = []

    def progress(kind: str, data: dict[str, Any]) -> None:
        if kind == "step_result" and data["phase"] == "on_failure":
            during.append(lease_of(tmp_path, data["host"]))

    result = run(tmp_path, roles_paths, runbook_text(fail=True), progress=progress, assume_yes=True)
    assert (result.status, result.exit_status) == ("rolled_back", 1)
    assert len(during) == 2 and all(lease and lease["run_id"] == result.run_id for lease in during)
    assert playbook_calls == ["runbook_lease_main_last.yml", "runbook_lease_on_failure_last.yml"]
    assert lease_of(tmp_path, "h1") is None and lease_of(tmp_path, "h2") is None


def test_an_unreachable_host_does_not_stop_the_lease_on_the_others(
    tmp_path: Path, roles_paths: list[Path], playbook_calls: list[str]
) -> None:
    hosts = inventory(tmp_path, unreachable=True)
    result = run(tmp_path, roles_paths, runbook_text(), hosts=hosts, assume_yes=True, no_rollback=True)
    assert result.report.to_json()["lock"]["hosts"] == ["h1", "h2"]  # locked, though `gone` could not be
    statuses = {(s["id"], s["host"]): s["status"] for s in result.report.to_json()["steps"]}
    assert statuses[("write", "gone")] == "unreachable"  # its steps fail there, as before
    assert (tmp_path / "out-write-h1").read_text() == "one"
    assert result.exit_status == 3
    assert lease_of(tmp_path, "h1") is None and lease_of(tmp_path, "h2") is None  # released by the runner


def test_when_the_first_step_asks_an_operator_the_leases_come_first(
    tmp_path: Path, roles_paths: list[Path], playbook_calls: list[str]
) -> None:
    asked: list[list[dict[str, Any] | None]] = []

    def approver(step: Step, question: str) -> bool:
        asked.append([lease_of(tmp_path, h) for h in ("h1", "h2")])
        return True

    result = run(tmp_path, roles_paths, runbook_text(gate_first=True), approver=approver)
    assert result.exit_status == 0
    assert len(asked) == 1 and all(lease and lease["run_id"] == result.run_id for lease in asked[0])
    assert playbook_calls == ["lease.yml", "runbook_lease_main_last.yml"]  # acquired up front, released in the call
    assert lease_of(tmp_path, "h1") is None and lease_of(tmp_path, "h2") is None

    asked.clear()
    hold(tmp_path, "h1", "other-run", os.getpid())
    with pytest.raises(host_leases.LeaseHeld):
        run(tmp_path, roles_paths, runbook_text(gate_first=True), approver=approver)
    assert asked == []  # nobody is asked to approve a step on a host another run holds


def test_renewals_extend_the_leases_the_calls_took(tmp_path: Path) -> None:
    hosts = inventory(tmp_path)
    for host in ("h1", "h2"):
        host_leases.acquire_leases(hosts, host, "run-r", 3)
    before = {h: lease_of(tmp_path, h) for h in ("h1", "h2")}
    leases = run_leases.RunLeases(hosts, ["h1", "h2"], "run-r", 3)
    leases.took(host_leases.HostLease(host="h1", ok=True, acquired=True))  # as the acquire play's event says
    leases.start_renewals()  # every ttl/3, at least 1 s
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            now = lease_of(tmp_path, "h1")
            if now and before["h1"] and now["renewed_at"] != before["h1"]["renewed_at"]:
                break
            time.sleep(0.2)
        else:
            pytest.fail("h1's lease was not renewed")
    finally:
        leases.finish()
    assert lease_of(tmp_path, "h1") is None  # finish() gives back what the calls did not release
    assert lease_of(tmp_path, "h2") == before["h2"]  # never taken by this run's calls: neither renewed nor released


def templated_runbook() -> str:
    return """apiVersion: runbook/v1
kind: Runbook
metadata: {name: leases, severity: SEV2}
spec:
  params:
    out: {type: string}
    target: {type: string}
  steps:
    - {id: write, hosts: h1, uses: fixture_step,
       with: {write: one, file: "{{ params.out }}-write-{{ inventory_hostname }}"}}
    - {id: pick, hosts: "{{ params.target }}", uses: fixture_step,
       with: {write: picked, file: "{{ params.out }}-pick-{{ inventory_hostname }}"}}
    - {id: named, name: "Again on {{ params.target }}", hosts: "{{ params.target }}", uses: fixture_step}
"""


def test_a_templated_hosts_pattern_is_leased_and_its_results_are_collected(
    tmp_path: Path, roles_paths: list[Path], playbook_calls: list[str]
) -> None:
    during: list[dict[str, Any] | None] = []

    def progress(kind: str, data: dict[str, Any]) -> None:
        if kind == "step_result" and data["step_id"] == "pick":
            during.append(lease_of(tmp_path, data["host"]))

    result = run(tmp_path, roles_paths, templated_runbook(), params=("target=h2",), progress=progress, assume_yes=True)
    assert (result.status, result.exit_status) == ("succeeded", 0), result.message
    (taken,) = [r for r in journal(result) if r["kind"] == "lock_taken"]
    assert taken["hosts"] == ["h1", "h2"]  # h2 comes from the param
    assert (tmp_path / "out-pick-h2").read_text() == "picked"
    assert len(during) == 1 and during[0] is not None and during[0]["run_id"] == result.run_id
    statuses = {(s["id"], s["host"]): s["status"] for s in result.report.to_json()["steps"]}
    assert statuses == {("write", "h1"): "succeeded", ("pick", "h2"): "succeeded", ("named", "h2"): "succeeded"}
    assert "no host matched" not in result.message
    assert lease_of(tmp_path, "h1") is None and lease_of(tmp_path, "h2") is None


def test_a_host_unreachable_while_the_lease_is_taken_runs_no_step_of_that_call(
    tmp_path: Path, roles_paths: list[Path], playbook_calls: list[str]
) -> None:
    hosts = inventory(tmp_path, flaky=True)
    result = run(tmp_path, roles_paths, runbook_text(), hosts=hosts, assume_yes=True, no_rollback=True)
    assert not list(tmp_path.glob("out-*-flaky")), "a step ran on a host whose lease was not taken"
    assert lease_of(tmp_path, "flaky") is None
    assert result.report.to_json()["lock"]["hosts"] == ["h1", "h2"]
    flaky = {s["id"]: s for s in result.report.to_json()["steps"] if s["host"] == "flaky"}
    assert set(flaky) == {"write", "second"}
    assert all(s["status"] == "unreachable" and "lease" in s["message"] for s in flaky.values())
    assert (tmp_path / "out-write-h1").read_text() == "one"
    assert result.exit_status == 3
    assert lease_of(tmp_path, "h1") is None and lease_of(tmp_path, "h2") is None


def test_lock_status_and_a_forced_release_on_the_lab(lab: Any, tmp_path: Path) -> None:
    """An operator's way out on real hosts: see who holds a lease, remove it, find the removal in history."""
    state, name, run_id = tmp_path / "state", "lock-cli-test", f"stuck-run-{os.getpid()}"
    host_leases.acquire_leases(Path(INVENTORY), "app1", run_id, 600, owner="someone@elsewhere", name=name)
    try:
        shown = runbook_cli(state, "lock", "status", "app", "-i", INVENTORY, "--name", name)
        assert shown.returncode == 0, shown.stderr
        (held,) = [line.split() for line in shown.stdout.splitlines() if line.startswith("app1 ")]
        assert held[:4] == ["app1", name, run_id, "someone@elsewhere"] and held[4] == str(os.getpid())
        assert any(line.startswith("app2 ") and "(no lease)" in line for line in shown.stdout.splitlines())

        refused = runbook_cli(state, "lock", "release", "app1", "-i", INVENTORY, "--name", name)
        assert refused.returncode == 2 and "--force" in refused.stderr
        host_sh("app1", f"test -e /var/lib/runbook/locks/{name}.json")

        released = runbook_cli(state, "lock", "release", "app1", "-i", INVENTORY, "--name", name, "--force")
        assert released.returncode == 0, released.stderr
        assert f"app1: removed lease '{name}' of run {run_id} (someone@elsewhere" in released.stdout
        host_sh("app1", f"test ! -e /var/lib/runbook/locks/{name}.json")
        history = runbook_cli(state, "history")
        assert history.returncode == 0 and "released by hand" in history.stdout and run_id in history.stdout
    finally:
        host_leases.release_leases(Path(INVENTORY), "app1", run_id, name=name)
