"""What a run records as it goes: progress events, the journal, and its step x host results as each becomes final
(one per step x host: the events collector holds a failure until the step is over for that host)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.engine.events import FAILED, UNREACHABLE, HostStepResult
from runner.engine.journal import Journal, utcnow
from runner.engine.step_outputs import StepOutputs
from runner.language.model import Runbook
from runner.records import history
from runner.records.redact import Redactor

ProgressFn = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class RunStart:
    """What the run's history row and the journal's run_start record say (params masked)."""

    run_id: str
    runbook: Runbook
    params: dict[str, Any]
    started: str
    operator: str
    trigger: str
    inventory: Path
    check: bool
    limit: str | None
    start_at: str | None  # resume: the first main step
    resumed_from: str | None
    origin_run_id: str  # the first run of a chain of resumes (this run's own id when it resumes none)


def start_fields(start: RunStart) -> dict[str, Any]:
    """What the journal's run_start (and the run's request) says: all resume needs to run it again."""
    runbook = start.runbook
    return {
        "run_id": start.run_id,
        "runbook": runbook.name,
        "params": start.params,
        "runbook_file": str(runbook.path),
        "runbook_sha256": runbook.sha256,
        "inventory": str(start.inventory),
        "check": start.check,
        "limit": start.limit,
        "start_at": start.start_at,
        "resumed_from": start.resumed_from,
        "origin_run_id": start.origin_run_id,
    }


class RunLog:
    def __init__(self, run_dir: Path, redactor: Redactor, progress: ProgressFn | None, outputs: StepOutputs) -> None:
        self.redactor = redactor
        self.progress = progress
        self.outputs = outputs
        self.journal = Journal(run_dir / "journal.jsonl", redactor)
        self.results: dict[tuple[str, str, str], HostStepResult] = {}  # (phase, step, host), in the order final
        self.first_failure_at: str | None = None

    def emit(self, kind: str, **data: Any) -> None:
        if self.progress is not None:
            self.progress(kind, self.redactor.scrub(data))

    def on_result(self, result: HostStepResult) -> None:
        self.results[(result.phase, result.step_id, result.host)] = result
        self.outputs.add(result)
        if result.status in (FAILED, UNREACHABLE) and self.first_failure_at is None:
            self.first_failure_at = result.ended or utcnow()
        self.journal.append("step_result", **result.to_dict())
        self.emit("step_result", **result.to_dict())

    def on_intent(self, result: HostStepResult, intent: dict[str, Any]) -> None:
        """A step recorded on its host what it resolved to do, before doing it: the journal says it at once."""
        self.journal.append("step_intent", step_id=result.step_id, phase=result.phase, host=result.host,
                            intent=intent)

    def on_task(self, step_id: str, task: str, host: str) -> None:
        self.emit("task_start", step=step_id, task=task)

    def record_start(self, start: RunStart, state_dir: Path) -> None:
        """The run begins: its history row (a failure to record it is a warning: history never stops a recovery),
        the journal's run_start, the run_start event."""
        runbook = start.runbook
        try:
            history.record_start(state_dir, start.run_id, runbook.name, runbook.severity, start.started,
                                 start.params, start.operator, trigger=start.trigger, check_mode=start.check,
                                 in_run=True)  # never waits long: a busy history keeps the row for later
        except history.HistoryError as exc:
            self.emit("warning", message=f"history not recorded: {exc}")
        self.journal.append("run_start", **start_fields(start))
        self.emit("run_start", run_id=start.run_id, runbook=runbook.name, budget_s=runbook.budget_s)
