#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook-runner maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: http_latency
short_description: Response time of URLs over N samples - fails when the p95 or the median is over a bound
version_added: "0.1.0"
description:
  - Calls each check's C(url) C(samples) times, one after the other (C(interval) apart), and computes the median
    and the 95th percentile (nearest rank) of the response times.
  - A check fails when its p95 is over C(p95_ms), its median over C(median_ms), or any sample got no answer or an
    unexpected status (the response time of a failing call proves nothing).
  - Uses the Python standard library (C(urllib)) only.
author:
  - runbook-runner maintainers
options:
  checks:
    description: The URLs to measure, in order.
    type: list
    elements: dict
    required: true
    suboptions:
      name: {description: Name in results and reports; default C(latency URL)., type: str}
      url: {description: URL to call., type: str, required: true}
      method: {description: HTTP method., type: str, default: GET}
      headers: {description: Request headers., type: dict}
      status: {description: Expected status code, or a list of accepted codes., type: raw, default: 200}
      samples: {description: Number of calls., type: int, default: 20}
      interval: {description: Pause between two calls (a duration)., type: raw, default: 0s}
      p95_ms: {description: Highest accepted 95th percentile in milliseconds., type: int}
      median_ms: {description: Highest accepted median in milliseconds., type: int}
      validate_certs: {description: Verify TLS certificates., type: bool, default: true}
  timeout:
    description: Per-request timeout (a duration).
    type: raw
    default: 5s
  runbook_timeout:
    description:
      - Seconds all the samples may take (0 - no limit; the rendered step sets it from its C(timeout)). When the time
        is up, or the run that started the module is gone, the checks not done yet fail, saying so.
    type: float
    default: 0.0
notes:
  - Supports check mode - no request is sent; each result says what would be measured (C(ok) is null).
"""

EXAMPLES = r"""
- name: The backend's /health answers within a second at the 95th percentile
  runbook.ops.http_latency:
    checks:
      - {url: "http://127.0.10.11:8080/health", samples: 20, p95_ms: 1000}
"""

RETURN = r"""
checks: {description: "One C(name), C(ok), C(detail) per check.", returned: always, type: list, elements: dict}
results:
  description: "Per check - name, url, ok, detail, samples (response times in ms), failed, median_ms, p95_ms, max_ms."
  returned: always
  type: list
  elements: dict
healthy: {description: True when every check passed (null in check mode)., returned: always, type: bool}
"""

import math
import statistics
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.runbook.ops.plugins.module_utils.check_results import failures_text, summary
from ansible_collections.runbook.ops.plugins.module_utils.host_work import WorkStopped, start_work
from ansible_collections.runbook.ops.plugins.module_utils.http_request import (
    evaluate, expected_statuses, parse_duration, perform,
)


def percentile(values, fraction):
    """Nearest-rank percentile: the smallest value at least `fraction` of the values are not above."""
    ordered = sorted(values)
    return ordered[max(int(math.ceil(fraction * len(ordered))) - 1, 0)]


def check_name(check):
    return check.get("name") or "latency %s" % check["url"]


def bounds_text(check):
    parts = ["p95 <= %d ms" % check["p95_ms"]] if check.get("p95_ms") is not None else []
    if check.get("median_ms") is not None:
        parts.append("median <= %d ms" % check["median_ms"])
    return " and ".join(parts) or "every call answered"


def judge(check, times, failures):
    """(ok, detail, figures) of a check's samples."""
    figures = {"samples": times, "failed": len(failures), "median_ms": None, "p95_ms": None, "max_ms": None}
    if times:
        figures.update(median_ms=int(statistics.median(times)), p95_ms=percentile(times, 0.95), max_ms=max(times))
    if failures:
        return False, "%d of %d call(s) failed (%s)" % (len(failures), len(times), failures[0]), figures
    seen = "median %d ms, p95 %d ms, max %d ms over %d calls" % (
        figures["median_ms"], figures["p95_ms"], figures["max_ms"], len(times))
    over = []
    if check.get("p95_ms") is not None and figures["p95_ms"] > check["p95_ms"]:
        over.append("p95 %d ms is over %d ms" % (figures["p95_ms"], check["p95_ms"]))
    if check.get("median_ms") is not None and figures["median_ms"] > check["median_ms"]:
        over.append("median %d ms is over %d ms" % (figures["median_ms"], check["median_ms"]))
    return not over, "; ".join(over + [seen]) if over else seen, figures


def measure(check, timeout, request=perform, sleep=time.sleep, remaining=None):
    """One check's samples and verdict; WorkStopped ends it (failed, saying so)."""
    times, failures = [], []
    interval = parse_duration(check.get("interval") or 0)
    samples = max(int(check.get("samples") or 20), 1)
    result = {"name": check_name(check), "url": check["url"]}
    try:
        for index in range(samples):
            sleep(interval if index else 0)  # a stopped work raises WorkStopped here, before the call
            left = remaining() if remaining is not None else None
            status, body, elapsed_ms, error = request(check, timeout if left is None else max(0.1, min(timeout, left)))
            times.append(elapsed_ms)
            problems = evaluate({"status": check.get("status")}, status, body, elapsed_ms, error)
            if problems:
                failures.append("; ".join(problems))
    except WorkStopped as exc:
        figures = judge(check, times, failures)[2]
        result.update(figures, ok=False, detail="%s after %d of %d calls" % (exc, len(times), samples))
        return result
    ok, detail, figures = judge(check, times, failures)
    result.update(figures, ok=ok, detail=detail)
    return result


def measure_all(checks, timeout, request=perform, sleep=time.sleep, remaining=None):
    return [measure(c, timeout, request=request, sleep=sleep, remaining=remaining) for c in checks]


def main():
    check_spec = dict(
        name=dict(type="str"),
        url=dict(type="str", required=True),
        method=dict(type="str", default="GET"),
        headers=dict(type="dict"),
        status=dict(type="raw", default=200),
        samples=dict(type="int", default=20),
        interval=dict(type="raw", default="0s"),
        p95_ms=dict(type="int"),
        median_ms=dict(type="int"),
        validate_certs=dict(type="bool", default=True),
    )
    module = AnsibleModule(
        argument_spec=dict(
            checks=dict(type="list", elements="dict", required=True, options=check_spec),
            timeout=dict(type="raw", default="5s"),
            runbook_timeout=dict(type="float", default=0.0),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        timeout = parse_duration(p["timeout"])
        for check in p["checks"]:
            expected_statuses(check.get("status"))
            parse_duration(check.get("interval") or 0)
    except (TypeError, ValueError) as exc:
        module.fail_json(msg="invalid option: %s" % exc)
    if module.check_mode:
        results = [{"name": check_name(c), "url": c["url"], "ok": None,
                    "detail": "would call %s %s %d times (%s)" % ((c.get("method") or "GET").upper(), c["url"],
                                                                 c["samples"], bounds_text(c))} for c in p["checks"]]
        module.exit_json(changed=False, results=results, checks=summary(results), healthy=None, skipped=True,
                         msg="check mode: %d latency check(s) not sent" % len(results))
    work = start_work("http_latency", p)
    results = measure_all(p["checks"], timeout, sleep=work.sleep, remaining=work.remaining)
    failed = [r for r in results if not r["ok"]]
    message = "%d latency check(s) passed" % len(results)
    if failed:
        message = work.explain(failures_text(failed, len(results), "latency"))
    work.finish(bool(failed), message)
    if failed:
        module.fail_json(msg=message, results=results, checks=summary(results), healthy=False, stopped=work.reason)
    module.exit_json(changed=False, results=results, checks=summary(results), healthy=True, msg=message)


if __name__ == "__main__":
    main()
