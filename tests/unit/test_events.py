"""runner.engine.events.EventCollector: one final result per step x host, from ansible-runner's events."""

from __future__ import annotations

from typing import Any

from runner.engine.events import FAILED, SUCCEEDED, EventCollector, HostStepResult
from runner.engine.render import RECORD_TASK, RESET_TASK, play_name
from runner.language.model import PHASE_ON_FAILURE, Step

RESTORE = Step(id="restore", uses="postgres_restore", hosts="db")
UNDO = Step(id="undo", uses="fixture_step", hosts="app", phase=PHASE_ON_FAILURE)


def task_event(kind: str, step: Step, host: str, task: str, res: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "event": kind,
        "event_data": {"play": play_name(step), "host": host, "task": task, "res": res or {}},
    }


def ran(step: Step, host: str, task: str, kind: str = "runner_on_ok", res: dict[str, Any] | None = None) -> list[
    dict[str, Any]
]:
    """A task on one host as ansible-runner reports it: its start, then its outcome."""
    return [task_event("runner_on_start", step, host, task), task_event(kind, step, host, task, res)]


def collect(events: list[dict[str, Any]], steps: list[Step]) -> tuple[EventCollector, list[tuple[str, str, str]]]:
    published: list[tuple[str, str, str]] = []

    def on_result(result: HostStepResult) -> None:
        published.append((result.step_id, result.host, result.message))

    collector = EventCollector(steps, on_result=on_result)
    for event in events:
        collector(event)
    return collector, published


def test_a_role_that_rescues_and_fails_again_is_one_failure_with_the_last_message() -> None:
    events = [
        *ran(RESTORE, "db", RESET_TASK),
        *ran(RESTORE, "db", "Restore the database (in_place)", "runner_on_failed", {"censored": "hidden"}),
        *ran(RESTORE, "db", "Keep why the restore failed"),
        *ran(RESTORE, "db", "Fail with why", "runner_on_failed", {"msg": "no space left"}),
        *ran(RESTORE, "db", "Say why", "runner_on_failed", {"msg": "postgres_restore of shop failed: no space left"}),
    ]
    collector, published = collect(events, [RESTORE])
    assert published == []  # the step is not over on db until its play is
    collector({"event": "playbook_on_stats", "event_data": {}})
    assert published == [("restore", "db", "postgres_restore of shop failed: no space left")]
    assert collector.ordered()[0].status == FAILED
    collector.finish()
    assert len(published) == 1  # final once


def test_a_retry_that_succeeds_is_one_success() -> None:
    events = [
        *ran(RESTORE, "db", "Run role postgres_restore (attempt 1 of 2)", "runner_on_failed", {"msg": "busy"}),
        *ran(RESTORE, "db", "Run role postgres_restore (attempt 2 of 2)"),
        *ran(RESTORE, "db", RECORD_TASK, res={"ansible_facts": {"runbook_steps": {"restore": {"rows": 3}}}}),
    ]
    collector, published = collect(events, [RESTORE])
    assert published == [("restore", "db", "succeeded after 1 failed attempt(s)")]
    (result,) = collector.ordered()
    assert (result.status, result.outputs) == (SUCCEEDED, {"rows": 3})


def test_a_host_that_failed_is_final_when_the_play_ends_and_others_stream_at_once() -> None:
    events = [
        *ran(UNDO, "app1", "Fail when asked to", "runner_on_failed", {"msg": "fixture step failed on purpose"}),
        *ran(UNDO, "app2", "Fail when asked to", "runner_on_skipped"),
        *ran(UNDO, "app2", RECORD_TASK),
    ]
    collector, published = collect(events, [UNDO, RESTORE])
    assert published == [("undo", "app2", "")]
    collector({"event": "playbook_on_play_start", "event_data": {"play": play_name(RESTORE)}})
    assert published[1:] == [("undo", "app1", "fixture step failed on purpose")]


def test_a_call_cut_short_still_publishes_the_failures_it_held() -> None:
    events = ran(UNDO, "app1", "Fail when asked to", "runner_on_unreachable", {"msg": "ssh: connection refused"})
    collector, published = collect(events, [UNDO])
    collector.finish()
    assert published == [("undo", "app1", "ssh: connection refused")]


def test_check_mode_names_the_tasks_that_would_change() -> None:
    events = [
        *ran(UNDO, "app1", RESET_TASK, res={"changed": True}),
        *ran(UNDO, "app1", "Write the given value", res={"changed": True}),
        *ran(UNDO, "app1", RECORD_TASK, res={"changed": True}),
    ]
    collector, _ = collect(events, [UNDO])
    (result,) = collector.ordered()
    assert result.changed and result.changed_tasks == ["Write the given value"]
    assert "changed_tasks" not in result.to_dict()  # journal and report records keep their shape


def test_a_play_whose_name_ansible_templated_is_still_its_step() -> None:
    """`hosts:` (in the default title) and `name:` may be templates: Ansible renders the play name, so the name the
    events carry is not the one rendered; the step is known by the id the name starts with."""
    pick = Step(id="pick", uses="fixture_step", hosts="{{ params.target }}")
    named = Step(id="named", uses="fixture_step", hosts="app", name="Again on {{ params.target }}")
    events: list[dict[str, Any]] = []
    for shown in ("Step pick: fixture_step on app2", "Step named: Again on app2"):
        for kind, task in (("runner_on_start", RECORD_TASK), ("runner_on_ok", RECORD_TASK)):
            events.append({"event": kind, "event_data": {"play": shown, "host": "app2", "task": task, "res": {}}})
    collector, published = collect(events, [pick, named])
    assert published == [("pick", "app2", ""), ("named", "app2", "")]
    assert [r.status for r in collector.ordered()] == [SUCCEEDED, SUCCEEDED]
    other = {"event": "runner_on_ok", "event_data": {"play": "Stepper: x", "host": "app2", "task": RECORD_TASK}}
    collector(other)
    assert len(collector.ordered()) == 2  # a play of no step (the lease plays) is not a step


def test_an_intent_a_task_published_reaches_the_run_before_the_step_is_over() -> None:
    intents: list[tuple[str, str, dict[str, Any]]] = []
    collector = EventCollector(
        [RESTORE], on_intent=lambda result, intent: intents.append((result.step_id, result.host, intent))
    )
    recorded = {"backup": {"name": "shop-1"}, "key": "run-1.restore"}
    for event in [
        *ran(RESTORE, "db", "Record the backup chosen on the host", res={"runbook_intent": recorded}),
        *ran(RESTORE, "db", "Restore the database (in_place)", "runner_on_failed", {"msg": "killed"}),
    ]:
        collector(event)
    assert intents == [("restore", "db", recorded)]  # journaled at once: the step had not ended
