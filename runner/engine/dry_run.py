"""`runbook plan --check`: the main steps in Ansible check mode, and what each would change on each host.

The run's own playbook calls (run_calls) with check=True, all main steps in one call (check mode asks no
approval), and nothing else of a run: no leases, no journal, no history row, no report. The private directory is
a temporary one, removed afterwards.
"""

from __future__ import annotations

import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from runner.engine.events import INCOMPLETE, PLAN_OUTPUT, SUCCEEDED, HostStepResult
from runner.engine.execute import cancel_on_signals, first_error_line, prepare_private_dir
from runner.engine.prepare import PreparedRun
from runner.engine.run_calls import CallSetup, LeaseLost, RunCalls
from runner.engine.start_gate import StartGate
from runner.engine.step_outputs import StepOutputs
from runner.language.model import PHASE_MAIN
from runner.records.redact import Redactor


@dataclass(frozen=True)
class CheckedStep:
    """One step x host in check mode: changed (would change), ok, skipped, failed, unreachable or incomplete."""

    step_id: str
    host: str
    outcome: str
    message: str
    details: tuple[str, ...] = ()  # a role's own plan (outputs key `plan`, e.g. backup_retention's per backup)


@dataclass(frozen=True)
class DryRun:
    steps: list[CheckedStep]
    error: str = ""  # ansible-playbook stopped before any task ran (bad inventory, syntax)


def dry_run(prepared: PreparedRun, inventory: Path, roles_paths: list[Path], limit: str | None) -> DryRun:
    steps = prepared.main_steps
    if not steps:
        return DryRun([])
    cancel = threading.Event()
    runbook = prepared.runbook
    with tempfile.TemporaryDirectory(prefix="runbook-check-") as work:
        private_dir = Path(work) / "ansible"
        setup = CallSetup(
            f"{runbook.name}-check", runbook.name, private_dir, inventory, roles_paths, limit, True, cancel,
            prepared.params.values, StepOutputs(), _ignore_result, _ignore_task,
        )
        calls = RunCalls(setup, None, StartGate(lambda: None))
        prepare_private_dir(private_dir, prepared.project.files, calls.extravars())
        with cancel_on_signals(cancel):
            called = calls.call(PHASE_MAIN, "main.yml", steps, list(steps), last=True)
        assert not isinstance(called, LeaseLost)  # no leases in check mode
        error = first_error_line(called.outcome.rc, private_dir) if called.outcome.status == "failed" else ""
    if cancel.is_set():
        raise KeyboardInterrupt
    order = [s.id for s in steps]
    results = sorted(called.results, key=lambda r: (order.index(r.step_id), r.host))
    redactor = Redactor.for_run(prepared.runbook, prepared.params, roles_paths)
    checked = [_checked(r, redactor) for r in results]
    return DryRun(checked, error if not checked else "")


def format_text(run: DryRun) -> str:
    """What `runbook plan --check` prints after the plan: one line per step x host."""
    if run.error:
        return f"check mode: ansible-playbook stopped before any task: {run.error}\n"
    if not run.steps:
        return "check mode: no step ran (no host matches)\n"
    lines = ["check mode (what each step would change; nothing was changed):"]
    for step in run.steps:
        lines.append(f"  {step.step_id:<18} {step.host:<16} {step.outcome:<11} {step.message}".rstrip())
        lines.extend(f"      {line}" for line in step.details)
    return "\n".join(lines) + "\n"


def _checked(result: HostStepResult, redactor: Redactor) -> CheckedStep:
    outcome, message = result.status, result.message
    if result.status == SUCCEEDED:
        outcome = "changed" if result.changed else "ok"
        would = "would change: " + ", ".join(result.changed_tasks) if result.changed_tasks else ""
        message = "; ".join(part for part in (would, result.message) if part)
    elif result.status == INCOMPLETE:
        message = "stopped before the step finished (another host failed)"
    plan = result.outputs.get(PLAN_OUTPUT) if isinstance(result.outputs, dict) else None
    details = tuple(redactor.text(str(line)) for line in plan) if isinstance(plan, list) else ()
    return CheckedStep(result.step_id, result.host, outcome, redactor.text(message), details)


def _ignore_result(result: HostStepResult) -> None:
    """Results are read from the call once it is over."""


def _ignore_task(step_id: str, task: str, host: str) -> None:
    """No progress line: the plan prints the results."""


__all__ = ["CheckedStep", "DryRun", "dry_run", "format_text"]
