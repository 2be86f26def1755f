"""The lease plays the runner wraps around a run's calls, and how their events are read (no Ansible run here;
tests/integration/test_run_leases_lab.py runs them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from runner.engine import host_leases, run_leases
from runner.engine.runflow import segments
from runner.language.model import Step


def event(kind: str, task: str, host: str, res: dict[str, Any], play: str = run_leases.ACQUIRE_PLAY) -> dict[str, Any]:
    return {"event": kind, "event_data": {"task": task, "host": host, "res": res, "play": play}}


def test_acquire_play_stops_every_host_when_one_is_refused() -> None:
    play = run_leases.acquire_play()
    assert play["tags"] == ["always"] and play["gather_facts"] is False
    take, stop = play["tasks"]
    assert take["runbook.ops.lease_lock"]["action"] == "acquire"
    # an unreachable host leaves the call (Ansible drops it from every later play); the others go on
    assert take["failed_when"] is False and "ignore_unreachable" not in take
    assert take["register"] == run_leases.RESULT_VAR
    assert stop["any_errors_fatal"] is True and "ansible.builtin.fail" in stop
    assert "acquired" in stop["when"]  # an unreachable host never gets here: it has left the call


def test_release_play_releases_only_while_every_target_host_is_active() -> None:
    play = run_leases.release_play()
    assert play["tags"] == ["always"]
    (task,) = play["tasks"]
    assert task["runbook.ops.lease_lock"]["action"] == "release"
    assert task["when"] == "ansible_play_hosts | length == runbook_lease.hosts | length"
    assert task["failed_when"] is False  # a refused release never fails the run's call


def test_wrapper_imports_the_rendered_playbook_between_the_lease_plays(tmp_path: Path) -> None:
    leases = run_leases.RunLeases(tmp_path / "hosts.yml", ["b", "a"], "run-1", 600)
    name = leases.playbook(tmp_path, "on_failure.yml", release=True)
    assert name == "runbook_lease_on_failure_last.yml"
    imports = [entry["ansible.builtin.import_playbook"] for entry in yaml.safe_load((tmp_path / name).read_text())]
    assert imports == [run_leases.ACQUIRE_PLAYBOOK, "on_failure.yml", run_leases.RELEASE_PLAYBOOK]
    middle = leases.playbook(tmp_path, "main.yml", release=False)
    assert [e["ansible.builtin.import_playbook"] for e in yaml.safe_load((tmp_path / middle).read_text())] == [
        run_leases.ACQUIRE_PLAYBOOK,
        "main.yml",
    ]
    assert leases.extravars()["runbook_lease"]["hosts"] == ["a", "b"]


def test_call_watch_reads_the_lease_answers_and_begins_after_the_acquire_play(tmp_path: Path) -> None:
    leases = run_leases.RunLeases(tmp_path / "hosts.yml", ["h1", "h2", "h3"], "run-1", 600)
    seen: list[str] = []
    begun: list[bool] = []

    def steps(e: dict[str, Any]) -> bool:
        seen.append(str(e["event"]))
        return True

    watch = leases.watch(steps, lambda: begun.append(True))
    holder = {"run_id": "other"}
    watch(event("runner_on_ok", host_leases.LEASE_TASK, "h1", {"acquired": True, "lease": {"run_id": "run-1"}}))
    watch(event("runner_on_ok", host_leases.LEASE_TASK, "h2", {"acquired": False, "msg": "held", "holder": holder}))
    watch(event("runner_on_unreachable", host_leases.LEASE_TASK, "h3", {"unreachable": True}))
    assert not begun
    assert list(watch.refused()) == ["h2"] and watch.refused()["h2"].holder == holder
    assert watch.unreachable() == {"h3": "unreachable"}
    assert leases.outstanding() == ["h1"]
    watch({"event": "playbook_on_play_start", "event_data": {"play": "Step one: x"}})
    assert begun == [True]
    watch(event("runner_on_ok", run_leases.RELEASE_TASK, "h1", {"changed": True, "acquired": False}))
    not_ours = {"acquired": False, "msg": "not ours", "holder": holder}
    watch(event("runner_on_ok", run_leases.RELEASE_TASK, "h2", not_ours))
    assert leases.outstanding() == []
    assert len(seen) == 6  # every event still reaches the steps' handler
    assert leases.report_entry() == {"name": "host", "hosts": ["h1"], "taken_over": {}, "held_by": {}}


def step(step_id: str, confirm: str | None = None) -> Step:
    return Step(id=step_id, uses="fixture_step", hosts="all", confirm=confirm)


def test_gates_split_the_calls_unless_every_approval_is_known() -> None:
    steps = (step("a"), step("b", "Sure?"), step("c"))
    assert [[s.id for s in g] for g in segments(steps)] == [["a"], ["b", "c"]]
    assert [[s.id for s in g] for g in segments(steps, approvals_known=True)] == [["a", "b", "c"]]
