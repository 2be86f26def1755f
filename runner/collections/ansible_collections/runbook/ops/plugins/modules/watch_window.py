#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook-runner maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: watch_window
short_description: Watch a service for a window of time and fail when a condition holds for long enough
version_added: "0.1.0"
description:
  - After O(initial_delay), takes one sample of every check each C(interval) for O(window), and fails when a
    check's C(fail_if) holds continuously for its C(for) - as a Prometheus alert's C(for), one good sample resets
    it. A confirmed breach ends the watch at once.
  - Providers - C(prometheus) (an instant query through C(/api/v1/query), one series or a scalar), C(http) (its
    own C(requests) to C(url) per sample - the error rate or a latency percentile in seconds), C(postgres)
    (C(pg_isready) - 1 up, 0 down), C(command) (the number a command prints).
  - NaN, an empty result and a command that prints no number are no data, handled by O(on_no_data). A provider
    error, or no data under C(inconclusive), is an unknown sample; O(max_provider_errors) of them in a row make
    the check inconclusive, and so does a window in which no sample gave a value. An inconclusive watch is never
    healthy - the module fails unless O(on_inconclusive=pass).
  - Every sample is returned (C(t) seconds since the watch started, C(value), C(breach), C(error)).
  - Uses the Python standard library only (and C(pg_isready) for the postgres provider).
author:
  - runbook-runner maintainers
options:
  checks:
    description: What to watch; every check is sampled on its own grid.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Name in results and reports (unique); default the provider and the position.
        type: str
      provider:
        description: Where the samples come from.
        type: str
        required: true
        choices: [prometheus, http, postgres, command]
      fail_if:
        description:
          - The condition that is a breach - one of C(>), C(<), C(>=), C(<=), C(==), C(!=) and a number, such as
            C("> 0.05") or C("< 1"). Anything else is refused.
        type: str
        required: true
      for:
        description: How long the condition must hold, sample after sample, before it is a breach (0 - the first).
        type: raw
        default: 0s
      interval:
        description: Time between two samples of the check (a duration such as C(15s), or seconds).
        type: raw
        default: 10s
      timeout:
        description: Timeout of one query, request or command (a duration or seconds).
        type: raw
        default: 5s
      url:
        description: The Prometheus server's base URL (prometheus), or the URL to call (http).
        type: str
      query:
        description: PromQL instant query giving one series or a scalar (prometheus).
        type: str
      headers:
        description: Request headers (prometheus, http).
        type: dict
      method:
        description: HTTP method (http).
        type: str
        default: GET
      requests:
        description: Requests sent per sample, one after the other (http; 1 to 1000).
        type: int
        default: 10
      measure:
        description: The value of an http sample - the share of failed requests, or a latency percentile in seconds.
        type: str
        default: error_rate
        choices: [error_rate, p50, median, p95, p99]
      login_host:
        description: Server host or socket directory (postgres; empty - libpq default).
        type: str
        default: ""
      login_port:
        description: Server port (postgres).
        type: int
        default: 5432
      login_user:
        description: Role named in the probe (postgres; empty - libpq default).
        type: str
        default: ""
      database:
        description: Database named in the probe (postgres).
        type: str
        default: postgres
      bin_dir:
        description: Directory of the PostgreSQL client tools (postgres; empty - PATH).
        type: str
        default: ""
      argv:
        description: The command and its arguments, run without a shell; it prints one number (command).
        type: list
        elements: str
  window:
    description: How long to watch after O(initial_delay) (a duration such as C(10m), or seconds).
    type: raw
    required: true
  initial_delay:
    description: Wait this long before the first sample (a duration or seconds).
    type: raw
    default: 0
  on_no_data:
    description: What a sample without data is - good (C(pass)), a breach (C(fail)) or unknown (C(inconclusive)).
    type: str
    default: inconclusive
    choices: [pass, fail, inconclusive]
  max_provider_errors:
    description: Unknown samples in a row (provider errors, no data under C(inconclusive)) that make a check inconclusive.
    type: int
    default: 3
  on_inconclusive:
    description: Whether an inconclusive watch fails the module (C(fail)) or only says so (C(pass)).
    type: str
    default: fail
    choices: [pass, fail]
  once:
    description:
      - Take one sample of every check now and decide from it alone - a sample for which C(fail_if) holds is a
        breach; C(for), O(initial_delay) and O(window) are not applied (O(window) is still checked). What
        C(runbook watch) shows to tune thresholds. The module then never fails for the verdict, which says it.
    type: bool
    default: false
  runbook_timeout:
    description:
      - Seconds the watch may take (0 - no limit; the rendered step sets it from its C(timeout)). A watch longer
        than that is refused before it starts; a watch stopped (time up, run cancelled) is inconclusive.
    type: float
    default: 0.0
notes:
  - Supports check mode - no sample is taken; the result says what would be watched (C(verdict) is null).
"""

EXAMPLES = r"""
- name: Watch the release for 10 minutes - error rate and p95 latency from Prometheus, the database
  runbook.ops.watch_window:
    window: 10m
    checks:
      - name: error rate
        provider: prometheus
        url: http://127.0.10.31:9090
        query: sum(rate(http_requests_total{status=~"5.."}[1m])) / sum(rate(http_requests_total[1m]))
        fail_if: "> 0.05"
        for: 2m
        interval: 15s
      - name: database
        provider: postgres
        login_host: 127.0.10.21
        fail_if: "< 1"
        for: 30s
        interval: 10s

- name: Measure the service directly - 20 requests every 5 seconds, p95 over one second for a minute
  runbook.ops.watch_window:
    window: 5m
    initial_delay: 10s
    checks:
      - {name: p95, provider: http, url: "http://127.0.10.11:8080/orders", requests: 20, measure: p95,
         fail_if: "> 1", for: 1m, interval: 5s}
"""

RETURN = r"""
verdict:
  description: C(healthy), C(breached) or C(inconclusive) (null in check mode).
  returned: always
  type: str
healthy:
  description: True only when the verdict is healthy (null in check mode).
  returned: always
  type: bool
breached_check:
  description: Name of the check whose breach ended the watch (null when none did).
  returned: always
  type: str
reason:
  description: Why the watch ended as it did.
  returned: always
  type: str
time_to_detect:
  description: Seconds from the start of the watch to the confirmed breach (null when none).
  returned: always
  type: float
started_at:
  description: UTC ISO 8601 time the watch started.
  returned: always
  type: str
ended_at:
  description: UTC ISO 8601 time the watch ended.
  returned: always
  type: str
checks:
  description: One entry per check - name, provider, fail_if, for, interval, verdict, reason, time_to_detect,
    samples, last_value, max_value and C(measurements), a list of C(t), C(value), C(breach) and C(error).
  returned: always
  type: list
  elements: dict
summary:
  description: The checks reduced to C(name), C(ok), C(detail) (the shape runbook reports use).
  returned: always
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.runbook.ops.plugins.module_utils.host_work import WorkStopped, start_work
from ansible_collections.runbook.ops.plugins.module_utils.watch_loop import (
    WatchPlan, WatchStopped, run_once, run_watch,
)
from ansible_collections.runbook.ops.plugins.module_utils.watch_providers import (
    MEASURES, PROVIDERS, check_provider_options, sampler,
)
from ansible_collections.runbook.ops.plugins.module_utils.watch_rules import (
    BREACHED, INCONCLUSIVE, NO_DATA_POLICIES, parse_duration, show_seconds,
)

CHECK_SPEC = dict(
    name=dict(type="str"),
    provider=dict(type="str", required=True, choices=list(PROVIDERS)),
    fail_if=dict(type="str", required=True),
    interval=dict(type="raw", default="10s"),
    timeout=dict(type="raw", default="5s"),
    url=dict(type="str"),
    query=dict(type="str"),
    headers=dict(type="dict"),
    method=dict(type="str", default="GET"),
    requests=dict(type="int", default=10),
    measure=dict(type="str", default="error_rate", choices=list(MEASURES)),
    login_host=dict(type="str", default=""),
    login_port=dict(type="int", default=5432),
    login_user=dict(type="str", default=""),
    database=dict(type="str", default="postgres"),
    bin_dir=dict(type="str", default=""),
    argv=dict(type="list", elements="str"),
)
CHECK_SPEC["for"] = dict(type="raw", default="0s")

ARGUMENT_SPEC = dict(
    checks=dict(type="list", elements="dict", required=True, options=CHECK_SPEC),
    window=dict(type="raw", required=True),
    initial_delay=dict(type="raw", default=0),
    on_no_data=dict(type="str", default="inconclusive", choices=list(NO_DATA_POLICIES)),
    max_provider_errors=dict(type="int", default=3),
    on_inconclusive=dict(type="str", default="fail", choices=["pass", "fail"]),
    once=dict(type="bool", default=False),
    runbook_timeout=dict(type="float", default=0.0),
)


def build_plan(params):
    """The watch the options describe, every option checked (ValueError saying which is wrong)."""
    plan = WatchPlan(params["checks"], params["window"], params.get("initial_delay"),
                     params.get("on_no_data") or "inconclusive", params.get("max_provider_errors") or 3,
                     params.get("on_inconclusive") or "fail")
    for state in plan.states:
        check_provider_options(state.check)
        state.check["timeout_s"] = parse_duration(state.check.get("timeout") or "5s",
                                                  "timeout of check %s" % state.name)
        if state.check["timeout_s"] <= 0:
            raise ValueError("timeout of check %s must be longer than zero" % state.name)
    limit = float(params.get("runbook_timeout") or 0)
    if limit > 0 and plan.end_s > limit and not params.get("once"):
        raise ValueError("the watch takes %s (initial_delay and window) but the step may only take %s: raise the "
                         "step's timeout or shorten the window" % (show_seconds(plan.end_s), show_seconds(limit)))
    return plan


def message(result):
    if result.get("once"):
        return "one sample per check: %s" % result["reason"]
    if result["verdict"] == BREACHED:
        return "watch breached after %s: %s" % (show_seconds(result["time_to_detect"]), result["reason"])
    if result["verdict"] == INCONCLUSIVE:
        return "watch inconclusive: %s" % result["reason"]
    return "watch healthy: %d check(s) for %s" % (len(result["checks"]), show_seconds(result["window"]))


def watch(plan, work):
    """Run the watch under the module's host work: its sleeps and http samples stop when the work is stopped."""

    def stop_check():
        try:
            work.check()
        except WorkStopped as exc:
            raise WatchStopped(str(exc))

    def sleep(seconds):
        try:
            work.sleep(seconds)
        except WorkStopped as exc:
            raise WatchStopped(str(exc))

    return run_watch(plan, sampler(stop_check), sleep=sleep, remaining=work.remaining)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        plan = build_plan(module.params)
    except (TypeError, ValueError) as exc:
        module.fail_json(msg="invalid watch: %s" % exc)
    if module.check_mode:
        summary = [{"name": s.name, "ok": None, "detail": "not sampled in check mode"} for s in plan.states]
        module.exit_json(changed=False, skipped=True, verdict=None, healthy=None, breached_check=None,
                         reason="check mode", time_to_detect=None, started_at=None, ended_at=None,
                         checks=[s.result() for s in plan.states], summary=summary,
                         msg="check mode, no sample taken: %s" % plan.describe())
    work = start_work("watch_window", module.params)
    once = module.params.get("once")
    result = run_once(plan, sampler()) if once else watch(plan, work)
    text = message(result)
    failed = not once and (result["verdict"] == BREACHED or (result["verdict"] == INCONCLUSIVE and
                                                             (plan.on_inconclusive == "fail" or work.stopped)))
    work.finish(failed, text)
    if failed:
        module.fail_json(msg=text, stopped=work.reason, **result)
    module.exit_json(changed=False, msg=text, **result)


if __name__ == "__main__":
    main()
