"""Recovery metrics from the run history (DESIGN section 5), as text or Prometheus exposition format.

Definitions (per runbook and over all runbooks; runs still in progress are left out, check-mode runs too unless
asked for, since they change nothing):
- runs: finished runs, plus runs that started and never ended (counted as `interrupted`).
- success rate: succeeded / runs.
- rollback frequency: rolled_back / runs.
- rollbacks: runs whose on_failure phase ran (whether or not it restored the service).
- MTTR: mean over rolled_back runs of failure detected -> service verified (on_failure end), in seconds.
- time to rollback: run start -> service verified (on_failure end) of a rolled_back run; it is within target
  when it is at most the response target of the run's severity (policies/severity.yml). A rollback that did not
  restore the service is never within target. within_target_ratio = within target / rollbacks.
- data-loss incidents: runs whose data check says rows were lost.
- time to detect: mean over runs in which a watch confirmed a breach of release live (the end of the step that put
  the release live) -> breach confirmed. It is the part of the outage before MTTR's clock starts: MTTR runs from
  the failure detected, so release live -> service verified is about time to detect + MTTR.
Drills (trigger drill:NAME) are not incidents and are left out; their pass rate and time: runner.records.drills.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.language.durations import format_seconds
from runner.records import history
from runner.records.drills import is_drill
from runner.records.history import epoch
from runner.records.model import RunStatus


def _target_s(severity: str, stored: float | None) -> float | None:
    from runner.language import policy

    try:
        return policy.response_target_s(severity)
    except (KeyError, ValueError, OSError):
        return stored


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


@dataclass
class Metrics:
    """Recovery metrics of one runbook (or of all, with runbook == '')."""

    runbook: str
    runs: int = 0
    by_status: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RunStatus, 0))
    rollbacks: int = 0
    rollbacks_within_target: int = 0
    restores: int = 0  # runs that restored an incident themselves (a rollback runbook started by a person)
    restores_within_target: int = 0
    recovery_times_s: list[float] = field(default_factory=list)  # failure detected -> service verified
    rollback_times_s: list[float] = field(default_factory=list)  # run start -> service verified
    detection_times_s: list[float] = field(default_factory=list)  # release live -> breach confirmed by a watch
    data_loss_incidents: int = 0
    budget_missed: int = 0
    durations_s: list[float] = field(default_factory=list)
    last_run_epoch: float | None = None
    last_status: str = ""
    severity_target_s: float | None = None

    @property
    def succeeded(self) -> int:
        return self.by_status[RunStatus.SUCCEEDED]

    @property
    def rolled_back(self) -> int:
        return self.by_status[RunStatus.ROLLED_BACK]

    @property
    def success_rate(self) -> float | None:
        return _ratio(self.succeeded, self.runs)

    @property
    def rollback_frequency(self) -> float | None:
        return _ratio(self.rolled_back, self.runs)

    @property
    def mttr_s(self) -> float | None:
        return _mean(self.recovery_times_s)

    @property
    def mean_time_to_rollback_s(self) -> float | None:
        return _mean(self.rollback_times_s)

    @property
    def mean_time_to_detect_s(self) -> float | None:
        return _mean(self.detection_times_s)

    @property
    def detections(self) -> int:
        return len(self.detection_times_s)

    @property
    def within_target_ratio(self) -> float | None:
        return _ratio(self.rollbacks_within_target, self.rollbacks)

    @property
    def mean_duration_s(self) -> float | None:
        return _mean(self.durations_s)

    def add(self, row: history.RunRow) -> None:
        if row.status == history.STATUS_RUNNING:
            return
        self.runs += 1
        self.by_status[row.status] = self.by_status.get(row.status, 0) + 1
        if row.duration_s is not None:
            self.durations_s.append(float(row.duration_s))
        if row.budget_met is False:
            self.budget_missed += 1
        if row.data_loss:
            self.data_loss_incidents += 1
        if row.time_to_detect_s is not None:
            self.detection_times_s.append(float(row.time_to_detect_s))
        if self.last_run_epoch is None or row.started_epoch >= self.last_run_epoch:
            self.last_run_epoch = row.started_epoch
            self.last_status = row.status
        target = _target_s(row.severity, row.severity_target_s)
        if self.runbook:
            self.severity_target_s = target
        if not row.rollback_ran:
            self._restored(row, target)
            return
        self.rollbacks += 1
        verified_at = epoch(row.rollback_ended)
        if row.status != RunStatus.ROLLED_BACK or verified_at is None:
            return
        detected = epoch(row.failure_detected) or epoch(row.rollback_started)
        if detected is not None:
            self.recovery_times_s.append(max(verified_at - detected, 0.0))
        to_rollback = max(verified_at - row.started_epoch, 0.0)
        self.rollback_times_s.append(to_rollback)
        if target is not None and to_rollback <= target:
            self.rollbacks_within_target += 1

    def _restored(self, row: history.RunRow, target: float | None) -> None:
        """A run that restored the service itself, its clock started at the incident's detection: its time to
        restore counts in MTTR and against the severity target."""
        detected, ended = epoch(row.failure_detected), epoch(row.ended)
        if row.status != RunStatus.SUCCEEDED or detected is None or ended is None:
            return
        restore = max(ended - detected, 0.0)
        self.recovery_times_s.append(restore)
        self.restores += 1
        if target is not None and restore <= target:
            self.restores_within_target += 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "runbook": self.runbook,
            "runs": self.runs,
            "by_status": dict(self.by_status),
            "success_rate": self.success_rate,
            "rollback_frequency": self.rollback_frequency,
            "rollbacks": self.rollbacks,
            "rollbacks_within_target": self.rollbacks_within_target,
            "restores": self.restores,
            "restores_within_target": self.restores_within_target,
            "within_target_ratio": self.within_target_ratio,
            "mttr_s": self.mttr_s,
            "mean_time_to_rollback_s": self.mean_time_to_rollback_s,
            "mean_time_to_detect_s": self.mean_time_to_detect_s,
            "detections": self.detections,
            "data_loss_incidents": self.data_loss_incidents,
            "budget_missed": self.budget_missed,
            "mean_duration_s": self.mean_duration_s,
            "last_run_epoch": self.last_run_epoch,
            "last_status": self.last_status,
            "severity_target_s": self.severity_target_s,
        }


@dataclass
class MetricsReport:
    overall: Metrics
    runbooks: dict[str, Metrics]
    since_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "since_s": self.since_s,
            "overall": self.overall.to_dict(),
            "runbooks": {name: m.to_dict() for name, m in self.runbooks.items()},
        }


def from_rows(rows: Iterable[history.RunRow], *, include_check: bool = False) -> MetricsReport:
    overall = Metrics(runbook="")
    runbooks: dict[str, Metrics] = {}
    for row in rows:
        if row.check_mode and not include_check:
            continue
        if row.status == history.STATUS_RUNNING or is_drill(row):  # drills: runner.records.drills
            continue
        runbooks.setdefault(row.runbook, Metrics(runbook=row.runbook)).add(row)
        overall.add(row)
    return MetricsReport(overall=overall, runbooks=dict(sorted(runbooks.items())))


def compute(
    state_dir: Path, runbook: str | None = None, since_s: float | None = None, *, include_check: bool = False
) -> MetricsReport:
    """Metrics over the history in state_dir (one runbook, and/or runs started in the last since_s seconds)."""
    report = from_rows(history.list_runs(state_dir, runbook, since_s), include_check=include_check)
    report.since_s = since_s
    return report


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.0f}%"


def _dur(value: float | None) -> str:
    return "—" if value is None else format_seconds(value)


def format_text(metrics: MetricsReport) -> str:
    """A table for people: one line per runbook, then the total."""
    header = (
        f"{'RUNBOOK':<30} {'RUNS':>5} {'SUCCESS':>8} {'ROLLBACK':>9} {'DETECT':>8} {'MTTR':>8} "
        f"{'IN-TARGET':>10} {'DATA-LOSS':>10} {'LAST':>12}"
    )
    lines = []
    if metrics.since_s is not None:
        lines.append(f"runs started in the last {format_seconds(metrics.since_s)}")
    lines.append(header)

    def line(name: str, m: Metrics) -> str:
        recovered = m.rollbacks + m.restores  # each counted from its failure's (or incident's) detection
        in_target = f"{m.rollbacks_within_target + m.restores_within_target}/{recovered}" if recovered else "—"
        return (
            f"{name:<30} {m.runs:>5} {_pct(m.success_rate):>8} {_pct(m.rollback_frequency):>9} "
            f"{_dur(m.mean_time_to_detect_s):>8} {_dur(m.mttr_s):>8} {in_target:>10} {m.data_loss_incidents:>10} "
            f"{m.last_status or '—':>12}"
        )

    for name, m in metrics.runbooks.items():
        lines.append(line(name, m))
    if not metrics.runbooks:
        lines.append("(no runs recorded)")
    else:
        lines.append(line("ALL", metrics.overall))
    lines.append("")
    lines.append(
        "SUCCESS = succeeded/runs; ROLLBACK = rolled_back/runs (rollback frequency); DETECT = mean time to detect, "
        "release live to breach confirmed by a watch (the part of an outage before MTTR starts); MTTR = mean time "
        "from failure detected to service verified; IN-TARGET = rollbacks that restored the service within the SEV "
        "response target / rollbacks that ran."
    )
    return "\n".join(lines) + "\n"


def escape_label(value: str) -> str:
    """Prometheus label value escaping: backslash, double quote and newline."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


class _Exposition:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str, samples: list[tuple[dict[str, str], float]]) -> None:
        if not samples:
            return
        help_escaped = help_text.replace("\\", "\\\\").replace("\n", "\\n")
        self.lines.append(f"# HELP {name} {help_escaped}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            text = ",".join(f'{key}="{escape_label(val)}"' for key, val in labels.items())
            self.lines.append(f"{name}{{{text}}} {_number(value)}" if text else f"{name} {_number(value)}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


@dataclass(frozen=True)
class _Family:
    """A metric family: its name, type, the Metrics attribute it shows, and its help text."""

    name: str
    kind: str
    attribute: str
    help_text: str

    def value(self, metrics: Metrics) -> float | None:
        value = getattr(metrics, self.attribute)
        return None if value is None else float(value)


_PER_RUNBOOK = (
    _Family("runbook_success_ratio", "gauge", "success_rate", "Succeeded runs / runs."),
    _Family(
        "runbook_rollback_ratio", "gauge", "rollback_frequency",
        "Rollback frequency: runs that rolled back (restored and verified) / runs.",
    ),
    _Family("runbook_rollbacks_total", "counter", "rollbacks", "Runs whose on_failure phase ran."),
    _Family(
        "runbook_rollbacks_within_target_total", "counter", "rollbacks_within_target",
        "Rollbacks that restored the service within the severity response target.",
    ),
    _Family(
        "runbook_rollback_within_target_ratio", "gauge", "within_target_ratio",
        "Rollbacks within the severity response target / rollbacks that ran.",
    ),
    _Family(
        "runbook_mttr_seconds", "gauge", "mttr_s",
        "Mean time to recovery: failure (or incident) detected to service verified, over rolled-back runs and "
        "runs that restored an incident themselves.",
    ),
    _Family("runbook_restores_total", "counter", "restores", "Runs that restored an incident themselves."),
    _Family(
        "runbook_restores_within_target_total", "counter", "restores_within_target",
        "Incidents restored within the severity response target, counted from their detection.",
    ),
    _Family(
        "runbook_time_to_detect_seconds", "gauge", "mean_time_to_detect_s",
        "Mean time to detect, part of MTTR: release live to breach confirmed by a watch, over runs a watch failed.",
    ),
    _Family(
        "runbook_detections_total", "counter", "detections", "Runs in which a watch confirmed a breach.",
    ),
    _Family(
        "runbook_time_to_rollback_seconds", "gauge", "mean_time_to_rollback_s",
        "Mean time from run start to service verified, over rolled-back runs.",
    ),
    _Family(
        "runbook_severity_target_seconds", "gauge", "severity_target_s",
        "Response target of the runbook's severity (policies/severity.yml).",
    ),
    _Family(
        "runbook_data_loss_incidents_total", "counter", "data_loss_incidents",
        "Runs whose data check found rows lost.",
    ),
    _Family("runbook_budget_missed_total", "counter", "budget_missed", "Runs that exceeded their time budget."),
    _Family("runbook_duration_seconds_mean", "gauge", "mean_duration_s", "Mean run duration."),
    _Family(
        "runbook_last_run_timestamp_seconds", "gauge", "last_run_epoch",
        "Start time of the most recent run (Unix time).",
    ),
)
_OVERALL = (
    _Family("runbook_overall_runs_total", "counter", "runs", "Runs of all runbooks."),
    _Family("runbook_overall_success_ratio", "gauge", "success_rate", "Succeeded / runs, all runbooks."),
    _Family("runbook_overall_rollback_ratio", "gauge", "rollback_frequency", "Rolled back / runs, all runbooks."),
    _Family(
        "runbook_overall_mttr_seconds", "gauge", "mttr_s",
        "Mean time to recovery over the rolled-back runs of all runbooks.",
    ),
    _Family(
        "runbook_overall_time_to_detect_seconds", "gauge", "mean_time_to_detect_s",
        "Mean time to detect (release live to breach confirmed by a watch) over the runs of all runbooks.",
    ),
    _Family(
        "runbook_overall_rollback_within_target_ratio", "gauge", "within_target_ratio",
        "Rollbacks within the severity response target / rollbacks, all runbooks.",
    ),
    _Family(
        "runbook_overall_data_loss_incidents_total", "counter", "data_loss_incidents",
        "Runs of all runbooks whose data check found rows lost.",
    ),
)


def format_prometheus(metrics: MetricsReport) -> str:
    """Prometheus text exposition format (version 0.0.4): per-runbook series plus runbook_overall_* series."""
    out = _Exposition()
    per = list(metrics.runbooks.items())
    out.family(
        "runbook_runs_total",
        "counter",
        "Runs recorded in the history, by runbook and outcome (a run that never ended counts as interrupted).",
        [
            ({"runbook": name, "status": status}, float(count))
            for name, m in per
            for status, count in m.by_status.items()
        ],
    )
    for family in _PER_RUNBOOK:
        samples = [({"runbook": name}, value) for name, m in per if (value := family.value(m)) is not None]
        out.family(family.name, family.kind, family.help_text, samples)
    for family in _OVERALL:
        value = family.value(metrics.overall)
        out.family(family.name, family.kind, family.help_text, [] if value is None else [({}, value)])
    return out.text()


__all__ = [
    "Metrics",
    "MetricsReport",
    "compute",
    "escape_label",
    "format_prometheus",
    "format_text",
    "from_rows",
]
