"""The one place a run's report is built: from the facts of the run and its step x host results."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runner import __version__
from runner.engine.events import HostStepResult
from runner.language import policy
from runner.language.durations import parse_time
from runner.language.model import PHASE_MAIN, PHASE_ON_FAILURE, Runbook
from runner.records.datacheck import DataCheck
from runner.records.jsonread import Fields
from runner.records.model import (
    Backup,
    Check,
    HostVersions,
    LockEntry,
    Report,
    Rollback,
    RollbackStatus,
    RunbookRef,
    RunStatus,
    StepResult,
    StepStatus,
    Version,
)
from runner.records.watch_record import collect_watches, first_detection_s


@dataclass(frozen=True)
class RunFacts:
    """What the engine knows about a run when it ends (params already masked)."""

    run_id: str
    runbook: Runbook
    status: RunStatus
    detail: str
    check_mode: bool
    strict_budget: bool
    operator: str
    trigger: str
    started: str
    ended: str
    duration_s: float
    failure_detected: str | None
    params: dict[str, Any]
    on_failure: Rollback
    inventory: str
    resumed_from: str | None
    lock: Mapping[str, Any] | None  # the leases' report entry; None when the run held none


def build_report(facts: RunFacts, results: Sequence[HostStepResult]) -> Report:
    """The report of the run (not yet redacted); results in report order (in_report_order)."""
    runbook = facts.runbook
    target = policy.response_target_s(runbook.severity)
    budget_met = facts.duration_s <= runbook.budget_s
    status, detail = facts.status, facts.detail
    restored = time_to_restore(facts.failure_detected, status, facts.ended, facts.on_failure)
    if facts.strict_budget and not budget_met and status == RunStatus.SUCCEEDED:
        status, detail = RunStatus.FAILED, f"budget {runbook.budget_s:.0f}s exceeded (--strict-budget)"
    watches = collect_watches(runbook, results)
    return Report(
        run_id=facts.run_id,
        runbook=RunbookRef(runbook.name, runbook.title, str(runbook.path), runbook.sha256, runbook.owner),
        severity=runbook.severity,
        status=status,
        status_detail=detail,
        check_mode=facts.check_mode,
        operator=facts.operator,
        trigger=facts.trigger,
        started=facts.started,
        ended=facts.ended,
        duration_s=facts.duration_s,
        budget_s=runbook.budget_s,
        budget_from=runbook.budget_from,
        budget_met=budget_met,
        severity_target_s=target,
        severity_target_met=(restored if restored is not None else facts.duration_s) <= target,
        failure_detected=facts.failure_detected,
        time_to_restore_s=restored,
        params=facts.params,
        hosts=hosts_versions(results),
        steps=tuple(_step_row(r) for r in results),
        outputs={f"{r.step_id}@{r.host}": r.outputs for r in results if r.outputs},
        on_failure=facts.on_failure,
        backups=collect_backups(results),
        verification=collect_verification(results),
        data_check=DataCheck.from_outputs((r.step_id, r.host, r.outputs) for r in results),
        notifications=(),
        inventory=facts.inventory,
        resumed_from=facts.resumed_from,
        runner_version=__version__,
        lock=_lock(facts.lock, runbook.lock),
        watches=watches,
        time_to_detect_s=first_detection_s(watches),
    )


def in_report_order(runbook: Runbook, results: Iterable[HostStepResult]) -> list[HostStepResult]:
    """Main before on_failure, steps in runbook order, hosts by name: the same run reads the same way."""
    phases = (PHASE_MAIN, PHASE_ON_FAILURE)
    ids = [s.id for s in runbook.all_steps]

    def key(result: HostStepResult) -> tuple[int, int, str]:
        position = ids.index(result.step_id) if result.step_id in ids else len(ids)
        return (phases.index(result.phase) if result.phase in phases else 2, position, result.host)

    return sorted(results, key=key)


def rollback_record(
    results: Sequence[HostStepResult], *, ok: bool, started: str, ended: str, duration_s: float
) -> Rollback:
    """What on_failure did, from its step x host results; ok: every one of them succeeded or was skipped."""
    succeeded = [r for r in results if r.status == StepStatus.SUCCEEDED]
    return Rollback(
        ran=True,
        status=RollbackStatus.SUCCEEDED if ok else RollbackStatus.FAILED,
        duration_s=duration_s,
        restored=tuple(_restored(r) for r in succeeded),
        started=started,
        ended=ended,
        verified=ok and any(verified(r) for r in succeeded),
    )


def verified(result: HostStepResult) -> bool:
    """A step that checked the service and found it healthy (the verify role, or any role publishing checks)."""
    checks = result.outputs.get("checks")
    if isinstance(checks, list) and checks:
        return all(isinstance(c, dict) and c.get("ok") for c in checks)
    return bool(result.outputs.get("healthy"))


def _restored(result: HostStepResult) -> str:
    said = result.outputs.get("restored")
    if said:
        return str(said)
    if result.outputs.get("version_after"):
        return f"{result.host}: {result.step_id} → {result.outputs['version_after']}"
    return f"{result.host}: {result.step_id} succeeded"


def _step_row(result: HostStepResult) -> StepResult:
    return StepResult(
        id=result.step_id,
        phase=result.phase,
        host=result.host,
        status=StepStatus(result.status),
        duration_s=result.duration_s,
        changed=result.changed,
        message=result.message,
        started=result.started,
        ended=result.ended,
    )


def _version(value: Any) -> Version:
    if value is None or (isinstance(value, (str, int, float)) and not isinstance(value, bool)):
        return value
    return str(value)


def hosts_versions(results: Iterable[HostStepResult]) -> dict[str, HostVersions]:
    """Per host: the first version_before and the last version_after any step reported."""
    found: dict[str, list[Version]] = {}
    for result in results:
        entry = found.setdefault(result.host, [None, None])
        before, after = result.outputs.get("version_before"), result.outputs.get("version_after")
        if before and entry[0] is None:
            entry[0] = _version(before)
        if after:
            entry[1] = _version(after)
    return {host: HostVersions(before, after) for host, (before, after) in found.items()}


def collect_backups(results: Iterable[HostStepResult]) -> tuple[Backup, ...]:
    backups = []
    for result in results:
        backup = result.outputs.get("backup")
        if isinstance(backup, dict) and result.status == StepStatus.SUCCEEDED:
            merged = {"step": result.step_id, "host": result.host, **backup}
            facts = {k: v for k, v in merged.items() if k not in ("step", "host")}
            backups.append(Backup(str(merged["step"]), str(merged["host"]), facts))
    return tuple(backups)


def collect_verification(results: Iterable[HostStepResult]) -> tuple[Check, ...]:
    checks = []
    for result in results:
        published = result.outputs.get("checks")
        for check in published if isinstance(published, list) else []:
            if isinstance(check, dict):
                checks.append(
                    Check(
                        step=result.step_id,
                        phase=result.phase,
                        host=result.host,
                        name=str(check.get("name", "")),
                        ok=bool(check.get("ok")),
                        detail=str(check.get("detail", "")),
                    )
                )
    return tuple(checks)


def _lock(entry: Mapping[str, Any] | None, lock_name: str) -> LockEntry:
    return LockEntry.read(Fields(entry, "lock")) if entry else LockEntry(lock_name)


def time_to_restore(detected: str | None, status: RunStatus, ended: str, rollback: Rollback) -> float | None:
    """Seconds from the failure's detection to the service restored: the run's end for a run that succeeded
    (a rollback runbook's verify passed), on_failure's end for a run it rolled back; None otherwise."""
    start = parse_time(detected)
    if status == RunStatus.SUCCEEDED:
        end = parse_time(ended)
    elif status == RunStatus.ROLLED_BACK and rollback.verified:
        end = parse_time(rollback.ended)
    else:
        return None
    if start is None or end is None:
        return None
    return round(max((end - start).total_seconds(), 0.0), 3)
