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
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runner.language.durations import format_seconds
from runner.records import history

STATUSES = ("succeeded", "rolled_back", "failed", "interrupted")


def _epoch(value: str | None) -> float | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def _target_s(severity: str, stored: float | None) -> float | None:
    from runner.language import policy

    try:
        return policy.response_target_s(severity)
    except (KeyError, ValueError, OSError):
        return stored


@dataclass
class Metrics:
    """Recovery metrics of one runbook (or of all, with runbook == '')."""

    runbook: str
    runs: int = 0
    by_status: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    rollbacks: int = 0
    rollbacks_within_target: int = 0
    recovery_times_s: list[float] = field(default_factory=list)  # failure detected -> service verified
    rollback_times_s: list[float] = field(default_factory=list)  # run start -> service verified
    data_loss_incidents: int = 0
    budget_missed: int = 0
    durations_s: list[float] = field(default_factory=list)
    last_run_epoch: float | None = None
    last_status: str = ""
    severity_target_s: float | None = None

    @property
    def succeeded(self) -> int:
        return self.by_status.get("succeeded", 0)

    @property
    def rolled_back(self) -> int:
        return self.by_status.get("rolled_back", 0)

    @property
    def success_rate(self) -> float | None:
        return self.succeeded / self.runs if self.runs else None

    @property
    def rollback_frequency(self) -> float | None:
        return self.rolled_back / self.runs if self.runs else None

    @property
    def mttr_s(self) -> float | None:
        return sum(self.recovery_times_s) / len(self.recovery_times_s) if self.recovery_times_s else None

    @property
    def mean_time_to_rollback_s(self) -> float | None:
        return sum(self.rollback_times_s) / len(self.rollback_times_s) if self.rollback_times_s else None

    @property
    def within_target_ratio(self) -> float | None:
        return self.rollbacks_within_target / self.rollbacks if self.rollbacks else None

    @property
    def mean_duration_s(self) -> float | None:
        return sum(self.durations_s) / len(self.durations_s) if self.durations_s else None

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
        if self.last_run_epoch is None or row.started_epoch >= self.last_run_epoch:
            self.last_run_epoch = row.started_epoch
            self.last_status = row.status
        target = _target_s(row.severity, row.severity_target_s)
        if self.runbook:
            self.severity_target_s = target
        if not row.rollback_ran:
            return
        self.rollbacks += 1
        verified_at = _epoch(row.rollback_ended)
        if row.status != "rolled_back" or verified_at is None:
            return
        detected = _epoch(row.failure_detected) or _epoch(row.rollback_started)
        if detected is not None:
            self.recovery_times_s.append(max(verified_at - detected, 0.0))
        to_rollback = max(verified_at - row.started_epoch, 0.0)
        self.rollback_times_s.append(to_rollback)
        if target is not None and to_rollback <= target:
            self.rollbacks_within_target += 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "runbook": self.runbook,
            "runs": self.runs,
            "by_status": dict(self.by_status),
            "success_rate": self.success_rate,
            "rollback_frequency": self.rollback_frequency,
            "rollbacks": self.rollbacks,
            "rollbacks_within_target": self.rollbacks_within_target,
            "within_target_ratio": self.within_target_ratio,
            "mttr_s": self.mttr_s,
            "mean_time_to_rollback_s": self.mean_time_to_rollback_s,
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
        if row.status == history.STATUS_RUNNING:
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
        f"{'RUNBOOK':<30} {'RUNS':>5} {'SUCCESS':>8} {'ROLLBACK':>9} {'MTTR':>8} "
        f"{'IN-TARGET':>10} {'DATA-LOSS':>10} {'LAST':>12}"
    )
    lines = []
    if metrics.since_s is not None:
        lines.append(f"runs started in the last {format_seconds(metrics.since_s)}")
    lines.append(header)

    def line(name: str, m: Metrics) -> str:
        in_target = f"{m.rollbacks_within_target}/{m.rollbacks}" if m.rollbacks else "—"
        return (
            f"{name:<30} {m.runs:>5} {_pct(m.success_rate):>8} {_pct(m.rollback_frequency):>9} "
            f"{_dur(m.mttr_s):>8} {in_target:>10} {m.data_loss_incidents:>10} {m.last_status or '—':>12}"
        )

    for name, m in metrics.runbooks.items():
        lines.append(line(name, m))
    if not metrics.runbooks:
        lines.append("(no runs recorded)")
    else:
        lines.append(line("ALL", metrics.overall))
    lines.append("")
    lines.append(
        "SUCCESS = succeeded/runs; ROLLBACK = rolled_back/runs (rollback frequency); MTTR = mean time from failure "
        "detected to service verified; IN-TARGET = rollbacks that restored the service within the SEV response "
        "target / rollbacks that ran."
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


def format_prometheus(metrics: MetricsReport) -> str:
    """Prometheus text exposition format (version 0.0.4): per-runbook series plus runbook_overall_* series."""
    out = _Exposition()
    per = list(metrics.runbooks.items())

    def each(get: Any) -> list[tuple[dict[str, str], float]]:
        samples = []
        for name, m in per:
            value = get(m)
            if value is not None:
                samples.append(({"runbook": name}, float(value)))
        return samples

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
    out.family("runbook_success_ratio", "gauge", "Succeeded runs / runs.", each(lambda m: m.success_rate))
    out.family(
        "runbook_rollback_ratio",
        "gauge",
        "Rollback frequency: runs that rolled back (restored and verified) / runs.",
        each(lambda m: m.rollback_frequency),
    )
    out.family("runbook_rollbacks_total", "counter", "Runs whose on_failure phase ran.", each(lambda m: m.rollbacks))
    out.family(
        "runbook_rollbacks_within_target_total",
        "counter",
        "Rollbacks that restored the service within the severity response target.",
        each(lambda m: m.rollbacks_within_target),
    )
    out.family(
        "runbook_rollback_within_target_ratio",
        "gauge",
        "Rollbacks within the severity response target / rollbacks that ran.",
        each(lambda m: m.within_target_ratio),
    )
    out.family(
        "runbook_mttr_seconds",
        "gauge",
        "Mean time to recovery: failure detected to service verified, over rolled-back runs.",
        each(lambda m: m.mttr_s),
    )
    out.family(
        "runbook_time_to_rollback_seconds",
        "gauge",
        "Mean time from run start to service verified, over rolled-back runs.",
        each(lambda m: m.mean_time_to_rollback_s),
    )
    out.family(
        "runbook_severity_target_seconds",
        "gauge",
        "Response target of the runbook's severity (policies/severity.yml).",
        each(lambda m: m.severity_target_s),
    )
    out.family(
        "runbook_data_loss_incidents_total",
        "counter",
        "Runs whose data check found rows lost.",
        each(lambda m: m.data_loss_incidents),
    )
    out.family(
        "runbook_budget_missed_total",
        "counter",
        "Runs that exceeded their time budget.",
        each(lambda m: m.budget_missed),
    )
    out.family("runbook_duration_seconds_mean", "gauge", "Mean run duration.", each(lambda m: m.mean_duration_s))
    out.family(
        "runbook_last_run_timestamp_seconds",
        "gauge",
        "Start time of the most recent run (Unix time).",
        each(lambda m: m.last_run_epoch),
    )
    overall = metrics.overall

    def single(value: float | None) -> list[tuple[dict[str, str], float]]:
        return [] if value is None else [({}, float(value))]

    out.family("runbook_overall_runs_total", "counter", "Runs of all runbooks.", single(overall.runs))
    out.family(
        "runbook_overall_success_ratio", "gauge", "Succeeded / runs, all runbooks.", single(overall.success_rate)
    )
    out.family(
        "runbook_overall_rollback_ratio",
        "gauge",
        "Rolled back / runs, all runbooks.",
        single(overall.rollback_frequency),
    )
    out.family(
        "runbook_overall_mttr_seconds",
        "gauge",
        "Mean time to recovery over the rolled-back runs of all runbooks.",
        single(overall.mttr_s),
    )
    out.family(
        "runbook_overall_rollback_within_target_ratio",
        "gauge",
        "Rollbacks within the severity response target / rollbacks, all runbooks.",
        single(overall.within_target_ratio),
    )
    out.family(
        "runbook_overall_data_loss_incidents_total",
        "counter",
        "Runs of all runbooks whose data check found rows lost.",
        single(overall.data_loss_incidents),
    )
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
