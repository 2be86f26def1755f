"""ansible-runner's structured events -> one result per step x host (never parsed from human output)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from runner.engine.render import BOOKKEEPING_TASKS, RECORD_TASK, play_name
from runner.language.durations import parse_time
from runner.language.model import Step

SUCCEEDED = "succeeded"
FAILED = "failed"
SKIPPED = "skipped"
UNREACHABLE = "unreachable"
INCOMPLETE = "incomplete"

_TASK_EVENTS = {
    "runner_on_ok",
    "runner_on_failed",
    "runner_on_skipped",
    "runner_on_unreachable",
    "runner_item_on_ok",
    "runner_item_on_failed",
}


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

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("role_skipped")
        data.pop("failures")
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
    ) -> None:
        self.by_play = {play_name(step): step for step in steps}
        self.results: dict[tuple[str, str], HostStepResult] = {}
        self.order: list[tuple[str, str]] = []
        self.on_result = on_result
        self.on_task = on_task
        self.stats: dict[str, Any] = {}

    def __call__(self, event: dict[str, Any]) -> bool:
        with contextlib.suppress(KeyError, TypeError, ValueError):  # a malformed event must never stop the run
            self.handle(event)
        return True  # keep ansible-runner writing its own artifacts

    def handle(self, event: dict[str, Any]) -> None:
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        if kind == "playbook_on_stats":
            self.stats = {
                k: data.get(k, {}) for k in ("ok", "failures", "dark", "changed", "skipped", "rescued")
            }
            return
        if kind == "playbook_on_task_start" and self.on_task is not None:
            step = self.by_play.get(str(data.get("play", "")))
            if step is not None and data.get("task") not in BOOKKEEPING_TASKS:
                self.on_task(step.id, str(data.get("task", "")), "")
            return
        if kind not in _TASK_EVENTS:
            return
        step = self.by_play.get(str(data.get("play", "")))
        host = data.get("host")
        if step is None or not host:
            return
        key = (step.id, str(host))
        result = self.results.get(key)
        if result is None:
            result = HostStepResult(step_id=step.id, phase=step.phase, host=str(host))
            self.results[key] = result
            self.order.append(key)
        start, end = parse_time(data.get("start")), parse_time(data.get("end"))
        created = parse_time(event.get("created"))
        start = start or created
        end = end or created
        if start and (not result.started or start.isoformat() < result.started):
            result.started = start.isoformat()
        if end and end.isoformat() > result.ended:
            result.ended = end.isoformat()
        if result.started and result.ended:
            result.duration_s = round(
                (
                    datetime.fromisoformat(result.ended) - datetime.fromisoformat(result.started)
                ).total_seconds(),
                3,
            )
        res = data.get("res") or {}
        task = str(data.get("task", ""))
        if kind.startswith("runner_item"):
            return
        if kind == "runner_on_failed" and not data.get("ignore_errors"):
            result.failures += 1
            result.status = FAILED
            result.message = _message(res) or f"task '{task}' failed"
            self._final(result)
        elif kind == "runner_on_unreachable":
            result.status = UNREACHABLE
            result.message = _message(res) or "host unreachable"
            self._final(result)
        elif kind == "runner_on_skipped":
            if task.startswith("Run role") or task.startswith("Try role"):
                result.role_skipped = True
        elif kind == "runner_on_ok":
            if task not in BOOKKEEPING_TASKS and isinstance(res, dict) and res.get("changed"):
                result.changed = True
            if task == RECORD_TASK:
                facts = res.get("ansible_facts", {}) if isinstance(res, dict) else {}
                outputs = (facts.get("runbook_steps") or {}).get(step.id)
                result.outputs = outputs if isinstance(outputs, dict) else {}
                result.status = SKIPPED if result.role_skipped else SUCCEEDED
                if result.status == SUCCEEDED and result.failures:
                    result.message = f"succeeded after {result.failures} failed attempt(s)"
                elif result.status == SKIPPED:
                    result.message = "condition false (when:)"
                self._final(result)

    def _final(self, result: HostStepResult) -> None:
        if self.on_result is not None:
            self.on_result(result)

    def ordered(self) -> list[HostStepResult]:
        return [self.results[key] for key in self.order]
