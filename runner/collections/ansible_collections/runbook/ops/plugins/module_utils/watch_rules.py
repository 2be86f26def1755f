# -*- coding: utf-8 -*-
# Copyright: runbook-runner maintainers
# License: Apache-2.0
"""What a watch decides from its samples: durations, `fail_if` comparisons, and each check's state over time.

The semantics are those of a Prometheus alert with `for:` and of an Argo Rollouts analysis:

- a sample is good (the condition does not hold), bad (it holds) or unknown (the provider failed, or gave no data
  under `on_no_data: inconclusive`); no data counts as good under `pass` and as bad under `fail`;
- a breach is confirmed when the samples are bad continuously for the check's `for` (measured on the sampling
  grid, so a late sample never stretches or shortens it); one good sample resets it, an unknown one neither
  resets nor advances it;
- `max_provider_errors` consecutive unknown samples make the check inconclusive, and so does a window in which no
  sample gave a value at all: an inconclusive check is never reported healthy.

Standard library only.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math
import re

HEALTHY = "healthy"
BREACHED = "breached"
INCONCLUSIVE = "inconclusive"
NO_DATA_POLICIES = ("pass", "fail", "inconclusive")

GOOD, BAD, UNKNOWN = "good", "bad", "unknown"

# as runner/language/durations.py spells them: a whole number and a unit; a plain number is seconds
_DURATION = re.compile(r"^([0-9]+)(ms|s|m|h|d)$")
_SECONDS = re.compile(r"^[0-9]+(\.[0-9]+)?$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}

_COMPARISON = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*([-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)\s*$")
OPERATORS = {
    ">": lambda value, limit: value > limit,
    "<": lambda value, limit: value < limit,
    ">=": lambda value, limit: value >= limit,
    "<=": lambda value, limit: value <= limit,
    "==": lambda value, limit: value == limit,
    "!=": lambda value, limit: value != limit,
}
_EPSILON = 1e-9


def parse_duration(value, what="duration"):
    """Seconds in `value`: a number of seconds, or a whole number and ms, s, m, h or d (90s, 2m, 1h)."""
    if isinstance(value, bool):
        raise ValueError("%s %r is not a duration" % (what, value))
    if isinstance(value, (int, float)):
        if value < 0 or value != value or value == float("inf"):
            raise ValueError("%s %r is not a duration (negative or not finite)" % (what, value))
        return float(value)
    text = str(value).strip() if isinstance(value, str) else ""
    if _SECONDS.match(text):
        return float(text)
    match = _DURATION.match(text)
    if not match:
        raise ValueError("%s %r is not a duration (use seconds or a whole number and ms, s, m, h or d: 90s, 2m, 1h)"
                         % (what, value))
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)] * 1.0


def parse_fail_if(text):
    """`"> 0.05"` -> (">", 0.05). ValueError, saying what is accepted, for anything else."""
    match = _COMPARISON.match(text) if isinstance(text, str) else None
    if match is None or not math.isfinite(float(match.group(2))):
        raise ValueError("fail_if %r is not a comparison: write one of >, <, >=, <=, ==, != and a number, "
                         "such as \"> 0.05\" or \"< 1\"" % (text,))
    return match.group(1), float(match.group(2))


def holds(operator, threshold, value):
    return OPERATORS[operator](value, threshold)


def as_value(raw):
    """A sample's number, or None (no data) for NaN and what is not a number."""
    if isinstance(raw, bool) or raw is None:
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def show_seconds(seconds):
    return "%gs" % round(seconds, 3)


class CheckState(object):
    """One check of a watch: its condition, its samples and its verdict (None while it is still open)."""

    def __init__(self, check, on_no_data="inconclusive", max_errors=3):
        self.check = check
        self.name = check["name"]
        self.operator, self.threshold = parse_fail_if(check.get("fail_if"))
        self.for_s = parse_duration(check.get("for") or 0, "for of check %s" % self.name)
        self.interval_s = parse_duration(check.get("interval") or "10s", "interval of check %s" % self.name)
        if self.interval_s <= 0:
            raise ValueError("interval of check %s must be longer than zero" % self.name)
        self.on_no_data = on_no_data
        self.max_errors = max(int(max_errors), 1)
        self.measurements = []
        self.pending_since = None  # grid time of the first bad sample of the current streak
        self.unknown_streak = 0
        self.decided_samples = 0  # samples that were good or bad
        self.verdict = None
        self.reason = ""
        self.detected_at = None

    @property
    def condition(self):
        return "%s %g" % (self.operator, self.threshold)

    def outcome(self, value, error):
        if error is not None:
            return UNKNOWN
        if value is None:
            return {"pass": GOOD, "fail": BAD}.get(self.on_no_data, UNKNOWN)
        return BAD if holds(self.operator, self.threshold, value) else GOOD

    def record(self, grid_t, t, value, error=None):
        """One sample taken at `t` seconds since the watch started, due at `grid_t` on the sampling grid."""
        outcome = self.outcome(value, error)
        entry = {"t": round(t, 3), "value": value, "breach": outcome == BAD}
        if error is not None:
            entry["error"] = error
        self.measurements.append(entry)
        if outcome == UNKNOWN:
            self.unknown_streak += 1
            if self.unknown_streak >= self.max_errors:
                self._unknown_limit(error)
            return
        self.unknown_streak = 0
        self.decided_samples += 1
        if outcome == GOOD:
            self.pending_since = None
            return
        if self.pending_since is None:
            self.pending_since = grid_t
        if grid_t - self.pending_since >= self.for_s - _EPSILON:
            self._breached(t, value)

    def _breached(self, t, value):
        self.verdict = BREACHED
        self.detected_at = round(t, 3)
        seen = "no data" if value is None else "%g" % value
        self.reason = "%s: %s, fail_if %s held for %s (from t=%s to t=%s)" % (
            self.name, seen, self.condition, show_seconds(self.for_s), show_seconds(self.pending_since),
            show_seconds(t))

    def _unknown_limit(self, error):
        self.verdict = INCONCLUSIVE
        last = error if error is not None else "no data"
        self.reason = "%s: %d consecutive samples without a value (last: %s)" % (self.name, self.unknown_streak, last)

    def close(self, stopped=None):
        """The window ended (or the watch was stopped): the verdict of a check still open."""
        if self.verdict is not None:
            return
        if stopped:
            self.verdict, self.reason = INCONCLUSIVE, "%s: %s" % (self.name, stopped)
        elif self.decided_samples == 0:
            self.verdict = INCONCLUSIVE
            self.reason = "%s: no sample gave a value in the window (%d taken)" % (self.name, len(self.measurements))
        else:
            self.verdict, self.reason = HEALTHY, ""

    def result(self):
        values = [m["value"] for m in self.measurements if m["value"] is not None]
        return {
            "name": self.name, "provider": self.check.get("provider"), "fail_if": self.condition,
            "threshold": self.threshold, "operator": self.operator, "for": self.for_s, "interval": self.interval_s,
            "verdict": self.verdict, "reason": self.reason, "time_to_detect": self.detected_at,
            "samples": len(self.measurements), "last_value": values[-1] if values else None,
            "max_value": max(values) if values else None, "measurements": self.measurements,
        }

    def summary(self):
        """{name, ok, detail}: the shape runbook reports show for checks."""
        if self.verdict == HEALTHY:
            values = [m["value"] for m in self.measurements if m["value"] is not None]
            detail = "%d samples, fail_if %s never held for %s (max %s)" % (
                len(self.measurements), self.condition, show_seconds(self.for_s),
                "%g" % max(values) if values else "no data")
            return {"name": self.name, "ok": True, "detail": detail}
        return {"name": self.name, "ok": False, "detail": self.reason}


def watch_verdict(states):
    """(verdict, the breached check's name or None, reason) of a watch whose checks are all closed."""
    breached = sorted((s for s in states if s.verdict == BREACHED), key=lambda s: s.detected_at)
    if breached:
        return BREACHED, breached[0].name, breached[0].reason
    inconclusive = [s.reason for s in states if s.verdict == INCONCLUSIVE]
    if inconclusive or not states:
        return INCONCLUSIVE, None, "; ".join(inconclusive) or "no checks"
    return HEALTHY, None, "%d check(s) healthy for the whole window" % len(states)
