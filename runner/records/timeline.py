"""The step x host timeline of a run, placed relative to its start: what report.html draws."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from runner.language.durations import format_seconds, parse_time
from runner.language.model import PHASE_MAIN, PHASE_ON_FAILURE
from runner.records.model import Report, RunStatus, StepResult, StepStatus, as_report

STATUS_COLOURS: dict[str, str] = {
    StepStatus.SUCCEEDED: "#2e7d32",
    RunStatus.ROLLED_BACK: "#ef6c00",
    StepStatus.FAILED: "#c62828",
    StepStatus.UNREACHABLE: "#6a1b9a",
    StepStatus.SKIPPED: "#9e9e9e",
    StepStatus.INCOMPLETE: "#f9a825",
    RunStatus.INTERRUPTED: "#6d4c41",
}


@dataclass(frozen=True)
class TimelineBar:
    step: str
    phase: str
    host: str
    status: str
    left_pct: float
    width_pct: float
    offset_s: float
    duration_s: float
    changed: bool
    message: str
    has_time: bool

    @property
    def colour(self) -> str:
        return STATUS_COLOURS.get(self.status, "#607d8b")


@dataclass(frozen=True)
class TimelineRow:
    step: str
    phase: str
    bars: list[TimelineBar]


@dataclass(frozen=True)
class Marker:
    label: str
    left_pct: float
    css: str


@dataclass(frozen=True)
class Timeline:
    span_s: float
    rows: list[TimelineRow]
    ticks: list[tuple[float, str]]
    markers: list[Marker]


@dataclass(frozen=True)
class _Axis:
    """The run's start and length: where a moment falls, in percent of the width."""

    t0: datetime
    span_s: float

    def pct(self, moment: datetime) -> float:
        return min(max((moment - self.t0).total_seconds() / self.span_s * 100.0, 0.0), 100.0)


def host_names(report: Report) -> list[str]:
    """Hosts in the order the steps name them, then the hosts only the versions name."""
    seen: list[str] = []
    for host in [s.host for s in report.steps] + list(report.hosts):
        if host not in seen:
            seen.append(host)
    return seen


def timeline(report: Report | Mapping[str, Any]) -> Timeline:
    """Rows = steps (main first, then on_failure), one bar per host, placed relative to the run start."""
    report = as_report(report)
    axis = _axis(report)
    order: list[tuple[str, str]] = []
    by_row: dict[tuple[str, str], list[TimelineBar]] = {}
    for phase in (PHASE_MAIN, PHASE_ON_FAILURE):
        for step in (s for s in report.steps if s.phase == phase):
            key = (phase, step.id)
            if key not in by_row:
                order.append(key)
                by_row[key] = []
            by_row[key].append(_bar(step, axis))
    host_order = {host: index for index, host in enumerate(host_names(report))}
    rows = [
        TimelineRow(step=key[1], phase=key[0], bars=sorted(by_row[key], key=lambda b: host_order.get(b.host, 0)))
        for key in order
    ]
    ticks = [(float(p), format_seconds(axis.span_s * p / 100.0)) for p in (0, 25, 50, 75, 100)]
    return Timeline(span_s=axis.span_s, rows=rows, ticks=ticks, markers=_markers(report, axis))


def _axis(report: Report) -> _Axis:
    t0 = parse_time(report.started)
    known_starts = [t for t in (parse_time(s.started) for s in report.steps) if t is not None]
    if t0 is None:
        t0 = min(known_starts) if known_starts else datetime.now(UTC)
    ends = [parse_time(report.ended)] + [parse_time(s.ended) for s in report.steps]
    known_ends = [t for t in ends if t is not None]
    t_end = max(known_ends) if known_ends else t0
    return _Axis(t0, max((t_end - t0).total_seconds(), float(report.duration_s), 0.001))


def _bar(step: StepResult, axis: _Axis) -> TimelineBar:
    start, end = parse_time(step.started), parse_time(step.ended)
    has_time = start is not None and end is not None
    left = axis.pct(start) if start is not None else 0.0
    right = axis.pct(end) if end is not None else left
    return TimelineBar(
        step=step.id,
        phase=step.phase,
        host=step.host,
        status=step.status,
        left_pct=round(left, 3),
        width_pct=round(max(right - left, 0.5), 3) if has_time else 0.0,
        offset_s=round((start - axis.t0).total_seconds(), 3) if start is not None else 0.0,
        duration_s=step.duration_s,
        changed=step.changed,
        message=step.message,
        has_time=has_time,
    )


def _markers(report: Report, axis: _Axis) -> list[Marker]:
    markers: list[Marker] = []
    detected = parse_time(report.failure_detected)
    if detected is not None:
        markers.append(Marker("failure detected", round(axis.pct(detected), 3), "marker-failure"))
    on_failure = report.on_failure
    if not on_failure.ran:
        return markers
    rb_start, rb_end = parse_time(on_failure.started), parse_time(on_failure.ended)
    if rb_start is not None:
        markers.append(Marker("on_failure start", round(axis.pct(rb_start), 3), "marker-rollback"))
    if rb_end is not None:
        label = "service verified" if on_failure.verified else "on_failure end"
        markers.append(Marker(label, round(axis.pct(rb_end), 3), "marker-verified"))
    return markers


@dataclass(frozen=True)
class IncidentEvent:
    """One line of the post-mortem timeline: when (UTC, as recorded) and what happened."""

    at: str
    what: str


def incident_timeline(report: Report | Mapping[str, Any]) -> list[IncidentEvent]:
    """The run as the post-mortem tells it, in time order: start, each step x host that ended (failures with
    their message), the failure detected, on_failure's start and end, the end of the run."""
    report = as_report(report)
    events = [IncidentEvent(report.started, f"run started by {report.operator or 'unknown'}"
                            + (f" ({report.trigger})" if report.trigger else ""))]
    for step in report.steps:
        if step.status == StepStatus.SKIPPED or not (step.ended or step.started):
            continue
        said = f": {step.message}" if step.failed and step.message else ""
        phase = " (on_failure)" if step.phase == PHASE_ON_FAILURE else ""
        events.append(IncidentEvent(step.ended or step.started, f"`{step.id}`{phase} on {step.host} "
                                    f"{step.status} after {format_seconds(step.duration_s)}{said}"))
    if report.failure_detected:
        events.append(IncidentEvent(report.failure_detected, "failure detected"))
    rollback = report.on_failure
    if rollback.ran and rollback.started:
        events.append(IncidentEvent(rollback.started, "rollback (on_failure) started"))
    if rollback.ran and rollback.ended:
        verified = "service verified" if rollback.verified else "service NOT verified"
        events.append(IncidentEvent(rollback.ended, f"rollback (on_failure) ended: {rollback.status}, {verified}"))
    if report.ended:
        events.append(IncidentEvent(report.ended, f"run ended: {report.status}"))
    return sorted((e for e in events if e.at), key=lambda e: _order(e.at))


def _order(at: str) -> float:
    when = parse_time(at)
    return when.timestamp() if when is not None else float("inf")
