"""Drills in the run history: a drill (`runbook drill NAME`, a Molecule scenario that injects an incident in the lab
and runs the runbook as an operator does) is recorded as one run whose trigger is `drill:<scenario>`.

Its status is the drill's verdict, not the runbook's: succeeded when every check of the scenario's verify held
(the service back on the good version, the budget and the severity target met, no row lost), failed otherwise;
the runbook's own outcome (e.g. rolled_back for a deliberately failed deploy) is kept in the status detail.
Its duration is the runbook run's, measured by the runner. Real-incident metrics leave drills out
(runner.records.metrics skips them); drill metrics (pass rate, time) are computed here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runner import safe_write
from runner.language.durations import format_seconds
from runner.records import history
from runner.records.model import RunStatus

TRIGGER_PREFIX = "drill:"


def trigger_of(scenario: str) -> str:
    return f"{TRIGGER_PREFIX}{scenario}"


def is_drill(row: history.RunRow) -> bool:
    return row.trigger.startswith(TRIGGER_PREFIX)


def _failed_checks(result: Mapping[str, Any]) -> list[str]:
    checks = result.get("checks") or {}
    return [str(name) for name, ok in checks.items() if not ok] if isinstance(checks, Mapping) else []


def drill_report(scenario: str, result: Mapping[str, Any] | None, passed: bool, why: str = "") -> dict[str, Any]:
    """The report.json of the drill's history row: the runbook run's report (when the drill got that far) with the
    drill's trigger and verdict."""
    base: dict[str, Any] = dict((result or {}).get("report") or {})
    now = datetime.now(UTC).isoformat(timespec="seconds")
    run_status = str(base.get("status") or "")
    if not base.get("run_id"):
        base = {"runbook": {"name": scenario}, "started": now, "ended": now, "duration_s": 0.0}
    base["run_id"] = f"drill-{scenario}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{time.time_ns() % 10**6:06d}"
    base["trigger"] = trigger_of(scenario)
    base["check_mode"] = False
    base["status"] = (RunStatus.SUCCEEDED if passed else RunStatus.FAILED).value
    outcome = f"the runbook ended {run_status}" if run_status else "the runbook did not run to its end"
    failed = _failed_checks(result or {})
    if passed:
        base["status_detail"] = f"drill passed; {outcome}, as the drill expects"
    else:
        reasons = [*(f"not: {c}" for c in failed), why, outcome]
        base["status_detail"] = "drill failed; " + "; ".join(r for r in reasons if r)
    return base


def record(state_dir: Path, scenario: str, result: Mapping[str, Any] | None, passed: bool, why: str = "") -> str:
    """Store a drill in history (and its report under <state_dir>/runs/<id>/, for `runbook report`); its run id."""
    report = drill_report(scenario, result, passed, why)
    path = Path(state_dir) / "runs" / report["run_id"] / "report.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    safe_write.write_text(path, json.dumps(report, indent=2, default=str) + "\n", mode=0o600)
    history.record_end(state_dir, report, path)
    return str(report["run_id"])


@dataclass
class DrillMetrics:
    """Drill pass rate and time of one scenario (or of all, with scenario == '')."""

    scenario: str
    drills: int = 0
    passed: int = 0
    budget_met: int = 0
    durations_s: list[float] = field(default_factory=list)
    last_status: str = ""
    last_started: str = ""

    @property
    def pass_rate(self) -> float | None:
        return self.passed / self.drills if self.drills else None

    @property
    def mean_duration_s(self) -> float | None:
        return sum(self.durations_s) / len(self.durations_s) if self.durations_s else None

    def add(self, row: history.RunRow) -> None:
        self.drills += 1
        self.passed += row.status == RunStatus.SUCCEEDED
        self.budget_met += bool(row.budget_met)
        if row.duration_s is not None and row.status == RunStatus.SUCCEEDED:
            self.durations_s.append(row.duration_s)
        self.last_status, self.last_started = str(row.status), row.started

    def to_dict(self) -> dict[str, Any]:
        return {
            "drills": self.drills, "passed": self.passed, "pass_rate": self.pass_rate,
            "budget_met": self.budget_met, "mean_duration_s": self.mean_duration_s,
            "last_status": self.last_status, "last_started": self.last_started,
        }


@dataclass
class DrillReport:
    overall: DrillMetrics
    scenarios: dict[str, DrillMetrics]

    def to_dict(self) -> dict[str, Any]:
        return {"overall": self.overall.to_dict(), "scenarios": {k: v.to_dict() for k, v in self.scenarios.items()}}


def from_rows(rows: Iterable[history.RunRow]) -> DrillReport:
    overall = DrillMetrics(scenario="")
    scenarios: dict[str, DrillMetrics] = {}
    for row in rows:
        if not is_drill(row) or row.status == history.STATUS_RUNNING:
            continue
        name = row.trigger[len(TRIGGER_PREFIX):]
        scenarios.setdefault(name, DrillMetrics(scenario=name)).add(row)
        overall.add(row)
    return DrillReport(overall=overall, scenarios=dict(sorted(scenarios.items())))


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.0f}%"


def format_text(report: DrillReport) -> str:
    if not report.scenarios:
        return ""
    lines = ["", f"{'DRILL':<30} {'DRILLS':>6} {'PASSED':>7} {'MEAN TIME':>10} {'LAST':>10}"]
    for name, m in [*report.scenarios.items(), ("ALL", report.overall)]:
        mean = "—" if m.mean_duration_s is None else format_seconds(m.mean_duration_s)
        lines.append(f"{name:<30} {m.drills:>6} {_pct(m.pass_rate):>7} {mean:>10} {m.last_status or '—':>10}")
    lines += ["", "Drills (trigger drill:NAME) are left out of the incident metrics above; PASSED = drills whose every "
              "check held / drills; MEAN TIME = the runbook's measured time in the drills that passed."]
    return "\n".join(lines) + "\n"


def prometheus_lines(report: DrillReport) -> list[str]:
    lines = [
        "# HELP runbook_drills_total Drills run (runbook drill), by scenario.",
        "# TYPE runbook_drills_total counter",
        *(f'runbook_drills_total{{scenario="{n}"}} {m.drills}' for n, m in report.scenarios.items()),
        "# HELP runbook_drill_pass_ratio Drills whose every check held / drills, by scenario.",
        "# TYPE runbook_drill_pass_ratio gauge",
        *(f'runbook_drill_pass_ratio{{scenario="{n}"}} {m.pass_rate}' for n, m in report.scenarios.items()
          if m.pass_rate is not None),
        "# HELP runbook_drill_duration_seconds_mean The runbook's mean measured time in passed drills.",
        "# TYPE runbook_drill_duration_seconds_mean gauge",
        *(f'runbook_drill_duration_seconds_mean{{scenario="{n}"}} {m.mean_duration_s:.3f}'
          for n, m in report.scenarios.items() if m.mean_duration_s is not None),
    ]
    return lines if report.scenarios else []
