"""The run sequence with real Ansible on localhost (connection: local) — no lab, no mocks."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from runner import api
from runner.engine.runflow import RunOptions
from runner.errors import ApprovalRequired

HOSTILE = "{{ lookup('pipe','touch /tmp/runbook-pwned') }}; x; $(id) `id` rm -rf /"


def runbook_text(
    main_fail: bool, rollback_fail: bool = False, verify: bool = True, confirm: bool = False
) -> str:
    return f"""apiVersion: runbook/v1
kind: Runbook
metadata: {{name: flow, severity: SEV1}}
spec:
  params:
    value: {{type: string, default: plain}}
    out: {{type: string}}
    token: {{type: string, default: CANARY-9f8e7d6c, secret: true}}
  steps:
    - id: write
      hosts: app
      uses: fixture_step
      with: {{write: "{{{{ params.value }}}}", file: "{{{{ params.out }}}}-{{{{ inventory_hostname }}}}",
             version_before: v1, version_after: v2, secret: "{{{{ params.token }}}}"}}
    - id: break
      hosts: app
      uses: fixture_step
      {"confirm: 'Really break {{ params.value }}?'" if confirm else ""}
      with: {{fail: {str(main_fail).lower()}}}
  on_failure:
    - {{id: undo, hosts: app, uses: fixture_step, with: {{fail: {str(rollback_fail).lower()}, version_after: v1}}}}
    - {{id: check, hosts: app, uses: fixture_step, with: {{healthy: {str(verify).lower()}}}}}
"""


def run(
    tmp_path: Path,
    fixtures: Path,
    roles_paths: list[Path],
    text: str,
    extra: list[str] | None = None,
    **options: object,
) -> api.RunResult:  # type: ignore[name-defined]
    path = tmp_path / "flow.yml"
    path.write_text(text)
    runbook = api.load(path, roles_paths)
    params = api.resolve_params(runbook, [f"out={tmp_path}/out", *(extra or [])])
    opts = RunOptions(
        inventory=fixtures / "local-inventory.yml",
        roles_paths=roles_paths,
        state_dir=tmp_path / "state",
        **options,
    )  # type: ignore[arg-type]
    return api.run(runbook, params, opts)


def test_success(tmp_path: Path, fixtures: Path, roles_paths: list[Path]) -> None:
    result = run(tmp_path, fixtures, roles_paths, runbook_text(main_fail=False))
    assert (result.status, result.exit_status) == ("succeeded", 0)
    report = json.loads((result.run_dir / "report.json").read_text())
    assert report["hosts"] == {
        "local1": {"version_before": "v1", "version_after": "v2"},
        "local2": {"version_before": "v1", "version_after": "v2"},
    }
    assert [(s["id"], s["host"], s["status"]) for s in report["steps"]] == [
        ("write", "local1", "succeeded"),
        ("write", "local2", "succeeded"),
        ("break", "local1", "succeeded"),
        ("break", "local2", "succeeded"),
    ]
    assert report["on_failure"]["ran"] is False


def test_failure_rolled_back_and_verified(tmp_path: Path, fixtures: Path, roles_paths: list[Path]) -> None:
    result = run(tmp_path, fixtures, roles_paths, runbook_text(main_fail=True))
    assert (result.status, result.exit_status) == ("rolled_back", 1)
    report = result.report.to_json()
    assert report["on_failure"]["ran"] and report["on_failure"]["verified"]
    assert report["hosts"]["local1"] == {"version_before": "v1", "version_after": "v1"}
    failed = [s for s in report["steps"] if s["status"] == "failed"]
    assert failed and failed[0]["message"] == "fixture step failed on purpose"
    assert report["failure_detected"]


def test_rollback_failure_is_not_restored(tmp_path: Path, fixtures: Path, roles_paths: list[Path]) -> None:
    result = run(tmp_path, fixtures, roles_paths, runbook_text(main_fail=True, rollback_fail=True))
    assert (result.status, result.exit_status) == ("failed", 3)
    assert "on_failure FAILED" in result.message


def test_rollback_without_verification_is_not_restored(
    tmp_path: Path, fixtures: Path, roles_paths: list[Path]
) -> None:
    result = run(tmp_path, fixtures, roles_paths, runbook_text(main_fail=True, verify=False))
    assert (result.status, result.exit_status) == ("failed", 3)
    assert "no verify step confirmed" in result.message


def test_no_rollback_flag(tmp_path: Path, fixtures: Path, roles_paths: list[Path]) -> None:
    result = run(tmp_path, fixtures, roles_paths, runbook_text(main_fail=True), no_rollback=True)
    assert (result.status, result.exit_status) == ("failed", 3)
    assert not result.report.to_json()["on_failure"]["ran"]


def test_hostile_param_arrives_literally_and_secret_never_written(
    tmp_path: Path, fixtures: Path, roles_paths: list[Path]
) -> None:
    marker = Path("/tmp/runbook-pwned")
    marker.unlink(missing_ok=True)
    result = run(tmp_path, fixtures, roles_paths, runbook_text(main_fail=False), [f"value={HOSTILE}"])
    assert result.exit_status == 0
    assert (tmp_path / "out-local1").read_bytes() == HOSTILE.encode()
    assert not marker.exists()
    leaked = [
        p for p in (tmp_path / "state").rglob("*") if p.is_file() and b"CANARY-9f8e7d6c" in p.read_bytes()
    ]
    assert leaked == []


def test_confirm_without_tty_stops_before_the_step(
    tmp_path: Path, fixtures: Path, roles_paths: list[Path]
) -> None:
    with pytest.raises(ApprovalRequired, match="--yes"):
        run(tmp_path, fixtures, roles_paths, runbook_text(main_fail=False, confirm=True))
    report = json.loads(next((tmp_path / "state" / "runs").glob("*/report.json")).read_text())
    assert {s["id"] for s in report["steps"]} == {"write"}
    result = run(
        tmp_path, fixtures, roles_paths, runbook_text(main_fail=False, confirm=True), assume_yes=True
    )
    assert result.exit_status == 0


RESUMABLE = """apiVersion: runbook/v1
kind: Runbook
metadata: {name: resumable}
spec:
  params:
    fail: {type: boolean, default: true}
    out: {type: string}
  steps:
    - {id: first, hosts: app, uses: fixture_step, with: {version_after: from-first}}
    - {id: flaky, hosts: app, uses: fixture_step, with: {fail: "{{ params.fail }}"}}
    - id: last
      hosts: app
      uses: fixture_step
      with: {write: "{{ steps.first.version_after }}", file: "{{ params.out }}-{{ inventory_hostname }}"}
"""


def test_resume_continues_from_the_failed_step_with_recorded_outputs(
    tmp_path: Path, fixtures: Path, roles_paths: list[Path]
) -> None:
    failed = run(tmp_path, fixtures, roles_paths, RESUMABLE)
    assert failed.exit_status == 3
    options = RunOptions(inventory=Path(""), roles_paths=roles_paths, state_dir=tmp_path / "state")
    resumed = api.resume(failed.run_id, options, assignments=["fail=false"])
    assert resumed.exit_status == 0
    assert resumed.report.to_json()["resumed_from"] == failed.run_id
    assert {s["id"] for s in resumed.report.to_json()["steps"]} == {"flaky", "last"}
    assert (tmp_path / "out-local1").read_text() == "from-first"


def test_on_failure_reads_outputs_of_main_steps(tmp_path: Path, fixtures: Path, roles_paths: list[Path]) -> None:
    text = """apiVersion: runbook/v1
kind: Runbook
metadata: {name: outputs-in-rollback}
spec:
  params:
    out: {type: string}
  steps:
    - {id: first, hosts: local1, uses: fixture_step, with: {version_before: from-first-step}}
    - {id: boom, hosts: app, uses: fixture_step, with: {fail: true}}
  on_failure:
    - id: undo
      hosts: app
      uses: fixture_step
      with: {write: "{{ steps.first.version_before }}", file: "{{ params.out }}-{{ inventory_hostname }}",
             healthy: true}
"""
    result = run(tmp_path, fixtures, roles_paths, text)
    assert result.status == "rolled_back", result.message
    assert (tmp_path / "out-local1").read_text() == "from-first-step"
    assert (tmp_path / "out-local2").read_text() == "from-first-step"  # recorded on local1, read on local2


def test_step_timeout_and_retries_are_enforced(tmp_path: Path, fixtures: Path, roles_paths: list[Path]) -> None:
    text = """apiVersion: runbook/v1
kind: Runbook
metadata: {name: limits}
spec:
  params:
    out: {type: string}
  steps:
    - id: flaky
      hosts: local1
      uses: fixture_step
      retries: 1
      with: {fail_once: "{{ params.out }}-marker"}
    - {id: stuck, hosts: local1, uses: fixture_step, timeout: 2s, with: {sleep: 30}}
"""
    started = time.monotonic()
    result = run(tmp_path, fixtures, roles_paths, text)
    assert time.monotonic() - started < 25  # the 30 s sleep was cut at 2 s
    steps = {s["id"]: s for s in result.report.to_json()["steps"]}
    assert steps["flaky"]["status"] == "succeeded"
    assert "after 1 failed attempt" in steps["flaky"]["message"]
    assert steps["stuck"]["status"] == "failed"
    assert "timed out" in steps["stuck"]["message"].lower() or "timeout" in steps["stuck"]["message"].lower()


def test_empty_string_param_reaches_the_role_as_an_empty_string(
    tmp_path: Path, fixtures: Path, roles_paths: list[Path]
) -> None:
    text = """apiVersion: runbook/v1
kind: Runbook
metadata: {name: empty-param}
spec:
  params:
    value: {type: string, default: ""}
    out: {type: string}
  steps:
    - {id: write, hosts: local1, uses: fixture_step, with: {write: "[{{ params.value }}]", file: "{{ params.out }}"}}
"""
    result = run(tmp_path, fixtures, roles_paths, text)
    assert result.exit_status == 0, result.message
    assert (tmp_path / "out").read_text() == "[]"


def test_plan_check_prints_what_each_step_would_change_and_changes_nothing(
    tmp_path: Path, fixtures: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from runner import cli

    state = tmp_path / "state"
    monkeypatch.setenv("RUNBOOK_STATE_DIR", str(state))
    outputs: dict[bool, str] = {}
    for fail in (False, True):
        path = tmp_path / f"flow-{fail}.yml"
        path.write_text(runbook_text(main_fail=fail))
        argv = ["plan", str(path), "-i", str(fixtures / "local-inventory.yml"), "-p", f"out={tmp_path}/out",
                "--roles-path", str(fixtures / "roles"), "--check"]
        assert cli.main(argv) == 0
        outputs[fail] = capsys.readouterr().out
    rows, failing = ([line.split(None, 3) for line in out.split("check mode")[1].splitlines()[1:]]
                     for out in (outputs[False], outputs[True]))
    assert [tuple(row[:3]) for row in rows] == [
        ("write", "local1", "changed"),
        ("write", "local2", "changed"),
        ("break", "local1", "ok"),
        ("break", "local2", "ok"),
    ]
    assert rows[0][3].startswith("would change: Write the given value")
    assert ["break", "local1", "failed", "fixture step failed on purpose"] in failing
    assert not list(tmp_path.glob("out-*"))  # check mode changed nothing on the hosts
    assert not state.exists()  # no run directory, no history row
    assert all("CANARY-9f8e7d6c" not in text for text in outputs.values())
