"""A step that fails before changing anything is told as a refusal, not a rollback (real Ansible, connection local).

The restore runbook's refusals on the lab are in test_refused_restore.py.
"""

from __future__ import annotations

from pathlib import Path

from runner import api
from runner.engine.runflow import RunOptions


def run(tmp_path: Path, fixtures: Path, roles_paths: list[Path], main: str, on_failure: str) -> api.RunResult:  # type: ignore[name-defined]
    path = tmp_path / "refusal.yml"
    path.write_text(
        f"""apiVersion: runbook/v1
kind: Runbook
metadata: {{name: refusal}}
spec:
  params:
    out: {{type: string}}
  steps:
    - {{id: look, hosts: app, uses: fixture_step, with: {{version_before: v1, version_after: v1}}}}
{main}
{on_failure}
"""
    )
    runbook = api.load(path, roles_paths)
    params = api.resolve_params(runbook, [f"out={tmp_path}/out"])
    options = RunOptions(inventory=fixtures / "local-inventory.yml", roles_paths=roles_paths, state_dir=tmp_path / "s")
    return api.run(runbook, params, options)


REFUSE = "    - {id: refuse, hosts: app, uses: fixture_step, with: {fail: true}}"
VERIFY = "  on_failure:\n    - {id: check, hosts: app, uses: fixture_step, with: {healthy: true}}"


def test_a_refusal_that_changed_nothing_is_failed_with_the_service_verified(
    tmp_path: Path, fixtures: Path, roles_paths: list[Path]
) -> None:
    result = run(tmp_path, fixtures, roles_paths, REFUSE, VERIFY)
    assert (result.status, result.exit_status) == ("failed", 1), result.message
    assert result.message == (
        "step 'refuse' refused on local1: fixture step failed on purpose; nothing was changed; "
        "on_failure verified the service"
    )
    on_failure = result.report.to_json()["on_failure"]
    assert on_failure["ran"] and on_failure["verified"] and on_failure["restored"] == []


def test_without_on_failure_a_refusal_says_nothing_was_changed(
    tmp_path: Path, fixtures: Path, roles_paths: list[Path]
) -> None:
    result = run(tmp_path, fixtures, roles_paths, REFUSE, "")
    assert (result.status, result.exit_status) == ("failed", 3)
    assert result.message.endswith("; nothing was changed; the runbook has no on_failure steps"), result.message


def test_a_change_before_the_failure_is_rolled_back(tmp_path: Path, fixtures: Path, roles_paths: list[Path]) -> None:
    write = '    - {id: write, hosts: local1, uses: fixture_step, with: {write: x, file: "{{ params.out }}"}}'
    wrote = write + "\n" + REFUSE
    result = run(tmp_path, fixtures, roles_paths, wrote, VERIFY)
    assert (result.status, result.exit_status) == ("rolled_back", 1)
    assert result.message.startswith("step 'refuse' failed on local1: fixture step failed on purpose; on_failure")
    assert "nothing was changed" not in result.message


def test_a_timed_out_step_may_have_changed_something(tmp_path: Path, fixtures: Path, roles_paths: list[Path]) -> None:
    """Ansible says changed: false of a timed-out task whose module may still be at work."""
    stuck = "    - {id: stuck, hosts: local1, uses: fixture_step, timeout: 2s, with: {sleep: 30}}"
    result = run(tmp_path, fixtures, roles_paths, stuck, VERIFY)
    assert "nothing was changed" not in result.message and "refused" not in result.message, result.message
    assert result.status != "failed" or result.exit_status == 3, result.message
