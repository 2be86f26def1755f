"""The watches of a run (the `watch` role): per watch step x host its verdict, the check that breached and why, the
time to detect, and every measurement of every check - built from the step's outputs in build_report.

Time to detect is measured from the moment the release went live: the end of the last step before the watch that
changed the release (an image_swap or traffic_switch step that changed something), else the start of the watch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from runner.language.durations import parse_time
from runner.language.model import PHASE_MAIN, Runbook
from runner.records.jsonread import Fields

if TYPE_CHECKING:  # the engine's events import the report model, which holds these records
    from runner.engine.events import HostStepResult

WATCH_ROLE = "watch"
RELEASE_ROLES = frozenset({"image_swap", "traffic_switch"})  # roles whose step puts a release live
VERDICTS = ("healthy", "breached", "inconclusive")


def _number(value: Any) -> float | None:
    """A finite number from an output (Ansible may hand one over as text); None for anything else."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _text(value: Any) -> str:
    return "" if value is None or value == "None" else str(value)


@dataclass(frozen=True)
class Measurement:
    """One sample of a check: t seconds since the watch started, its value (None: no data), whether it breached."""

    t: float
    value: float | None
    breach: bool
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"t": self.t, "value": self.value, "breach": self.breach, "error": self.error}

    @classmethod
    def read(cls, f: Fields) -> Measurement:
        return cls(f.number("t"), _number(f.data.get("value")), f.flag("breach"), f.text("error"))

    @classmethod
    def from_output(cls, entry: Mapping[str, Any]) -> Measurement:
        return cls(_number(entry.get("t")) or 0.0, _number(entry.get("value")), entry.get("breach") is True,
                   _text(entry.get("error")))


@dataclass(frozen=True)
class WatchCheck:
    """One check of a watch: its condition (fail_if, for), its verdict and its measurements."""

    name: str
    provider: str
    fail_if: str
    threshold: float | None
    for_s: float
    interval_s: float
    verdict: str
    reason: str
    time_to_detect: float | None  # seconds from the start of the watch to the confirmed breach of this check
    measurements: tuple[Measurement, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "provider": self.provider, "fail_if": self.fail_if, "threshold": self.threshold,
            "for_s": self.for_s, "interval_s": self.interval_s, "verdict": self.verdict, "reason": self.reason,
            "time_to_detect": self.time_to_detect, "measurements": [m.to_json() for m in self.measurements],
        }

    @classmethod
    def read(cls, f: Fields) -> WatchCheck:
        return cls(
            f.text("name"), f.text("provider"), f.text("fail_if"), _number(f.data.get("threshold")),
            f.number("for_s"), f.number("interval_s"), f.text("verdict"), f.text("reason"),
            _number(f.data.get("time_to_detect")), tuple(Measurement.read(m) for m in f.objects("measurements")),
        )

    @classmethod
    def from_output(cls, entry: Mapping[str, Any]) -> WatchCheck:
        measured = entry.get("measurements")
        return cls(
            name=_text(entry.get("name")),
            provider=_text(entry.get("provider")),
            fail_if=_text(entry.get("fail_if")),
            threshold=_number(entry.get("threshold")),
            for_s=_number(entry.get("for")) or 0.0,
            interval_s=_number(entry.get("interval")) or 0.0,
            verdict=_text(entry.get("verdict")),
            reason=_text(entry.get("reason")),
            time_to_detect=_number(entry.get("time_to_detect")),
            measurements=tuple(Measurement.from_output(m) for m in measured if isinstance(m, Mapping))
            if isinstance(measured, list) else (),
        )

    @property
    def decided_at(self) -> float | None:
        """When this check's outcome was decided: its confirmed breach, else its last sample."""
        if self.time_to_detect is not None:
            return self.time_to_detect
        return self.measurements[-1].t if self.measurements else None


@dataclass(frozen=True)
class Watch:
    """One watch step on one host. verdict is empty when it took no sample (check mode)."""

    step: str
    phase: str
    host: str
    verdict: str
    reason: str
    breached_check: str | None
    started_at: str
    ended_at: str
    time_to_detect: float | None  # seconds from the start of the watch to the confirmed breach (the module's)
    release_live: str  # when the release went live (see the module docstring); the watch's start when none did
    time_to_detect_s: float | None  # release live -> breach confirmed
    checks: tuple[WatchCheck, ...]

    @property
    def failed(self) -> bool:
        return self.verdict in ("breached", "inconclusive")

    @property
    def duration_s(self) -> float | None:
        started, ended = parse_time(self.started_at), parse_time(self.ended_at)
        return (ended - started).total_seconds() if started and ended else None

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step, "phase": self.phase, "host": self.host, "verdict": self.verdict, "reason": self.reason,
            "breached_check": self.breached_check, "started_at": self.started_at, "ended_at": self.ended_at,
            "time_to_detect": self.time_to_detect, "release_live": self.release_live,
            "time_to_detect_s": self.time_to_detect_s, "checks": [c.to_json() for c in self.checks],
        }

    @classmethod
    def read(cls, f: Fields) -> Watch:
        return cls(
            f.text("step"), f.text("phase", PHASE_MAIN), f.text("host"), f.text("verdict"), f.text("reason"),
            f.optional_text("breached_check"), f.text("started_at"), f.text("ended_at"),
            _number(f.data.get("time_to_detect")), f.text("release_live"), _number(f.data.get("time_to_detect_s")),
            tuple(WatchCheck.read(c) for c in f.objects("checks")),
        )


def _release_live(runbook: Runbook, step_id: str, results: Sequence[HostStepResult]) -> datetime | None:
    """The end of the last main step before step_id that changed the release (on the host that finished last)."""
    ids = [s.id for s in runbook.steps]
    if step_id not in ids:
        return None
    before = {s.id for s in runbook.steps[: ids.index(step_id)] if s.uses in RELEASE_ROLES}
    latest: tuple[int, datetime] | None = None
    for result in results:
        ended = parse_time(result.ended)
        if result.phase != PHASE_MAIN or result.step_id not in before or not result.changed or ended is None:
            continue
        key = (ids.index(result.step_id), ended)
        latest = key if latest is None or key > latest else latest
    return latest[1] if latest is not None else None


def watch_from(result: HostStepResult, release_live: datetime | None) -> Watch:
    """The watch record of one watch step x host, from the outputs the role published."""
    out = result.outputs
    started_at = _text(out.get("started_at"))
    module_ttd = _number(out.get("time_to_detect"))
    started = parse_time(started_at)
    live = release_live if release_live is not None and started is not None and release_live <= started else started
    to_detect = None
    if module_ttd is not None and started is not None and live is not None:
        to_detect = round((started - live).total_seconds() + module_ttd, 3)
    checks = out.get("results")
    verdict = _text(out.get("verdict"))
    return Watch(
        step=result.step_id,
        phase=result.phase,
        host=result.host,
        verdict=verdict if verdict in VERDICTS else "",
        reason=_text(out.get("reason")),
        breached_check=_text(out.get("breached_check")) or None,
        started_at=started_at,
        ended_at=_text(out.get("ended_at")),
        time_to_detect=module_ttd,
        release_live=live.isoformat() if live is not None else "",
        time_to_detect_s=to_detect,
        checks=tuple(WatchCheck.from_output(c) for c in checks if isinstance(c, Mapping))
        if isinstance(checks, list) else (),
    )


def collect_watches(runbook: Runbook, results: Sequence[HostStepResult]) -> tuple[Watch, ...]:
    """Every watch step x host that published outputs, in report order."""
    watch_steps = {s.id for s in runbook.all_steps if s.uses == WATCH_ROLE}
    return tuple(
        watch_from(r, _release_live(runbook, r.step_id, results))
        for r in results
        if r.step_id in watch_steps and r.outputs
    )


def first_detection_s(watches: Iterable[Watch]) -> float | None:
    """The run's time to detect: the quickest confirmed breach of a main-phase watch (None when none breached)."""
    times = [w.time_to_detect_s for w in watches
             if w.phase == PHASE_MAIN and w.verdict == "breached" and w.time_to_detect_s is not None]
    return min(times) if times else None


__all__ = [
    "RELEASE_ROLES",
    "Measurement",
    "Watch",
    "WatchCheck",
    "collect_watches",
    "first_detection_s",
    "watch_from",
]
