"""One run of a runbook: segments between approval gates, on_failure, outcome, report."""

from __future__ import annotations

import secrets
import sys
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from runner.engine import host_leases
from runner.engine.approvals import ApprovalPolicy, Approvals, Approver, Questions
from runner.engine.events import FAILED, UNREACHABLE, HostStepResult
from runner.engine.execute import first_error_line, prepare_private_dir, scrub_private_dir
from runner.engine.host_work import HostWorkGuard
from runner.engine.inventory import group_all_vars
from runner.engine.journal import utcnow, write_request
from runner.engine.leftovers import control_process
from runner.engine.outcome import EXIT_FOR_STATUS as EXIT_FOR_STATUS  # still importable from here
from runner.engine.outcome import changed_nothing, exit_status_for, failure_text
from runner.engine.prepare import PreparedRun
from runner.engine.run_calls import CallSetup, LeaseLost, RunCalls, plan_leases
from runner.engine.run_cancel import RunCancel, run_timeout_s
from runner.engine.run_log import ProgressFn, RunLog, RunStart, start_fields
from runner.engine.start_gate import StartGate
from runner.engine.step_outputs import StepOutputs
from runner.errors import ApprovalRequired, InvalidInput
from runner.language.durations import parse_moment
from runner.language.model import PHASE_MAIN, PHASE_ON_FAILURE, Runbook, Step
from runner.language.params import ResolvedParams
from runner.records.build import RunFacts, in_report_order, rollback_record
from runner.records.model import Report, Rollback, RunStatus
from runner.records.recorder import RunRecorder
from runner.records.redact import Redactor
from runner.records.report import ReportFiles


@dataclass
class RunOptions:
    inventory: Path
    roles_paths: list[Path]
    state_dir: Path
    report_dir: Path | None = None
    limit: str | None = None
    check: bool = False
    no_rollback: bool = False
    strict_budget: bool = False
    assume_yes: bool = False
    approver: Approver | None = None
    progress: ProgressFn | None = None
    trigger: str = ""
    timeout_s: float | None = None  # the run's overall deadline (--timeout); None: 3x the budget
    detected_at: str | None = None  # when the incident was detected (--detected-at), ISO 8601 UTC


@dataclass
class RunResult:
    run_id: str
    status: str
    exit_status: int
    run_dir: Path
    report: Report
    files: ReportFiles
    message: str = ""
    results: list[HostStepResult] = field(default_factory=list)


def new_run_id(runbook: Runbook) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{runbook.name}-{stamp}-{secrets.token_hex(3)}"


def segments(steps: tuple[Step, ...], *, approvals_known: bool = False) -> list[list[Step]]:
    """Runs of steps executed in one ansible-playbook call; a confirm: gate starts a new one, unless every
    approval is known before the run (--yes; check mode asks none): then all the steps go in one call."""
    if approvals_known:
        return [list(steps)] if steps else []
    groups: list[list[Step]] = []
    for step in steps:
        if not groups or step.confirm:
            groups.append([])
        groups[-1].append(step)
    return groups


class _Run(RunLog):
    """The run loop: main's segments between approval gates, then on_failure when a step failed."""

    def __init__(self, prepared: PreparedRun, options: RunOptions) -> None:
        resumption = prepared.resumption
        self.prepared, self.runbook, self.params, self.options = prepared, prepared.runbook, prepared.params, options
        self.resumed_from = resumption.resumed_from if resumption is not None else None
        self.run_id = new_run_id(self.runbook)
        self.run_dir = options.state_dir / "runs" / self.run_id
        self.private_dir = self.run_dir / "ansible"
        outputs = StepOutputs(resumption.recorded if resumption is not None else None)
        redactor = Redactor.for_run(self.runbook, self.params, options.roles_paths)
        self.origin_run_id = resumption.origin_run_id if resumption is not None else self.run_id
        self.started = ""
        # before anything else is in the run directory: a run killed before it begins can still be resumed
        write_request(self.run_dir, redactor, **start_fields(_run_start(self)), control=control_process())
        super().__init__(self.run_dir, redactor, options.progress, outputs)
        timeout_s = run_timeout_s(options.timeout_s, self.runbook.budget_s)
        self.cancel = RunCancel(timeout_s, partial(self.journal.append, "run_timeout"))
        self.lock_entry: dict[str, Any] | None = None
        self.stopped_message = ""
        self.gate = StartGate(self._begin)
        policy = ApprovalPolicy(options.assume_yes, options.check, options.approver)
        questions = Questions.for_steps(
            self.runbook.all_steps, self.params, options.inventory, prepared.hosts, redactor, outputs.by_host
        )
        self.approvals = Approvals(policy, self.journal, self.emit, self.gate, questions.of)
        setup = CallSetup(
            self.run_id, self.runbook.name, self.private_dir, options.inventory, options.roles_paths, options.limit,
            options.check, self.cancel.event, self.params.values, outputs, self.on_result, self.on_task,
            origin_run_id=self.origin_run_id, on_intent=self.on_intent,
        )
        leases = plan_leases(self.runbook, prepared.hosts, setup, self.run_dir, self.emit)
        self.calls = RunCalls(setup, leases, self.gate)
        self.host_work = HostWorkGuard(options.inventory, self.run_id, self.run_dir, self.journal.append, self.emit)
        self.host_work.leases = leases

    def run_phase(self, phase: str, playbook: str, steps: tuple[Step, ...]) -> bool:
        """Run the steps of one phase; True when every step x host succeeded or was skipped."""
        groups = segments(steps, approvals_known=self.approvals.policy.known_before_the_run)
        for index, group in enumerate(groups):
            if not self.approvals.approve_group(group):
                self.stopped_message = self.approvals.declined
                return False
            ids = [s.id for s in group]
            self.gate.when_begun(partial(self.emit, "segment_start", phase=phase, steps=ids))
            if not self._run_group(phase, playbook, steps, group, last=index == len(groups) - 1):
                return False
        return True

    def _run_group(self, phase: str, playbook: str, steps: tuple[Step, ...], group: list[Step], *, last: bool) -> bool:
        called = self.calls.call(phase, playbook, steps, group, last=last)
        if isinstance(called, LeaseLost):  # this run's lease expired and another run took the host
            self.stopped_message = str(called.error)
            self.journal.append("lock_lost", holders=called.error.holders)
            return False
        cancelled = self.cancel.is_set() or called.outcome.status == "canceled"
        if not self.options.check:  # after a timeout or a cancel the work on the hosts ends before anything else
            self.host_work.after_call(cancelled, self.prepared.hosts.of(group), called.results)
        failed = [r for r in called.results if r.status in (FAILED, UNREACHABLE)]
        if cancelled:
            return False
        if called.outcome.status != "successful" or failed:
            if not failed:
                self.stopped_message = first_error_line(called.outcome.rc, self.private_dir)
            return False
        ran = {r.step_id for r in called.results}
        missing = [s.id for s in group if s.id not in ran]
        if missing:
            self.stopped_message = f"no host matched step(s) {', '.join(missing)}"
            self.journal.append("no_hosts", steps=missing)
        return True

    def _begin(self) -> None:
        """The run holds its leases and acts from now on: lock entry, history row, run_start."""
        self.lock_entry = self.calls.lock_taken()
        if self.lock_entry is not None:
            self.journal.append("lock_taken", **self.lock_entry)
        self.record_start(_run_start(self), self.options.state_dir)

    def execute(self) -> RunResult:
        prepare_private_dir(self.private_dir, self.prepared.project.files, self.calls.extravars())
        self.started = utcnow()
        t0 = time.monotonic()
        status = RunStatus.FAILED
        rollback = Rollback.not_needed()
        detail = ""
        try:
            with self.cancel.armed():
                main_steps = self.prepared.main_steps
                self.calls.begin_before_playbooks(self.approvals.asks_first(main_steps))
                main_ok = self.run_phase(PHASE_MAIN, "main.yml", main_steps)
                if self.cancel.is_set():
                    status, detail = RunStatus.INTERRUPTED, self.cancel.reason()
                elif main_ok:
                    status = RunStatus.SUCCEEDED
                    if not main_steps:
                        detail = f"every step had succeeded in run {self.resumed_from}; nothing ran again"
                elif self.approvals.declined:
                    status, detail = RunStatus.FAILED, self.approvals.declined
                else:
                    status, detail, rollback = self._after_failure()
        except host_leases.LeaseHeld as exc:
            self.lock_entry = {"name": exc.name, "hosts": [], "taken_over": {}, "held_by": exc.holders}
            self.journal.append("lock_held", holders=exc.holders)
            scrub_private_dir(self.private_dir)
            self._finish_files(t0, RunStatus.FAILED, str(exc), Rollback.not_run(), record=False, send=False)
            raise
        except ApprovalRequired:
            self.gate.begin()
            self.journal.append("stopped", reason="approval required")
            self._finish_files(t0, RunStatus.FAILED, "stopped before a step that needs approval", rollback)
            raise
        finally:
            scrub_private_dir(self.private_dir)
            self.calls.finish()
        self.gate.begin()  # a run stopped before its first play (Ctrl-C, an ansible-playbook error) is recorded too
        host_work = self.host_work.summary()
        return self._finish_files(t0, status, f"{detail}; {host_work}" if host_work else detail, rollback)

    def _after_failure(self) -> tuple[RunStatus, str, Rollback]:
        failure = next((r for k, r in self.results.items() if r.status in (FAILED, UNREACHABLE)), None)
        refused = failure is not None and self.resumed_from is None and changed_nothing(self.results.values())
        what = failure_text(failure, self.stopped_message, refused=refused)
        if not self.runbook.on_failure:
            return RunStatus.FAILED, what + "; the runbook has no on_failure steps", Rollback.not_run()
        if self.host_work.unconfirmed:
            return RunStatus.FAILED, what + "; on_failure not started: the work may still run", Rollback.not_run()
        if self.options.no_rollback:
            return RunStatus.FAILED, what + "; on_failure skipped (--no-rollback)", Rollback.not_run()
        self.emit("rollback_start", reason=what)
        self.journal.append("rollback_start", reason=what)
        t0 = time.monotonic()
        rb_started = utcnow()
        ok = self.run_phase(PHASE_ON_FAILURE, "on_failure.yml", self.runbook.on_failure)
        rb_results = [r for (phase, _, _), r in self.results.items() if phase == PHASE_ON_FAILURE]
        rollback = rollback_record(
            rb_results, ok=ok, started=rb_started, ended=utcnow(), duration_s=round(time.monotonic() - t0, 3)
        )
        if self.cancel.is_set():
            return RunStatus.INTERRUPTED, what + "; " + self.cancel.reason() + " during on_failure", rollback
        if rollback.verified and refused and changed_nothing(rb_results):  # nothing to roll back: none was
            return RunStatus.FAILED, what + "; on_failure verified the service", replace(rollback, restored=())
        if rollback.verified:
            what = failure_text(failure, self.stopped_message, refused=False)
            return RunStatus.ROLLED_BACK, what + "; on_failure restored the service and verified it", rollback
        if ok:
            return RunStatus.FAILED, what + "; on_failure ran but no verify step confirmed the service", rollback
        bad = next((r for r in rb_results if r.status in (FAILED, UNREACHABLE)), None)
        why = f"{bad.step_id} on {bad.host}: {bad.message}" if bad else self.stopped_message
        return RunStatus.FAILED, what + f"; on_failure FAILED ({why})", rollback

    def _finish_files(
        self, t0: float, status: RunStatus, detail: str, rollback: Rollback, *, record: bool = True, send: bool = True
    ) -> RunResult:
        results = in_report_order(self.runbook, self.results.values())
        recorder = RunRecorder(self.run_dir, self.options.state_dir, self.options.report_dir, self.redactor, self.emit)
        report, files = recorder.finish(
            self._facts(t0, status, detail, rollback),
            results,
            notifications=self.runbook.notify if send and not self.options.check else (),
            params=self.params.values,
            record=record,
            inventory=lambda: group_all_vars(self.options.inventory),
        )
        ended = {"status": report.status, "detail": report.status_detail, "duration_s": report.duration_s}
        self.journal.append("run_end", **ended)
        self.journal.close()
        self.emit("run_end", **ended, report=str(files.markdown))
        return RunResult(
            run_id=self.run_id,
            status=report.status,
            exit_status=exit_status_for(report.status, rollback),
            run_dir=self.run_dir,
            report=report,
            files=files,
            message=report.status_detail,
            results=results,
        )

    def _facts(self, t0: float, status: RunStatus, detail: str, rollback: Rollback) -> RunFacts:
        return RunFacts(
            run_id=self.run_id,
            runbook=self.runbook,
            status=status,
            detail=detail,
            check_mode=self.options.check,
            strict_budget=self.options.strict_budget,
            operator=host_leases.default_owner(),
            trigger=self.options.trigger or _trigger(self.params),
            started=self.started,
            ended=utcnow(),
            duration_s=round(time.monotonic() - t0, 3),
            failure_detected=detected_at(self.options, self.runbook, self.params, self.started, self.first_failure_at),
            params=self.params.masked(),
            on_failure=rollback,
            inventory=str(self.options.inventory),
            resumed_from=self.resumed_from,
            lock=self.lock_entry,
        )


def _run_start(run: _Run) -> RunStart:
    """What the run's request, history row and run_start say."""
    options, resumption = run.options, run.prepared.resumption
    return RunStart(
        run.run_id, run.runbook, run.params.masked(), run.started, host_leases.default_owner(),
        options.trigger or _trigger(run.params), options.inventory, options.check, options.limit,
        resumption.start_at if resumption is not None else None, run.resumed_from, run.origin_run_id,
    )


def _trigger(params: ResolvedParams) -> str:
    for key in ("reason", "cause", "trigger", "incident"):
        value = params.values.get(key)
        if value and key not in params.secret_names:
            return str(value)
    return ""


def execute_run(prepared: PreparedRun, options: RunOptions) -> RunResult:
    return _Run(prepared, options).execute()


def is_tty() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


DETECTED_PARAM = "detected_at"  # a runbook's param with the alert's time, e.g. from the paging system


def detected_at(
    options: RunOptions, runbook: Runbook, params: ResolvedParams, started: str, first_failure: str | None
) -> str | None:
    """When the incident this run answers was detected, so that its time to restore counts from there:
    --detected-at, else a `detected_at` param, else the run's start for a runbook that answers an incident, else
    the run's first failure (None when nothing failed)."""
    if options.detected_at:
        return options.detected_at
    given = params.values.get(DETECTED_PARAM)
    if isinstance(given, str) and given:
        return moment_text(given, DETECTED_PARAM)
    return started if answers_an_incident(runbook) else first_failure


def answers_an_incident(runbook: Runbook) -> bool:
    """A rollback runbook (tagged rollback) a person starts because something is already broken; a deploy
    (tagged deploy) is a release that may roll itself back, whose clock starts at its own first failure."""
    return "rollback" in runbook.tags and "deploy" not in runbook.tags


def moment_text(text: str, what: str) -> str:
    """An ISO 8601 UTC time from a time or a duration ago (12m); InvalidInput naming what gave it otherwise."""
    try:
        return parse_moment(text, datetime.now(UTC)).astimezone(UTC).isoformat(timespec="milliseconds")
    except ValueError as exc:
        raise InvalidInput(f"{what} {exc}") from None
