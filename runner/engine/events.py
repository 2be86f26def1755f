"""ansible-runner's structured events -> one result per step x host (never parsed from human output).

A step x host result is final once: when its record task ran (succeeded, skipped), or, for a failure, when the step
is over for that host. A role that rescues a failure and fails again (postgres_restore: a no_log task fails, the
rescue says why, an outer rescue adds what was done) fails several tasks for one failure; each failure is held
until the host's next task in the step (the failure was rescued: it is not final) or the end of the play (it is),
so the last one is the result.

A task result holding `runbook_intent` (runbook.ops.step_intent: what the step resolved to do, recorded on the host
before it acts) is handed on at once (on_intent), so the journal says it before the step is over.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from runner.engine.render import BOOKKEEPING_TASKS, RECORD_TASK, play_step_id, task_timeout_s
from runner.language.durations import parse_time
from runner.language.model import Step
from runner.records.model import StepStatus

SUCCEEDED = StepStatus.SUCCEEDED
FAILED = StepStatus.FAILED
SKIPPED = StepStatus.SKIPPED
UNREACHABLE = StepStatus.UNREACHABLE
INCOMPLETE = StepStatus.INCOMPLETE

INTENT_KEY = "runbook_intent"  # a task result holding it: what the step resolved to do, recorded on the host

_TASK_EVENTS = {
    "runner_on_start",
    "runner_on_ok",
    "runner_on_failed",
    "runner_on_skipped",
    "runner_on_unreachable",
    "runner_item_on_ok",
    "runner_item_on_failed",
}

OUTPUTS_FACT = "runbook_outputs"  # the fact a role publishes its outputs in (docs/role-conventions.md)
PLAN_OUTPUT = "plan"  # a step output of this name, a list of lines, is shown under its result


@dataclass
class HostStepResult:
    step_id: str
    phase: str
    host: str
    status: str = INCOMPLETE
    changed: bool = False
    duration_s: float = 0.0
    message: str = ""
    started: str = ""
    ended: str = ""
    outputs: dict[str, Any] = field(default_factory=dict)
    role_skipped: bool = False
    failures: int = 0
    changed_tasks: list[str] = field(default_factory=list)  # what check mode says the step would change
    timed_out: bool = False  # a task of the step hit Ansible's timeout: its module may still run on the host
    failure_may_have_changed: bool = False  # a task that failed or lost the host did not say it changed nothing

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for internal in ("role_skipped", "failures", "changed_tasks", "timed_out", "failure_may_have_changed"):
            data.pop(internal)
        return data


def _message(res: Any) -> str:
    if not isinstance(res, dict):
        return ""
    if res.get("censored"):
        return "output hidden (no_log)"
    for key in ("msg", "stderr", "reason"):
        value = res.get(key)
        if value:
            text = str(value).strip()
            return text if len(text) <= 600 else text[:600] + "…"
    results = res.get("results")
    if isinstance(results, list):
        for item in results:
            text = _message(item)
            if text:
                return text
    return ""


class EventCollector:
    """Feeds on events; calls on_result when a step x host result is final, on_event for progress."""

    def __init__(
        self,
        steps: list[Step],
        on_result: Callable[[HostStepResult], None] | None = None,
        on_task: Callable[[str, str, str], None] | None = None,
        on_intent: Callable[[HostStepResult, dict[str, Any]], None] | None = None,
    ) -> None:
        self.by_id = {step.id: step for step in steps}
        self.results: dict[tuple[str, str], HostStepResult] = {}
        self.held: dict[tuple[str, str], HostStepResult] = {}  # failures the step may still rescue
        self.order: list[tuple[str, str]] = []
        self.on_result = on_result
        self.on_task = on_task
        self.on_intent = on_intent
        self.stats: dict[str, Any] = {}

    def __call__(self, event: dict[str, Any]) -> bool:
        with contextlib.suppress(KeyError, TypeError, ValueError):  # a malformed event must never stop the run
            self.handle(event)
        return True  # keep ansible-runner writing its own artifacts

    def handle(self, event: dict[str, Any]) -> None:
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        if kind in ("playbook_on_play_start", "playbook_on_stats"):
            self.finish()  # the previous play is over: every failure it held is final
        if kind == "playbook_on_stats":
            self.stats = {
                k: data.get(k, {}) for k in ("ok", "failures", "dark", "changed", "skipped", "rescued")
            }
        elif kind == "playbook_on_task_start":
            self._task_start(data)
        elif kind in _TASK_EVENTS:
            self._task_event(kind, event, data)

    def _step_of(self, data: dict[str, Any]) -> Step | None:
        step_id = play_step_id(str(data.get("play", "")))
        return self.by_id.get(step_id) if step_id is not None else None

    def _task_start(self, data: dict[str, Any]) -> None:
        step = self._step_of(data)
        if self.on_task is not None and step is not None and data.get("task") not in BOOKKEEPING_TASKS:
            self.on_task(step.id, str(data.get("task", "")), "")

    def _task_event(self, kind: str, event: dict[str, Any], data: dict[str, Any]) -> None:
        step = self._step_of(data)
        host = data.get("host")
        if step is None or not host:
            return
        key = (step.id, str(host))
        self.held.pop(key, None)  # the step goes on on this host: the failure held was rescued
        if kind == "runner_on_start":
            return
        result = self.results.get(key)
        if result is None:
            result = HostStepResult(step_id=step.id, phase=step.phase, host=str(host))
            self.results[key] = result
            self.order.append(key)
        _stretch(result, event, data)
        if not kind.startswith("runner_item"):
            self._task_outcome(kind, key, result, data)

    def _task_outcome(self, kind: str, key: tuple[str, str], result: HostStepResult, data: dict[str, Any]) -> None:
        res = data.get("res") or {}
        task = str(data.get("task", ""))
        if kind == "runner_on_failed" and isinstance(res, dict) and res.get("timedout"):
            result.timed_out = True  # kept even when the step rescues it: the host work is settled either way
        if kind == "runner_on_unreachable" or (
            kind == "runner_on_failed" and _failure_may_have_changed(res, data, self.by_id[key[0]].timeout_s)
        ):
            result.failure_may_have_changed = True
        if kind == "runner_on_failed" and not data.get("ignore_errors"):
            result.failures += 1
            result.status = FAILED
            result.message = _message(res) or f"task '{task}' failed"
            self.held[key] = result
        elif kind == "runner_on_unreachable":
            result.status = UNREACHABLE
            result.message = _message(res) or "host unreachable"
            self.held[key] = result
        elif kind == "runner_on_skipped":
            if task.startswith("Run role") or task.startswith("Try role"):
                result.role_skipped = True
        elif kind == "runner_on_ok":
            if task not in BOOKKEEPING_TASKS and isinstance(res, dict) and res.get("changed"):
                result.changed = True
                if task not in result.changed_tasks:
                    result.changed_tasks.append(task)
            if task == RECORD_TASK:
                self._recorded(result, res)
                return
            _keep_published(result, res)
            if isinstance(res, dict) and isinstance(res.get(INTENT_KEY), dict) and self.on_intent is not None:
                self.on_intent(result, res[INTENT_KEY])  # published before the step acts: journaled at once

    def _recorded(self, result: HostStepResult, res: Any) -> None:
        """The step's record task ran on the host: it succeeded (or its role was skipped), with its outputs."""
        facts = res.get("ansible_facts", {}) if isinstance(res, dict) else {}
        outputs = (facts.get("runbook_steps") or {}).get(result.step_id)
        result.outputs = outputs if isinstance(outputs, dict) else {}
        result.status = SKIPPED if result.role_skipped else SUCCEEDED
        if result.status == SUCCEEDED and result.failures:
            result.message = f"succeeded after {result.failures} failed attempt(s)"
        elif result.status == SKIPPED:
            result.message = "condition false (when:)"
        self._final(result)

    def finish(self) -> None:
        """The call is over (or the play): the failures held are final."""
        held = [self.held[key] for key in self.order if key in self.held]
        self.held.clear()
        for result in held:
            self._final(result)

    def _final(self, result: HostStepResult) -> None:
        if self.on_result is not None:
            self.on_result(result)

    def ordered(self) -> list[HostStepResult]:
        return [self.results[key] for key in self.order]


def _keep_published(result: HostStepResult, res: Any) -> None:
    """A role published its outputs (set_fact runbook_outputs): kept now, so that a role that publishes and then
    fails (verify's checks, watch's measurements, image_swap's versions after a failed swap) has them in the journal
    and the report; the record task's outputs replace them when the step succeeds."""
    facts = res.get("ansible_facts") if isinstance(res, dict) else None
    published = facts.get(OUTPUTS_FACT) if isinstance(facts, dict) else None
    if isinstance(published, dict):
        result.outputs = published


def _failure_may_have_changed(res: Any, data: dict[str, Any], timeout_s: float | None) -> bool:
    """A failed task may have changed something unless it said changed: false and did not time out. Ansible says
    changed: false of a timed-out task (whose module may still be at work) and a no_log result hides `timedout`,
    so a hidden failure that lasted as long as the task timeout counts as one."""
    if not isinstance(res, dict) or res.get("changed") is not False or res.get("timedout"):
        return True
    if res.get("restored") or res.get("actions"):  # it acted, then put things back itself: a rollback happened
        return True
    duration = data.get("duration")
    lasted = float(duration) if isinstance(duration, (int, float)) else 0.0
    return bool(res.get("censored")) and timeout_s is not None and lasted >= task_timeout_s(timeout_s) - 1


def _stretch(result: HostStepResult, event: dict[str, Any], data: dict[str, Any]) -> None:
    """Widen the result's started..ended to cover this event."""
    created = parse_time(event.get("created"))
    start = parse_time(data.get("start")) or created
    end = parse_time(data.get("end")) or created
    if start and (not result.started or start.isoformat() < result.started):
        result.started = start.isoformat()
    if end and end.isoformat() > result.ended:
        result.ended = end.isoformat()
    if result.started and result.ended:
        elapsed = datetime.fromisoformat(result.ended) - datetime.fromisoformat(result.started)
        result.duration_s = round(elapsed.total_seconds(), 3)
