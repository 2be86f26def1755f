"""Resume reads what a run directory says, exactly: a run killed before it began starts from its first step, a
chain of resumes keeps the run its intents are keyed by, a journal edited by hand is refused with the line to fix
(exit 2, never a traceback), and what a dead run left running on this control node is ended first."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner.engine import leftovers
from runner.engine.journal import Journal, write_request
from runner.engine.resume import ResumeRequest, plan_resume, read_state, resume_run
from runner.errors import ExitStatus, InvalidInput
from runner.language.loader import load_runbook
from runner.records.redact import Redactor

RUNBOOK = """apiVersion: runbook/v1
kind: Runbook
metadata: {name: rb}
spec:
  steps:
    - {id: first, hosts: all, uses: demo_role, with: {database: shop}}
    - {id: second, hosts: all, uses: demo_role, with: {database: shop}}
"""
NOBODY = Redactor([])


def a_run(tmp_path: Path, roles_paths: list[Path], **extra: object) -> tuple[Path, dict[str, object]]:
    path = tmp_path / "rb.yml"
    path.write_text(RUNBOOK)
    runbook = load_runbook(path, roles_paths)
    run_dir = tmp_path / "runs" / "r1"
    fields: dict[str, object] = {
        "run_id": "r1", "runbook": "rb", "params": {}, "runbook_file": str(path), "runbook_sha256": runbook.sha256,
        "inventory": str(tmp_path / "hosts.yml"), "check": False, "limit": None, "start_at": None,
        "resumed_from": None, "origin_run_id": "r1", **extra,
    }  # fmt: skip
    return run_dir, fields


def test_a_run_killed_before_it_began_resumes_from_its_first_step(tmp_path: Path, roles_paths: list[Path]) -> None:
    run_dir, fields = a_run(tmp_path, roles_paths)
    write_request(run_dir, NOBODY, **fields, control={"node": "elsewhere", "pid": 1, "started": "1"})
    Journal(run_dir / "journal.jsonl", NOBODY).close()  # killed before its leases: no run_start
    state = read_state(run_dir)
    assert not state.began and state.results == {}
    plan = plan_resume(state, load_runbook(state.runbook_file, roles_paths), None, False)
    assert (plan.start_at, plan.resumed_from, plan.origin_run_id) == ("first", "r1", "r1")


def test_a_resumed_run_keeps_the_first_run_of_the_chain(tmp_path: Path, roles_paths: list[Path]) -> None:
    run_dir, fields = a_run(tmp_path, roles_paths, run_id="r2", resumed_from="r1", origin_run_id="r1")
    journal = Journal(run_dir / "journal.jsonl", NOBODY)
    journal.append("run_start", **fields)
    journal.append("step_result", step_id="first", phase="main", host="h1", status="succeeded", outputs={"a": 1})
    journal.close()
    state = read_state(run_dir)
    plan = plan_resume(state, load_runbook(state.runbook_file, roles_paths), None, False)
    assert (plan.start_at, plan.resumed_from, plan.origin_run_id) == ("second", "r2", "r1")
    assert plan.recorded == {"h1": {"first": {"a": 1}}}


def test_a_run_killed_after_its_last_step_is_only_ended_by_its_resume(tmp_path: Path, roles_paths: list[Path]) -> None:
    run_dir, fields = a_run(tmp_path, roles_paths)
    journal = Journal(run_dir / "journal.jsonl", NOBODY)
    journal.append("run_start", **fields)
    for step in ("first", "second"):
        journal.append("step_result", step_id=step, phase="main", host="h1", status="succeeded", outputs={"s": step})
    journal.close()  # killed before run_end: the report, history and run_end were never written
    state = read_state(run_dir)
    runbook = load_runbook(state.runbook_file, roles_paths)
    plan = plan_resume(state, runbook, None, False)
    assert plan.main_steps(runbook) == ()  # nothing runs again on the hosts
    assert plan.recorded == {"h1": {"first": {"s": "first"}, "second": {"s": "second"}}}


def test_a_run_killed_after_it_ended_resumes_to_the_same_success(tmp_path: Path, roles_paths: list[Path]) -> None:
    run_dir, fields = a_run(tmp_path, roles_paths)
    journal = Journal(run_dir / "journal.jsonl", NOBODY)
    journal.append("run_start", **fields)
    for step in ("first", "second"):
        journal.append("step_result", step_id=step, phase="main", host="h1", status="succeeded", outputs={})
    journal.append("run_end", status="succeeded", duration_s=1.0, detail="")
    journal.close()  # killed while it printed its summary: `resume` after a kill ends as the first try did
    state = read_state(run_dir)
    runbook = load_runbook(state.runbook_file, roles_paths)
    assert plan_resume(state, runbook, None, False).main_steps(runbook) == ()
    assert plan_resume(state, runbook, "second", False).start_at == "second"  # --from runs it again


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"kind": "step_result", "phase": "main", "status": "succeeded"}'], "needs step_id, host, status"),
        (['{"kind": "step_result", "phase": "main", "step_id": "first", "host": "h", "status": "ok", "outputs": [1]}'],
         "needs step_id"),
        (['{"kind": "step_result", "phase": "main", "step_id": "first", "host": "h", "status": "ok", "outputs": '
          + '{"a": ' + deep(80) + "}}"], "nested at most 64 levels"),
        (["this is not json", '{"kind": "no_hosts"}'], "line 2 is not a journal record"),
        (['{"kind": "no_hosts", "steps": ' + deep(1500) + "}", '{"kind": "no_hosts"}'], "line 2 is not a journal"),
    ],
)
def test_a_journal_edited_by_hand_is_refused_with_the_line_to_fix(
    tmp_path: Path, roles_paths: list[Path], lines: list[str], message: str
) -> None:
    run_dir, fields = a_run(tmp_path, roles_paths)
    run_dir.mkdir(parents=True)
    text = json.dumps({"kind": "run_start", **fields}) + "\n" + "\n".join(lines) + "\n"
    (run_dir / "journal.jsonl").write_text(text)
    with pytest.raises(InvalidInput, match=message):
        read_state(run_dir)


@pytest.mark.parametrize("params", ['"params": [1, 2]', '"params": {}, "runbook_file": 7', '"run_id": null'])
def test_a_run_start_edited_by_hand_is_refused(tmp_path: Path, params: str) -> None:
    run_dir = tmp_path / "r1"
    run_dir.mkdir()
    (run_dir / "journal.jsonl").write_text(
        '{"kind": "run_start", "run_id": "r1", "runbook_file": "rb.yml", "inventory": "i.yml", ' + params + "}\n"
    )
    with pytest.raises(InvalidInput, match="edited by hand"):
        read_state(run_dir)


def test_a_torn_last_line_is_what_a_crash_leaves_and_is_ignored(tmp_path: Path, roles_paths: list[Path]) -> None:
    run_dir, fields = a_run(tmp_path, roles_paths)
    run_dir.mkdir(parents=True)
    (run_dir / "journal.jsonl").write_text(json.dumps({"kind": "run_start", **fields}) + '\n{"kind": "step_re')
    assert read_state(run_dir).run_id == "r1"


def test_the_cli_says_so_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from runner.cli import main

    run_dir = tmp_path / "runs" / "r1"
    run_dir.mkdir(parents=True)
    (run_dir / "journal.jsonl").write_text('{"kind": "run_start", "run_id": "r1", "params": "x"}\n{"kind": ' + "\n")
    assert main(["resume", str(run_dir), "--state-dir", str(tmp_path)]) == ExitStatus.INVALID
    err = capsys.readouterr().err
    assert "line 2 is not a journal record" in err and "Traceback" not in err


def test_a_run_still_running_is_not_resumed(tmp_path: Path, roles_paths: list[Path]) -> None:
    run_dir, fields = a_run(tmp_path, roles_paths)
    write_request(run_dir, NOBODY, **fields, control=leftovers.control_process())
    Journal(run_dir / "journal.jsonl", NOBODY).close()
    with pytest.raises(InvalidInput, match="still running"):
        resume_run(run_dir, roles_paths, ResumeRequest())


def test_the_calls_a_dead_run_left_running_are_ended_with_what_they_started(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "r1"
    marker = f"@{run_dir.resolve()}/ansible/env/extravars"
    script = "import subprocess, time; subprocess.Popen(['sleep', '60']); time.sleep(60)"  # its ssh, say
    call = subprocess.Popen([sys.executable, "-c", script, marker])
    try:
        deadline = time.monotonic() + 10
        while len(leftovers.calls_left_running(run_dir)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        found = leftovers.calls_left_running(run_dir)
        assert call.pid in found and len(found) == 2
        assert leftovers.end_calls_left_running(run_dir, timeout=5) == found
        assert call.wait(timeout=10) != 0
    finally:
        if call.poll() is None:
            call.kill()
    assert leftovers.calls_left_running(run_dir) == [] and os.getpid() not in leftovers.calls_left_running(tmp_path)


def test_the_scratch_directories_a_killed_run_left_are_removed_and_nothing_else(tmp_path: Path) -> None:
    mine = tmp_path / "runbook-offsite-r1-a8x2"
    (mine / "deep").mkdir(parents=True)
    (mine / "shop.dump").write_bytes(b"backup data")
    other_run = tmp_path / "runbook-offsite-r10-zz"
    other_run.mkdir()
    target = tmp_path / "precious"
    target.mkdir()
    link = tmp_path / "runbook-offsite-r1-link"
    link.symlink_to(target, target_is_directory=True)
    assert leftovers.remove_scratch("r1", tmp_path) == [mine]
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["precious", "runbook-offsite-r1-link", "runbook-offsite-r10-zz"]
