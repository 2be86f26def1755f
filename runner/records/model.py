"""The typed run record: what one run did, exactly as report.json holds it (schemas/report.schema.json).

Report.to_json() is report.json; Report.from_json() reads one back, refusing a file that is not a run report.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Self, TypedDict

from runner.errors import InvalidInput
from runner.records.datacheck import DataCheck
from runner.records.jsonread import Fields, ShapeError, load_object, read_record
from runner.records.watch_record import Watch


class RunStatus(StrEnum):
    """The outcome of a run (exit 0, 1, 3 and 130)."""

    SUCCEEDED = "succeeded"
    ROLLED_BACK = "rolled_back"  # a step failed; on_failure restored the service and verified it
    FAILED = "failed"  # not restored; or a step refused, nothing was changed and on_failure verified the service
    INTERRUPTED = "interrupted"  # signal


class StepStatus(StrEnum):
    """The outcome of one step on one host."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    UNREACHABLE = "unreachable"
    INCOMPLETE = "incomplete"  # started, never finished


class RollbackStatus(StrEnum):
    NOT_NEEDED = "not needed"  # nothing failed
    NOT_RUN = "not run"  # no on_failure steps, --no-rollback, or the run never started
    SUCCEEDED = "succeeded"
    FAILED = "failed"


Version = str | int | float | None


def record_json(record: Any, names: tuple[str, ...] = ()) -> dict[str, Any]:
    """A dataclass record as JSON: the fields named (all of them, in order, when none are), enums as their
    values, tuples as lists."""
    keys = names or tuple(spec.name for spec in dataclasses.fields(record))
    return {key: _plain(getattr(record, key)) for key in keys}


def _plain(value: Any) -> Any:
    if isinstance(value, StrEnum):
        return value.value
    return list(value) if isinstance(value, tuple) else value


class JsonRecord:
    """A record of the report whose JSON object holds each of its fields under the field's name; READ_DEFAULTS:
    what a missing field reads as when that is not the field's own default."""

    READ_DEFAULTS: ClassVar[Mapping[str, Any]] = {}

    def to_json(self) -> dict[str, Any]:
        return record_json(self)

    @classmethod
    def read(cls, f: Fields) -> Self:
        return read_record(cls, f, **cls.READ_DEFAULTS)


@dataclass(frozen=True)
class RunbookRef(JsonRecord):
    name: str
    title: str = ""
    file: str = ""
    sha256: str = ""
    owner: str = ""


@dataclass(frozen=True)
class HostVersions(JsonRecord):
    """The first version_before and the last version_after the steps reported for one host."""

    version_before: Version = None
    version_after: Version = None


@dataclass(frozen=True)
class StepResult(JsonRecord):
    """One step x host row of the report."""

    READ_DEFAULTS: ClassVar[Mapping[str, Any]] = {"phase": "main", "status": StepStatus.INCOMPLETE}

    id: str
    phase: str
    host: str
    status: StepStatus
    duration_s: float = 0.0
    changed: bool = False
    message: str = ""
    started: str = ""
    ended: str = ""

    @property
    def failed(self) -> bool:
        return self.status in (StepStatus.FAILED, StepStatus.UNREACHABLE)


@dataclass(frozen=True)
class Rollback(JsonRecord):
    """What the on_failure phase did; started, ended and verified are known when it ran."""

    READ_DEFAULTS: ClassVar[Mapping[str, Any]] = {"status": RollbackStatus.NOT_NEEDED}

    ran: bool
    status: RollbackStatus
    duration_s: float = 0.0
    restored: tuple[str, ...] = ()
    started: str | None = None
    ended: str | None = None
    verified: bool = False

    @classmethod
    def not_needed(cls) -> Rollback:
        return cls(ran=False, status=RollbackStatus.NOT_NEEDED)

    @classmethod
    def not_run(cls) -> Rollback:
        return cls(ran=False, status=RollbackStatus.NOT_RUN)

    def to_json(self) -> dict[str, Any]:
        if not self.ran:
            return {"ran": False, "status": self.status.value, "duration_s": self.duration_s, "restored": []}
        return record_json(self, ("ran", "started", "ended", "duration_s", "status", "verified", "restored"))


@dataclass(frozen=True)
class Backup:
    """A backup a step made: where it is, plus whatever else its role reported (path, size, sha256, ...)."""

    step: str
    host: str
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> str | None:
        value = self.facts.get("path")
        return None if value is None else str(value)

    @property
    def size(self) -> int | str | None:
        value = self.facts.get("size")
        return value if isinstance(value, (int, str)) else None

    @property
    def sha256(self) -> str | None:
        value = self.facts.get("sha256")
        return None if value is None else str(value)

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "host": self.host, **self.facts}

    @classmethod
    def read(cls, f: Fields) -> Backup:
        return cls(f.text("step"), f.text("host"), f.rest("step", "host"))


@dataclass(frozen=True)
class Check(JsonRecord):
    """One verification check a step reported."""

    READ_DEFAULTS: ClassVar[Mapping[str, Any]] = {"phase": "main"}

    step: str
    phase: str
    host: str
    name: str
    ok: bool
    detail: str


class NotificationResult(TypedDict):
    """One notification sent at the end of the run (target with secrets masked)."""

    kind: str
    target: str
    ok: bool
    error: str
    attempts: int


def _notification(f: Fields) -> NotificationResult:
    return {"kind": f.text("kind"), "target": f.text("target"), "ok": f.flag("ok"), "error": f.text("error"),
            "attempts": f.count("attempts")}


@dataclass(frozen=True)
class LockEntry:
    """The run's leases: the lock, the hosts it held, expired leases it took over, live ones that refused it."""

    name: str
    hosts: tuple[str, ...] = ()
    taken_over: dict[str, dict[str, Any]] = field(default_factory=dict)
    held_by: dict[str, dict[str, Any] | None] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "hosts": list(self.hosts), "taken_over": self.taken_over, "held_by": self.held_by}

    @classmethod
    def read(cls, f: Fields) -> LockEntry:
        taken = {host: dict(lease.data) for host, lease in f.children("taken_over").items()}
        held: dict[str, dict[str, Any] | None] = {}
        for host, lease in f.mapping("held_by").items():
            held[host] = None if lease is None else dict(Fields(lease, f"{f.where}.held_by.{host}").data)
        return cls(f.text("name"), f.strings("hosts"), taken, held)


@dataclass(frozen=True)
class Report:
    """One run of a runbook, as report.json holds it."""

    run_id: str
    runbook: RunbookRef
    severity: str
    status: RunStatus
    status_detail: str
    check_mode: bool
    operator: str
    trigger: str
    started: str
    ended: str
    duration_s: float
    budget_s: float
    budget_from: str
    budget_met: bool
    severity_target_s: float
    severity_target_met: bool
    failure_detected: str | None
    time_to_restore_s: float | None  # failure_detected -> service restored (verified), when both are known
    params: dict[str, Any]
    hosts: dict[str, HostVersions]
    steps: tuple[StepResult, ...]
    outputs: dict[str, dict[str, Any]]  # '<step id>@<host>' -> what the step published there
    on_failure: Rollback
    backups: tuple[Backup, ...]
    verification: tuple[Check, ...]
    data_check: DataCheck
    notifications: tuple[NotificationResult, ...]
    inventory: str
    resumed_from: str | None
    runner_version: str
    lock: LockEntry
    watches: tuple[Watch, ...] = ()
    time_to_detect_s: float | None = None  # release live -> the first breach a watch confirmed

    @property
    def rolled_back_to(self) -> tuple[str, ...]:
        """The version(s) the hosts run after on_failure: the seed report's 'version rolled back to'."""
        if not self.on_failure.ran:
            return ()
        versions: list[str] = []
        for entry in self.hosts.values():
            if entry.version_after and str(entry.version_after) not in versions:
                versions.append(str(entry.version_after))
        return tuple(versions)

    def with_notifications(self, sent: list[NotificationResult]) -> Report:
        return dataclasses.replace(self, notifications=tuple(sent))

    def scrubbed(self, scrub: Callable[[Any], Any]) -> Report:
        """The same report with every text (keys too) passed through scrub, e.g. Redactor.scrub."""
        return Report.from_dict(scrub(self.to_json()))

    def to_json(self) -> dict[str, Any]:
        return copy.deepcopy(
            {
                "run_id": self.run_id,
                "runbook": self.runbook.to_json(),
                "severity": self.severity,
                "status": self.status.value,
                "status_detail": self.status_detail,
                "check_mode": self.check_mode,
                "operator": self.operator,
                "trigger": self.trigger,
                "started": self.started,
                "ended": self.ended,
                "duration_s": self.duration_s,
                "budget_s": self.budget_s,
                "budget_from": self.budget_from,
                "budget_met": self.budget_met,
                "severity_target_s": self.severity_target_s,
                "severity_target_met": self.severity_target_met,
                "failure_detected": self.failure_detected,
                **({"time_to_restore_s": self.time_to_restore_s} if self.time_to_restore_s is not None else {}),
                "params": self.params,
                "hosts": {host: versions.to_json() for host, versions in self.hosts.items()},
                "steps": [step.to_json() for step in self.steps],
                "outputs": self.outputs,
                "on_failure": self.on_failure.to_json(),
                "backups": [backup.to_json() for backup in self.backups],
                "verification": [check.to_json() for check in self.verification],
                "data_check": self.data_check.summary,
                "data_check_detail": self.data_check.to_json(),
                "notifications": [dict(n) for n in self.notifications],
                "inventory": self.inventory,
                "resumed_from": self.resumed_from,
                "runner_version": self.runner_version,
                "lock": self.lock.to_json(),
                "watches": [watch.to_json() for watch in self.watches],
                "time_to_detect_s": self.time_to_detect_s,
            }
        )

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "report.json") -> Report:
        """A report.json; InvalidInput (naming source) when it is not JSON, not an object, or not a run report."""
        return cls.from_dict(load_object(text, source), source)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "the report") -> Report:
        """A report as report.json holds it; a field older reports lack takes its default."""
        try:
            return cls._read(Fields(data, ""))
        except ShapeError as exc:
            raise InvalidInput(f"{source} is not a run report: {exc}") from None

    @classmethod
    def _read(cls, f: Fields) -> Report:
        if not f.text("run_id"):
            raise ShapeError("run_id is missing")
        return cls(
            run_id=f.text("run_id"),
            runbook=RunbookRef.read(f.child("runbook")),
            severity=f.text("severity"),
            status=f.choice("status", RunStatus, RunStatus.FAILED),
            status_detail=f.text("status_detail"),
            check_mode=f.flag("check_mode"),
            operator=f.text("operator"),
            trigger=f.text("trigger"),
            started=f.text("started"),
            ended=f.text("ended"),
            duration_s=f.number("duration_s"),
            budget_s=f.number("budget_s"),
            budget_from=f.text("budget_from"),
            budget_met=f.flag("budget_met", True),
            severity_target_s=f.number("severity_target_s"),
            severity_target_met=f.flag("severity_target_met", True),
            failure_detected=f.optional_text("failure_detected"),
            time_to_restore_s=f.number("time_to_restore_s") if f.has("time_to_restore_s") else None,
            params=f.mapping("params"),
            hosts={host: HostVersions.read(entry) for host, entry in f.children("hosts").items()},
            steps=tuple(StepResult.read(step) for step in f.objects("steps")),
            outputs={key: dict(published.data) for key, published in f.children("outputs").items()},
            on_failure=Rollback.read(f.child("on_failure")) if f.has("on_failure") else Rollback.not_needed(),
            backups=tuple(Backup.read(backup) for backup in f.objects("backups")),
            verification=tuple(Check.read(check) for check in f.objects("verification")),
            data_check=DataCheck.read(f),
            notifications=tuple(_notification(n) for n in f.objects("notifications")),
            inventory=f.text("inventory"),
            resumed_from=f.optional_text("resumed_from"),
            runner_version=f.text("runner_version"),
            lock=LockEntry.read(f.child("lock")),
            watches=tuple(Watch.read(watch) for watch in f.objects("watches")),
            time_to_detect_s=f.number("time_to_detect_s") if f.has("time_to_detect_s") else None,
        )


def as_report(report: Report | Mapping[str, Any]) -> Report:
    """A typed report, from itself or from the dict of a report.json."""
    return report if isinstance(report, Report) else Report.from_dict(report)


__all__ = [
    "Backup",
    "Check",
    "DataCheck",
    "HostVersions",
    "LockEntry",
    "NotificationResult",
    "Report",
    "Rollback",
    "RollbackStatus",
    "RunStatus",
    "RunbookRef",
    "StepResult",
    "StepStatus",
    "Version",
    "Watch",
    "as_report",
]
