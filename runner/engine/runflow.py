"""One run of a runbook: segments between approval gates, on_failure, outcome, report."""

from __future__ import annotations

import getpass
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from runner import __version__
from runner.engine import host_leases
from runner.engine.events import FAILED, SUCCEEDED, UNREACHABLE, EventCollector, HostStepResult
from runner.engine.execute import (
    PlaybookOutcome,
    prepare_private_dir,
    run_playbook,
    scrub_private_dir,
    write_extravars,
)
from runner.engine.inventory import resolve_hosts
from runner.engine.journal import Journal, utcnow
from runner.engine.render import extra_vars_text, render_project, step_tag
from runner.engine.run_leases import RunLeases
from runner.errors import ApprovalRequired, ExitStatus
from runner.language import policy
from runner.language.model import PHASE_MAIN, PHASE_ON_FAILURE, Runbook, Step
from runner.language.params import ResolvedParams
from runner.records import formats, history, notify
from runner.records.redact import Redactor
from runner.records.report import (
    STATUS_FAILED,
    STATUS_INTERRUPTED,
    STATUS_ROLLED_BACK,
    STATUS_SUCCEEDED,
    ReportFiles,
    collect_backups,
    collect_verification,
    hosts_versions,
    write_report,
)

EXIT_FOR_STATUS = {
    STATUS_SUCCEEDED: ExitStatus.SUCCEEDED,
    STATUS_ROLLED_BACK: ExitStatus.ROLLED_BACK,
    STATUS_FAILED: ExitStatus.NOT_RESTORED,
    STATUS_INTERRUPTED: ExitStatus.INTERRUPTED,
}

Approver = Callable[[Step, str], bool]
ProgressFn = Callable[[str, dict[str, Any]], None]


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
    start_at: str | None = None  # resume: first main step to run
    recorded: dict[str, dict[str, Any]] = field(default_factory=dict)  # resume: host -> step id -> outputs
    resumed_from: str | None = None


@dataclass
class RunResult:
    run_id: str
    status: str
    exit_status: int
    run_dir: Path
    report: dict[str, Any]
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


@contextmanager
def _interrupt_guard(cancel: threading.Event) -> Iterator[None]:
    """Ctrl-C / SIGTERM: stop after asking ansible-runner to cancel; never a traceback."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        cancel.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class _Run:
    def __init__(self, runbook: Runbook, params: ResolvedParams, options: RunOptions) -> None:
        self.runbook = runbook
        self.params = params
        self.options = options
        self.run_id = new_run_id(runbook)
        self.run_dir = options.state_dir / "runs" / self.run_id
        self.private_dir = self.run_dir / "ansible"
        self.redactor = Redactor(params.secret_values())
        self.cancel = threading.Event()
        self.results: dict[tuple[str, str, str], HostStepResult] = {}
        self.order: list[tuple[str, str, str]] = []
        self.first_failure_at: str | None = None
        self.last_seen: dict[tuple[str, str, str], tuple[str, str]] = {}
        self.leases: RunLeases | None = None
        self.lock_entry: dict[str, Any] | None = None
        self.stopped_message = ""
        self.started = ""
        self.begun = False
        self._deferred: list[Callable[[], None]] = []

    def emit(self, kind: str, **data: Any) -> None:
        if self.options.progress is not None:
            self.options.progress(kind, self.redactor.scrub(data))

    def on_result(self, result: HostStepResult) -> None:
        key = (result.phase, result.step_id, result.host)
        snapshot = (result.status, result.message)
        if self.last_seen.get(key) == snapshot:
            return  # a role re-raising the same failure (rescue -> fail) is one result, not two
        self.last_seen[key] = snapshot
        if key not in self.results:
            self.order.append(key)
        self.results[key] = result
        if result.status in (FAILED, UNREACHABLE) and self.first_failure_at is None:
            self.first_failure_at = result.ended or utcnow()
        self.journal.append("step_result", **result.to_dict())
        self.emit("step_result", **result.to_dict())

    def on_task(self, step_id: str, task: str, host: str) -> None:
        self.emit("task_start", step=step_id, task=task)

    def approve(self, step: Step) -> bool:
        if self.options.assume_yes:
            return True
        if self.options.approver is None:
            raise ApprovalRequired(
                f"step {step.id!r} needs approval ({step.confirm}); no terminal to ask on — "
                "re-run with --yes to approve, or run it interactively"
            )
        return self.options.approver(step, step.confirm or "")

    def run_phase(self, phase: str, playbook: str, steps: tuple[Step, ...]) -> bool:
        """Run the steps of one phase; True when every step x host succeeded or was skipped."""
        groups = segments(steps, approvals_known=self.options.assume_yes or self.options.check)
        for index, group in enumerate(groups):
            if not self._approve_group(group):
                return False
            ids = [s.id for s in group]
            self._when_begun(partial(self.emit, "segment_start", phase=phase, steps=ids))
            if not self._run_group(phase, playbook, steps, group, last=index == len(groups) - 1):
                return False
        return True

    def _approve_group(self, group: list[Step]) -> bool:
        """Ask for each confirm: gate of the group (none in check mode); False when the operator declined."""
        if self.options.check:
            return True
        for step in group:
            if not step.confirm:
                continue
            self._when_begun(partial(self.emit, "approval", step=step.id, question=step.confirm))
            if not self.approve(step):
                self.stopped_message = f"operator declined step {step.id!r}"
                self.journal.append("declined", step=step.id)
                return False
            self._when_begun(partial(self.journal.append, "approved", step=step.id))
        return True

    def _run_group(self, phase: str, playbook: str, steps: tuple[Step, ...], group: list[Step], *, last: bool) -> bool:
        called = self._call(phase, playbook, steps, group, last=last)
        if called is None:
            return False
        outcome, collector = called
        failed = [r for r in collector.ordered() if r.status in (FAILED, UNREACHABLE)]
        if self.cancel.is_set() or outcome.status == "canceled":
            return False
        if outcome.status != "successful" or failed:
            if not failed:
                self.stopped_message = _no_events_message(outcome.rc, self.private_dir)
            return False
        ran = {r.step_id for r in collector.ordered()}
        missing = [s.id for s in group if s.id not in ran]
        if missing:
            self.stopped_message = f"no host matched step(s) {', '.join(missing)}"
            self.journal.append("no_hosts", steps=missing)
        return True

    def _call(
        self, phase: str, playbook: str, steps: tuple[Step, ...], group: list[Step], *, last: bool
    ) -> tuple[PlaybookOutcome, EventCollector] | None:
        """One ansible-playbook call for the group, its leases taken (renewed) first and, when the run ends in it
        (last), given back last. None when another run holds a lease this run held before (no step ran)."""
        ident = f"{phase}-{group[0].id}"
        outcome, collector, refused = self._call_once(playbook, steps, group, last=last, ident=ident)
        if refused and not self.begun:
            assert self.leases is not None
            if not self.leases.take_over_dead(refused):
                self.leases.give_up(refused)
            outcome, collector, refused = self._call_once(playbook, steps, group, last=last, ident=ident + "-again")
            if refused and not self.begun:
                self.leases.give_up(refused)
        if refused:
            self._lease_lost(refused)
            return None
        self._begin()
        return outcome, collector

    def _call_once(
        self, playbook: str, steps: tuple[Step, ...], group: list[Step], *, last: bool, ident: str
    ) -> tuple[PlaybookOutcome, EventCollector, dict[str, host_leases.HostLease]]:
        collector = EventCollector(list(steps), on_result=self.on_result, on_task=self.on_task)
        handler: Callable[[dict[str, Any]], bool] = collector
        watch = None
        if self.leases is not None:
            playbook = self.leases.playbook(self.private_dir / "project", playbook, release=last)
            watch = self.leases.watch(collector, self._begin)
            handler = watch
        write_extravars(self.private_dir, self._extravars())
        outcome = run_playbook(
            self.private_dir,
            playbook,
            self.options.inventory,
            handler,
            tags=[step_tag(s) for s in group],
            limit=self.options.limit,
            check=self.options.check,
            cancel=self.cancel,
            ident=ident,
            roles_paths=self.options.roles_paths,
        )
        return outcome, collector, watch.refused() if watch is not None else {}

    def _lease_lost(self, refused: dict[str, host_leases.HostLease]) -> None:
        """A later call found a host held by another run (this run's lease expired and was taken): no step ran."""
        error = host_leases.held_error(self.runbook.lock, refused)
        self.stopped_message = str(error)
        self.journal.append("lock_lost", holders=error.holders)

    def _when_begun(self, action: Callable[[], None]) -> None:
        """Journal entries and progress events of the run: held back until it has begun (its leases taken)."""
        if self.begun:
            action()
        else:
            self._deferred.append(action)

    def _begin(self) -> None:
        """The run holds its leases and acts from now on: lock entry, history row, run_start, what was held back."""
        if self.begun:
            return
        self.begun = True
        if self.leases is not None:
            self.lock_entry = self.leases.report_entry()
            self.journal.append("lock_taken", **self.lock_entry)
            self.leases.start_renewals()
        self._history("record_start", self.options.state_dir, self.run_id, self.runbook.name,
                      self.runbook.severity, self.started, self.params.masked(), _operator(),
                      trigger=self.options.trigger or _trigger(self.params), check_mode=self.options.check)
        self.journal.append(
            "run_start",
            run_id=self.run_id,
            runbook=self.runbook.name,
            params=self.params.masked(),
            runbook_file=str(self.runbook.path),
            runbook_sha256=self.runbook.sha256,
            inventory=str(self.options.inventory),
            check=self.options.check,
            limit=self.options.limit,
            start_at=self.options.start_at,
            resumed_from=self.options.resumed_from,
        )
        self.emit("run_start", run_id=self.run_id, runbook=self.runbook.name, budget_s=self.runbook.budget_s)
        deferred, self._deferred = self._deferred, []
        for action in deferred:
            action()

    def _extravars(self) -> str:
        """Operator params plus every step output recorded so far (from the journal on resume, and from this
        run's earlier segments), so on_failure and steps after an approval gate can read steps.<id>.<key>."""
        recorded: dict[str, dict[str, Any]] = {h: dict(v) for h, v in self.options.recorded.items()}
        for (_phase, step_id, host), result in self.results.items():
            if result.status == SUCCEEDED and result.outputs:
                recorded.setdefault(host, {})[step_id] = result.outputs
        anywhere: dict[str, Any] = {}
        for host in sorted(h for h in recorded if h != "*"):
            for step_id, outputs in recorded[host].items():
                anywhere.setdefault(step_id, outputs)
        if anywhere:
            recorded["*"] = anywhere
        extra: dict[str, Any] = {"runbook_run_id": self.run_id, "runbook_name": self.runbook.name}
        if self.leases is not None:
            extra.update(self.leases.extravars())
        if recorded:
            extra["runbook_recorded_steps"] = recorded
        return extra_vars_text(self.params.values, extra)

    def execute(self) -> RunResult:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        project = render_project(self.runbook, self.options.roles_paths)
        prepare_private_dir(self.private_dir, project.files, self._extravars())
        self.journal = Journal(self.run_dir / "journal.jsonl", self.redactor)
        self.started = utcnow()
        t0 = time.monotonic()
        self.leases = self._plan_leases()
        status = STATUS_FAILED
        rollback: dict[str, Any] = {"ran": False, "status": "not needed", "duration_s": 0.0, "restored": []}
        detail = ""
        try:
            with _interrupt_guard(self.cancel):
                self._begin_before_playbooks()
                main_ok = self.run_phase(PHASE_MAIN, "main.yml", self._main_steps())
                if self.cancel.is_set():
                    status, detail = STATUS_INTERRUPTED, "interrupted by the operator (signal)"
                elif main_ok:
                    status = STATUS_SUCCEEDED
                elif self.stopped_message.startswith("operator declined"):
                    status, detail = STATUS_FAILED, self.stopped_message
                else:
                    status, detail, rollback = self._after_failure()
        except host_leases.LeaseHeld as exc:
            self.lock_entry = {"name": exc.name, "hosts": [], "taken_over": {}, "held_by": exc.holders}
            self.journal.append("lock_held", holders=exc.holders)
            scrub_private_dir(self.private_dir)
            self._finish_files(t0, STATUS_FAILED, str(exc), {"ran": False, "status": "not run",
                                                             "duration_s": 0.0, "restored": []},
                               record=False, send=False)
            raise
        except ApprovalRequired:
            self._begin()
            self.journal.append("stopped", reason="approval required")
            self._finish_files(t0, STATUS_FAILED, "stopped before a step that needs approval", rollback)
            raise
        finally:
            scrub_private_dir(self.private_dir)
            self._release_leases()
        self._begin()  # a run stopped before its first play (Ctrl-C, an ansible-playbook error) is recorded too
        return self._finish_files(t0, status, detail, rollback)

    def _plan_leases(self) -> RunLeases | None:
        """One lease per target host (none in check mode or lock: none), taken in the run's first playbook call."""
        if self.runbook.lock == "none" or self.options.check:
            return None
        patterns = sorted({s.hosts for s in self.runbook.all_steps})
        resolved = resolve_hosts(self.options.inventory, patterns, self.options.limit)
        targets = sorted({host for hosts in resolved.values() for host in hosts})
        if not targets:
            return None
        self.emit("lock", hosts=targets, name=self.runbook.lock)
        return RunLeases(
            self.options.inventory, targets, self.run_id, ttl_s=max(2 * self.runbook.budget_s, 600),
            name=self.runbook.lock, work_dir=self.run_dir,
        )

    def _begin_before_playbooks(self) -> None:
        """Without leases the run begins at once. When an operator must approve the first step, the leases are
        taken first by a playbook of their own (no one is asked about a host another run holds); otherwise they
        are taken in the first playbook call and the run begins there."""
        if self.leases is None:
            self._begin()
            return
        steps = self._main_steps()
        if steps and steps[0].confirm and not self.options.assume_yes:
            self.leases.acquire_now()
            self._begin()

    def _release_leases(self) -> None:
        if self.leases is not None:
            self.leases.finish()

    def _history(self, action: str, *args: Any, **kwargs: Any) -> None:
        """History must never stop a recovery: a failure to record is a warning."""
        try:
            getattr(history, action)(*args, **kwargs)
        except history.HistoryError as exc:
            self.emit("warning", message=f"history not recorded: {exc}")

    def _report_order(self, result: HostStepResult) -> tuple[int, int, str]:
        """Main before on_failure, steps in runbook order, hosts by name: the same run reads the same way."""
        phases = (PHASE_MAIN, PHASE_ON_FAILURE)
        ids = [s.id for s in self.runbook.all_steps]
        position = ids.index(result.step_id) if result.step_id in ids else len(ids)
        return (phases.index(result.phase) if result.phase in phases else 2, position, result.host)

    def _main_steps(self) -> tuple[Step, ...]:
        if not self.options.start_at:
            return self.runbook.steps
        ids = [s.id for s in self.runbook.steps]
        return self.runbook.steps[ids.index(self.options.start_at) :]

    def _after_failure(self) -> tuple[str, str, dict[str, Any]]:
        failure = next((r for k, r in self.results.items() if r.status in (FAILED, UNREACHABLE)), None)
        what = (
            f"step {failure.step_id!r} failed on {failure.host}: {failure.message}"
            if failure
            else self.stopped_message or "the run failed"
        )
        rollback: dict[str, Any] = {"ran": False, "status": "not run", "duration_s": 0.0, "restored": []}
        if not self.runbook.on_failure:
            return STATUS_FAILED, what + "; the runbook has no on_failure steps", rollback
        if self.options.no_rollback:
            return STATUS_FAILED, what + "; on_failure skipped (--no-rollback)", rollback
        self.emit("rollback_start", reason=what)
        self.journal.append("rollback_start", reason=what)
        t0 = time.monotonic()
        rb_started = utcnow()
        ok = self.run_phase(PHASE_ON_FAILURE, "on_failure.yml", self.runbook.on_failure)
        rb_results = [self.results[k] for k in self.order if k[0] == PHASE_ON_FAILURE]
        verified = [r for r in rb_results if r.status == SUCCEEDED and _verified(r)]
        rollback = {
            "ran": True,
            "started": rb_started,
            "ended": utcnow(),
            "duration_s": round(time.monotonic() - t0, 3),
            "status": "succeeded" if ok else "failed",
            "verified": bool(verified) and ok,
            "restored": [
                str(r.outputs.get("restored") or _describe_restore(r))
                for r in rb_results
                if r.status == SUCCEEDED
            ],
        }
        if self.cancel.is_set():
            return STATUS_INTERRUPTED, what + "; interrupted during on_failure", rollback
        if ok and verified:
            return STATUS_ROLLED_BACK, what + "; on_failure restored the service and verified it", rollback
        if ok:
            return STATUS_FAILED, what + "; on_failure ran but no verify step confirmed the service", rollback
        bad = next((r for r in rb_results if r.status in (FAILED, UNREACHABLE)), None)
        why = f"{bad.step_id} on {bad.host}: {bad.message}" if bad else self.stopped_message
        return STATUS_FAILED, what + f"; on_failure FAILED ({why})", rollback

    def _finish_files(
        self,
        t0: float,
        status: str,
        detail: str,
        rollback: dict[str, Any],
        *,
        record: bool = True,
        send: bool = True,
    ) -> RunResult:
        duration = round(time.monotonic() - t0, 3)
        results = sorted((self.results[k] for k in self.order), key=self._report_order)
        step_dicts = [r.to_dict() for r in results]
        target = policy.response_target_s(self.runbook.severity)
        budget_met = duration <= self.runbook.budget_s
        if self.options.strict_budget and not budget_met and status == STATUS_SUCCEEDED:
            status, detail = STATUS_FAILED, f"budget {self.runbook.budget_s:.0f}s exceeded (--strict-budget)"
        verification = collect_verification(step_dicts)
        report: dict[str, Any] = {
            "run_id": self.run_id,
            "runbook": {
                "name": self.runbook.name,
                "title": self.runbook.title,
                "file": str(self.runbook.path),
                "sha256": self.runbook.sha256,
                "owner": self.runbook.owner,
            },
            "severity": self.runbook.severity,
            "status": status,
            "status_detail": detail,
            "check_mode": self.options.check,
            "operator": _operator(),
            "trigger": self.options.trigger or _trigger(self.params),
            "started": self.started,
            "ended": utcnow(),
            "duration_s": duration,
            "budget_s": self.runbook.budget_s,
            "budget_from": self.runbook.budget_from,
            "budget_met": budget_met,
            "severity_target_s": target,
            "severity_target_met": duration <= target,
            "failure_detected": self.first_failure_at,
            "params": self.params.masked(),
            "hosts": hosts_versions(step_dicts),
            "steps": [
                {
                    "id": r.step_id,
                    "phase": r.phase,
                    "host": r.host,
                    "status": r.status,
                    "duration_s": r.duration_s,
                    "changed": r.changed,
                    "message": r.message,
                    "started": r.started,
                    "ended": r.ended,
                }
                for r in results
            ],
            "outputs": {f"{r.step_id}@{r.host}": r.outputs for r in results if r.outputs},
            "on_failure": rollback,
            "backups": collect_backups(step_dicts),
            "verification": verification,
            "data_check": _data_check(step_dicts),
            "notifications": [],
            "inventory": str(self.options.inventory),
            "resumed_from": self.options.resumed_from,
            "runner_version": __version__,
        }
        report["lock"] = self.lock_entry or {"name": self.runbook.lock, "hosts": [], "taken_over": {}, "held_by": {}}
        report = self.redactor.scrub(report)
        if send and not self.options.check and self.runbook.notify:
            self.emit("notify", count=len(self.runbook.notify))
            report["notifications"] = notify.send_all(
                list(self.runbook.notify), report, self.params.values, self.redactor,
                report_path=str(self.run_dir / "report.md"),
            )
        files = write_report(report, self.run_dir)
        formats.write_all(report, self.run_dir)
        if self.options.report_dir is not None:
            write_report(report, self.options.report_dir)
            formats.write_all(report, self.options.report_dir)
            files = ReportFiles(
                self.options.report_dir,
                self.options.report_dir / "report.json",
                self.options.report_dir / "report.md",
            )
        if record:
            self._history("record_end", self.options.state_dir, report, report_path=self.run_dir / "report.json")
        self.journal.append("run_end", status=status, detail=detail, duration_s=duration)
        self.journal.close()
        self.emit("run_end", status=status, detail=detail, duration_s=duration, report=str(files.markdown))
        return RunResult(
            run_id=self.run_id,
            status=status,
            exit_status=EXIT_FOR_STATUS[status],
            run_dir=self.run_dir,
            report=report,
            files=files,
            message=detail,
            results=results,
        )


def _verified(result: HostStepResult) -> bool:
    """A step that checked the service and found it healthy (the verify role, or any role publishing checks)."""
    checks = result.outputs.get("checks")
    if isinstance(checks, list) and checks:
        return all(isinstance(c, dict) and c.get("ok") for c in checks)
    return bool(result.outputs.get("healthy"))


def _describe_restore(result: HostStepResult) -> str:
    outputs = result.outputs
    if outputs.get("version_after"):
        return f"{result.host}: {result.step_id} → {outputs['version_after']}"
    return f"{result.host}: {result.step_id} succeeded"


def _data_check(step_dicts: list[dict[str, Any]]) -> str:
    lines = []
    for result in step_dicts:
        outputs = result.get("outputs") or {}
        before, after = outputs.get("rows_before"), outputs.get("rows_after")
        if isinstance(before, dict) and isinstance(after, dict):
            lost = {t: before[t] - after.get(t, 0) for t in before if after.get(t, 0) < before[t]}
            lines.append(f"{result['host']}: rows lost {lost}" if lost else f"{result['host']}: no rows lost")
    return "; ".join(lines) if lines else "no database step in this run"


def _operator() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{os.uname().nodename}"


def _trigger(params: ResolvedParams) -> str:
    for key in ("reason", "cause", "trigger", "incident"):
        value = params.values.get(key)
        if value and key not in params.secret_names:
            return str(value)
    return ""


def _no_events_message(rc: int, private_dir: Path) -> str:
    """ansible-playbook failed before any task ran (bad inventory, syntax): show its own error line."""
    stdout_files = sorted((private_dir / "artifacts").glob("*/stdout"), key=lambda p: p.stat().st_mtime)
    if stdout_files:
        lines = [
            line for line in stdout_files[-1].read_text(errors="replace").splitlines() if "ERROR" in line
        ]
        if not lines:
            lines = [
                line for line in stdout_files[-1].read_text(errors="replace").splitlines() if line.strip()
            ]
        if lines:
            return lines[-1].strip()
    return f"ansible-playbook exited {rc} before running any task"


def execute_run(runbook: Runbook, params: ResolvedParams, options: RunOptions) -> RunResult:
    return _Run(runbook, params, options).execute()


def is_tty() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()
