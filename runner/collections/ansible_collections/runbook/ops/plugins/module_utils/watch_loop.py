# -*- coding: utf-8 -*-
# Copyright: runbook-runner maintainers
# License: Apache-2.0
"""The watch itself: after `initial_delay`, one sample per check every `interval` until `window` has passed, or
until the outcome is decided (a confirmed breach; an inconclusive check when inconclusive fails the step).

Samples are due on a fixed grid (initial_delay + k * interval); a sample that took longer than its interval makes
the next one due at the next grid point, never a burst of catch-up samples. Times are measured with the host's
monotonic clock; `started_at` / `ended_at` are UTC wall-clock stamps for the report. Standard library only.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import math
import time

from ansible_collections.runbook.ops.plugins.module_utils.watch_rules import (
    BREACHED, INCONCLUSIVE, NO_DATA_POLICIES, CheckState, parse_duration, show_seconds, watch_verdict,
)

MAX_SAMPLES = 10000  # per check and window: more would swell the journal and the report
DEFAULT_TIMEOUT_S = 5.0


class WatchStopped(Exception):
    """Raised by the sleep or the sampler when the watch must stop (its time is up, the run was cancelled)."""


def utc_now_iso(now=None):
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class WatchPlan(object):
    """A watch's options, checked: its window, delay, policies and the state of each check."""

    def __init__(self, checks, window, initial_delay=0, on_no_data="inconclusive", max_provider_errors=3,
                 on_inconclusive="fail"):
        self.window_s = parse_duration(window, "window")
        self.initial_delay_s = parse_duration(initial_delay or 0, "initial_delay")
        if self.window_s <= 0:
            raise ValueError("window must be longer than zero")
        if on_no_data not in NO_DATA_POLICIES:
            raise ValueError("on_no_data must be one of %s, not %r" % (", ".join(NO_DATA_POLICIES), on_no_data))
        if on_inconclusive not in ("pass", "fail"):
            raise ValueError("on_inconclusive must be pass or fail, not %r" % (on_inconclusive,))
        if int(max_provider_errors) < 1:
            raise ValueError("max_provider_errors must be at least 1")
        if not checks:
            raise ValueError("a watch needs at least one check")
        self.on_inconclusive = on_inconclusive
        self.states = [CheckState(c, on_no_data, max_provider_errors) for c in named(checks)]
        for state in self.states:
            if self.window_s / state.interval_s > MAX_SAMPLES:
                raise ValueError("check %s would take more than %d samples in the window: raise its interval"
                                 % (state.name, MAX_SAMPLES))

    @property
    def end_s(self):
        return self.initial_delay_s + self.window_s

    def describe(self):
        parts = ["%s every %s (fail_if %s for %s)" % (s.name, show_seconds(s.interval_s), s.condition,
                                                      show_seconds(s.for_s)) for s in self.states]
        delay = " after %s" % show_seconds(self.initial_delay_s) if self.initial_delay_s else ""
        return "would watch for %s%s: %s" % (show_seconds(self.window_s), delay, "; ".join(parts))


def named(checks):
    """The checks, each with a name (default: provider and position); names must be unique."""
    out, seen = [], set()
    for index, check in enumerate(checks):
        check = dict(check)
        check["name"] = check.get("name") or "%s-%d" % (check.get("provider") or "check", index + 1)
        if check["name"] in seen:
            raise ValueError("two checks are named %r: give each a name of its own" % check["name"])
        seen.add(check["name"])
        out.append(check)
    return out


def next_due(due, interval, now):
    """The first point of the grid (due + k * interval, k >= 1) after now."""
    steps = max(1, int(math.floor((now - due) / interval)) + 1)
    return due + steps * interval


def run_watch(plan, sample, clock=time.monotonic, sleep=time.sleep, remaining=None):
    """Watch: `sample(check, timeout)` gives (value or None, error text or None); `sleep` may raise WatchStopped
    (or any exception named in the host work). The result the module returns."""
    started_at, started = utc_now_iso(), clock()
    due = dict((s.name, plan.initial_delay_s) for s in plan.states)
    stopped = None
    try:
        while True:
            open_states = [s for s in plan.states if s.verdict is None]
            if not open_states or _decided(plan):
                break
            upcoming = min(due[s.name] for s in open_states)
            if upcoming > plan.end_s + 1e-9:
                break
            now = clock() - started
            if upcoming > now:
                sleep(upcoming - now)
                continue
            for state in [s for s in open_states if due[s.name] <= now + 1e-9]:
                _sample_one(state, due, sample, clock, started, remaining)
    except WatchStopped as exc:
        stopped = "watch stopped after %s: %s" % (show_seconds(clock() - started), exc)
    for state in plan.states:
        state.close(stopped)
    return _result(plan, started_at, clock() - started, stopped)


def run_once(plan, sample, clock=time.monotonic):
    """One sample of every check, now, each decided by it alone: a sample for which fail_if holds is a breach
    (`for`, `initial_delay` and the window are not applied). What `runbook watch` shows to tune thresholds."""
    started_at, started = utc_now_iso(), clock()
    for state in plan.states:
        configured_for, state.for_s = state.for_s, 0.0
        state.max_errors = 1
        try:
            _sample_one(state, {state.name: 0.0}, sample, clock, started, None)
        finally:
            state.for_s = configured_for
        if state.verdict == BREACHED:
            value = state.measurements[-1]["value"]
            state.reason = "%s: %s, fail_if %s holds (one sample; the step's for of %s is not applied)" % (
                state.name, "no data" if value is None else "%g" % value, state.condition, show_seconds(state.for_s))
        state.close()
    result = _result(plan, started_at, clock() - started, None)
    result["once"] = True
    return result


def _sample_one(state, due, sample, clock, started, remaining):
    grid_t = due[state.name]
    t = clock() - started
    timeout = float(state.check.get("timeout_s") or DEFAULT_TIMEOUT_S)
    left = remaining() if remaining is not None else None
    if left is not None:
        timeout = max(0.1, min(timeout, left))
    try:
        value, error = sample(state.check, timeout)
    except WatchStopped:
        raise
    except Exception as exc:  # a provider's bug is a provider error of this sample, never a lost watch
        value, error = None, "%s: %s" % (type(exc).__name__, exc)
    state.record(grid_t, t, value, error)
    due[state.name] = next_due(grid_t, state.interval_s, clock() - started)


def _decided(plan):
    """Whether the outcome can no longer change: a breach, or an inconclusive check when that fails the step."""
    if any(s.verdict == BREACHED for s in plan.states):
        return True
    return plan.on_inconclusive == "fail" and any(s.verdict == INCONCLUSIVE for s in plan.states)


def _result(plan, started_at, elapsed, stopped):
    verdict, breached_check, reason = watch_verdict(plan.states)
    if stopped and verdict != BREACHED:
        reason = stopped
    detected = [s.detected_at for s in plan.states if s.name == breached_check]
    return {
        "verdict": verdict,
        "healthy": verdict == "healthy",
        "breached_check": breached_check,
        "reason": reason,
        "time_to_detect": detected[0] if detected else None,
        "started_at": started_at,
        "ended_at": utc_now_iso(),
        "elapsed": round(elapsed, 3),
        "window": plan.window_s,
        "initial_delay": plan.initial_delay_s,
        "ended_early": verdict != "healthy" and elapsed < plan.end_s,
        "checks": [s.result() for s in plan.states],
        "summary": [s.summary() for s in plan.states],
    }
