#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook-runner maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: http_check
short_description: Ordered HTTP checks with attempts and interval (health, version, smoke scenario)
version_added: "0.1.0"
description:
  - Runs the O(checks) in order. Each check is tried up to O(attempts) times, O(interval) apart, until it
    matches; then the next check runs. A list of checks is an ordered smoke scenario.
  - A check matches when the response status is one of C(status), the body contains every C(body_contains)
    string, every C(json) key has the expected value in the JSON body, and the response took at most C(max_ms).
  - A check's C(extract) takes values from its JSON answer (a JSON path such as C($.id) or C($.items[0].id), or a
    dotted key); later checks use them as C(${name}) in their C(url), C(headers), C(body), C(json) and
    C(body_contains). A string that is only C(${name}) takes the value itself (a number stays a number in a JSON
    body); C($$) is a literal C($). The module does the substitution - values are never templated. A check that
    refers to a name no earlier check extracted fails without being sent. Checks none of which has C(extract) are
    sent as written.
  - Fails (after all attempts) listing what did not match; the per-check results are returned either way.
  - Uses the Python standard library (C(urllib)) only.
author:
  - runbook-runner maintainers
options:
  checks:
    description: The checks, run in order.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Name in results and reports; default C(METHOD URL).
        type: str
      url:
        description: URL to call.
        type: str
        required: true
      method:
        description: HTTP method.
        type: str
        default: GET
      status:
        description: Expected status code, or a list of accepted codes.
        type: raw
        default: 200
      body_contains:
        description: A string, or a list of strings, the body must contain.
        type: raw
      json:
        description:
          - Keys and expected values in the JSON body, for example C(version) with C(v1).
          - A dotted key (C(data.version)) looks into nested objects when the body has no such top-level key.
          - A number or boolean matches its JSON text, so C("3") matches C(3).
        type: dict
      max_ms:
        description: Longest accepted response time, in milliseconds.
        type: int
      headers:
        description: Request headers.
        type: dict
      body:
        description: Request body; a dict or list is sent as JSON.
        type: raw
      timeout:
        description: Per-request timeout (duration like C(5s), C(500ms), or seconds); default O(timeout).
        type: raw
      validate_certs:
        description: Verify TLS certificates.
        type: bool
        default: true
      extract:
        description:
          - Name -> JSON path (C($.id), C($.data.items[0].id), C($['a key'])) or dotted key of a value in the JSON
            answer, for the C(${name}) references of later checks. The check fails when a value is not found.
        type: dict
  attempts:
    description: Attempts per check before it counts as failed.
    type: int
    default: 1
  interval:
    description: Pause between attempts - a duration (C(1s), C(500ms), C(1m30s)) or a number of seconds.
    type: raw
    default: 1s
  timeout:
    description: Default per-request timeout (duration or seconds).
    type: raw
    default: 5s
  stop_on_failure:
    description: After a check fails, do not run the later ones (they are reported as not run).
    type: bool
    default: true
  runbook_timeout:
    description:
      - Seconds all the checks may take (0 - no limit; the rendered step sets it from its C(timeout)). When the
        time is up, or the run that started the module is gone, no further attempt is made and the checks not
        passed yet fail, saying so.
    type: float
    default: 0.0
notes:
  - Supports check mode - no request is sent; each result says what would be checked (C(ok) is null).
"""

EXAMPLES = r"""
- name: Wait until the backend answers v1 within a second
  runbook.ops.http_check:
    checks:
      - url: http://127.0.10.11:8080/health
        status: 200
        json: {version: v1}
        max_ms: 1000
    attempts: 30
    interval: 1s

- name: Smoke scenario
  runbook.ops.http_check:
    checks:
      - {name: home, url: "http://app/", body_contains: Welcome}
      - {name: create order, url: "http://app/api/orders", method: POST, body: {sku: A1}, status: [200, 201],
         extract: {order_id: $.id, amount: $.total}}
      - {name: read the order, url: "http://app/api/orders/${order_id}", json: {total: "${amount}"}}
"""

RETURN = r"""
results:
  description: One entry per check, in order.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Check name.
      type: str
    url:
      description: URL called.
      type: str
    ok:
      description: True when the check matched (null in check mode or when not run).
      type: bool
    detail:
      description: What was seen, or what did not match.
      type: str
    status:
      description: HTTP status of the last attempt (null when no response).
      type: int
    elapsed_ms:
      description: Response time of the last attempt, in milliseconds.
      type: int
    attempts:
      description: Attempts made.
      type: int
    extracted:
      description: The values the check extracted (only for a check with C(extract) that passed).
      type: dict
checks:
  description: The results reduced to C(name), C(ok), C(detail) (the shape runbook reports use).
  returned: always
  type: list
  elements: dict
healthy:
  description: True when every check matched (null in check mode).
  returned: always
  type: bool
"""

import json
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.runbook.ops.plugins.module_utils.check_results import failures_text, summary
from ansible_collections.runbook.ops.plugins.module_utils.host_work import WorkStopped, start_work
from ansible_collections.runbook.ops.plugins.module_utils.http_request import (  # noqa: F401 - used by callers
    MISSING, UnknownReference, as_list, check_name, evaluate, expected_statuses, extract, lookup, parse_duration,
    path_steps, perform, substitute, values_match,
)


def describe_plan(check, attempts, interval):
    parts = ["%s %s expecting status %s" % ((check.get("method") or "GET").upper(), check["url"],
                                             " or ".join(str(s) for s in expected_statuses(check.get("status"))))]
    if check.get("body_contains"):
        parts.append("body containing %s" % ", ".join(repr(s) for s in as_list(check["body_contains"])))
    if check.get("json"):
        parts.append("json %s" % json.dumps(check["json"], sort_keys=True))
    if check.get("max_ms") is not None:
        parts.append("within %d ms" % check["max_ms"])
    if check.get("extract"):
        parts.append("extracting %s" % ", ".join("%s from %s" % kv for kv in sorted(check["extract"].items())))
    return "would check %s (%d attempt%s, %gs apart)" % (", ".join(parts), attempts, "" if attempts == 1 else "s",
                                                         interval)


def run_check(check, attempts, interval, default_timeout, request=perform, sleep=time.sleep, remaining=None):
    """Attempts until the check matches. `sleep` raises WorkStopped when the module's time is up (the check then
    fails, saying so); `remaining` gives the seconds left, which bound each request's timeout. A check with
    `extract` matches only when every value is found; they are returned as `extracted`."""
    timeout = parse_duration(check["timeout"]) if check.get("timeout") is not None else default_timeout
    result = {"name": check_name(check), "url": check["url"], "ok": False, "detail": "", "status": None,
              "elapsed_ms": None, "attempts": 0}
    for attempt in range(1, max(attempts, 1) + 1):
        left = remaining() if remaining is not None else None
        status, body, elapsed_ms, error = request(check, timeout if left is None else max(0.1, min(timeout, left)))
        problems = evaluate(check, status, body, elapsed_ms, error)
        extracted = {}
        if not problems and check.get("extract"):
            extracted, problems = extract(check["extract"], body)
        result.update(status=status, elapsed_ms=elapsed_ms, attempts=attempt)
        if not problems:
            result["ok"] = True
            result["detail"] = "HTTP %s in %d ms" % (status, elapsed_ms)
            if check.get("extract"):
                result["extracted"] = extracted
            return result
        result["detail"] = "; ".join(problems)
        if attempt < attempts:
            try:
                sleep(interval)
            except WorkStopped as exc:
                result["stopped"] = str(exc)
                break
    result["detail"] += " (after %d attempt%s%s)" % (
        result["attempts"], "" if result["attempts"] == 1 else "s",
        "; " + result["stopped"] if result.get("stopped") else "")
    return result


def not_run(check, why):
    return {"name": check_name(check), "url": check["url"], "ok": None, "status": None, "elapsed_ms": None,
            "attempts": 0, "detail": "not run: " + why}


SUBSTITUTED = ("url", "headers", "body", "json", "body_contains")


def resolve(check, variables):
    """The check with the ${name} references of its request and expectations replaced (its name is kept)."""
    resolved = dict(check)
    for key in SUBSTITUTED:
        if resolved.get(key) is not None:
            resolved[key] = substitute(resolved[key], variables)
    resolved["name"] = check_name(check)
    resolved["url"] = str(resolved["url"])
    return resolved


def run_checks(checks, attempts, interval, timeout, stop_on_failure=True, request=perform, sleep=time.sleep,
               remaining=None):
    """The checks in order; the values a check extracts are there for the ${name} references of later ones (checks
    none of which extracts anything are sent as they are, as they were before extraction existed)."""
    results = []
    failed, stopped = False, ""
    variables = {}
    scenario = any(check.get("extract") for check in checks)
    for check in checks:
        if stopped:
            results.append(dict(not_run(check, stopped), ok=False))
            continue
        if failed and stop_on_failure:
            results.append(not_run(check, "an earlier check failed"))
            continue
        try:
            resolved = resolve(check, variables) if scenario else check
        except UnknownReference as exc:
            results.append(dict(not_run(check, ""), ok=False, detail=str(exc)))
            failed = True
            continue
        result = run_check(resolved, attempts, interval, timeout, request=request, sleep=sleep, remaining=remaining)
        variables.update(result.get("extracted") or {})
        failed = failed or not result["ok"]
        stopped = result.pop("stopped", "")
        results.append(result)
    return results


def main():
    check_spec = dict(
        name=dict(type="str"),
        url=dict(type="str", required=True),
        method=dict(type="str", default="GET"),
        status=dict(type="raw", default=200),
        body_contains=dict(type="raw"),
        json=dict(type="dict"),
        max_ms=dict(type="int"),
        headers=dict(type="dict"),
        body=dict(type="raw"),
        timeout=dict(type="raw"),
        validate_certs=dict(type="bool", default=True),
        extract=dict(type="dict"),
    )
    module = AnsibleModule(
        argument_spec=dict(
            checks=dict(type="list", elements="dict", required=True, options=check_spec),
            attempts=dict(type="int", default=1),
            interval=dict(type="raw", default="1s"),
            timeout=dict(type="raw", default="5s"),
            stop_on_failure=dict(type="bool", default=True),
            runbook_timeout=dict(type="float", default=0.0),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        interval = parse_duration(p["interval"])
        timeout = parse_duration(p["timeout"])
        for check in p["checks"]:
            expected_statuses(check.get("status"))
            if check.get("timeout") is not None:
                parse_duration(check["timeout"])
            for path in (check.get("extract") or {}).values():
                if str(path).startswith("$"):
                    path_steps(path)
    except (TypeError, ValueError) as exc:
        module.fail_json(msg="invalid option: %s" % exc)
    attempts = max(p["attempts"], 1)

    if module.check_mode:
        results = [{"name": check_name(c), "url": c["url"], "ok": None, "status": None, "elapsed_ms": None,
                    "attempts": 0, "detail": describe_plan(c, attempts, interval)} for c in p["checks"]]
        module.exit_json(changed=False, results=results, checks=summary(results), healthy=None, skipped=True,
                         msg="check mode: %d check(s) not sent" % len(results))

    work = start_work("http_check", p)
    results = run_checks(p["checks"], attempts, interval, timeout, p["stop_on_failure"], sleep=work.sleep,
                         remaining=work.remaining)
    failed = [r for r in results if r["ok"] is False]
    healthy = not failed and all(r["ok"] for r in results)
    if not healthy:
        message = work.explain(failures_text(failed, len(results), "HTTP"))
        work.finish(True, message)
        module.fail_json(msg=message, results=results, checks=summary(results), healthy=False, stopped=work.reason)
    work.finish(False, "%d HTTP check(s) passed" % len(results))
    module.exit_json(changed=False, results=results, checks=summary(results), healthy=True,
                     msg="%d HTTP check(s) passed" % len(results))


if __name__ == "__main__":
    main()
