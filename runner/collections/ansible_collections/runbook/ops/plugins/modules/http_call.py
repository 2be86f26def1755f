#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook-runner maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: http_call
short_description: One HTTP call (an admin API, a webhook) with an expected status, retries with backoff and secrets kept
version_added: "0.1.0"
description:
  - Sends one request - O(method) O(url) with O(headers) and a JSON O(body) - and succeeds when the answer's status
    is one of O(status). The answer's JSON (or text) is returned.
  - When there is no answer, or its status is one of O(retry_statuses), the call is sent again up to O(retries)
    more times; the pause starts at O(backoff) and is multiplied by O(backoff_factor) each time, up to
    O(backoff_max). Another unexpected status fails at once.
  - Secrets are never shown - the values of C(Authorization), C(Proxy-Authorization) and the headers named in
    O(secret_headers), and O(token), are replaced by C(********) wherever they would appear in the result (the
    headers sent, the answer's body and JSON, the message), and are masked by Ansible in its own output.
  - Uses the Python standard library (C(urllib)) only.
author:
  - runbook-runner maintainers
options:
  url: {description: URL to call., type: str, required: true}
  method: {description: HTTP method., type: str, default: GET}
  headers: {description: Request headers., type: dict, default: {}}
  secret_headers:
    description: Names of headers (any case) whose values are secrets, in addition to C(Authorization).
    type: list
    elements: str
    default: []
  token:
    description: A bearer token, sent as C(Authorization - Bearer <token>) unless O(headers) has an Authorization.
    type: str
    default: ""
    no_log: true
  body: {description: Request body; a dict or list is sent as JSON., type: raw}
  status: {description: Expected status code, or a list of accepted codes., type: raw, default: 200}
  retries: {description: Further attempts after the first when there is no answer or a retried status., type: int, default: 0}
  retry_statuses:
    description: Statuses that are tried again (others than O(status) fail at once).
    type: list
    elements: int
    default: [408, 429, 500, 502, 503, 504]
  backoff: {description: Pause before the first retry (a duration such as C(1s) or C(500ms))., type: raw, default: 1s}
  backoff_factor: {description: Each further pause is the previous one times this., type: float, default: 2.0}
  backoff_max: {description: Longest pause between attempts (a duration)., type: raw, default: 30s}
  timeout: {description: Per-request timeout (a duration)., type: raw, default: 10s}
  validate_certs: {description: Verify TLS certificates., type: bool, default: true}
  runbook_timeout:
    description:
      - Seconds the call and its retries may take (0 - no limit; the rendered step sets it from its C(timeout)).
        When the time is up, or the run that started the module is gone, no further attempt is made.
    type: float
    default: 0.0
notes:
  - Supports check mode - nothing is sent; the result says what would be called.
"""

EXAMPLES = r"""
- name: Turn a feature off through the admin API
  runbook.ops.http_call:
    method: PATCH
    url: http://127.0.10.11:8080/admin/feature-flags
    token: "{{ admin_token }}"
    body: {feature: new-checkout, enabled: false}
    status: [200, 204]
    retries: 3
  no_log: true
"""

RETURN = r"""
ok: {description: Whether the status was one expected (null in check mode)., returned: always, type: bool}
status: {description: Status of the last answer (null when there was none)., returned: always, type: int}
json: {description: The answer's body parsed as JSON (null when it is not JSON)., returned: always, type: raw}
body: {description: "The answer's body as text (its first 64 KiB), secrets replaced.", returned: always, type: str}
elapsed_ms: {description: Response time of the last attempt., returned: always, type: int}
attempts: {description: Attempts made., returned: always, type: int}
history: {description: "Each attempt - status, elapsed_ms, detail.", returned: always, type: list, elements: dict}
request_headers: {description: The headers sent, secret values replaced., returned: always, type: dict}
"""

import json
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.runbook.ops.plugins.module_utils.host_work import WorkStopped, start_work
from ansible_collections.runbook.ops.plugins.module_utils.http_request import (
    body_text, expected_statuses, parse_duration, perform, redact, redacted_headers, secret_values,
)

BODY_LIMIT = 65536
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def request_of(params):
    """(the request to send, the secret values it holds)."""
    headers = dict((str(k), str(v)) for k, v in (params.get("headers") or {}).items())
    token = params.get("token") or ""
    if token and not any(k.lower() == "authorization" for k in headers):
        headers["Authorization"] = "Bearer " + token
    secrets = secret_values(headers, params.get("secret_headers"))
    if token:
        secrets = sorted(set(secrets) | {token}, key=len, reverse=True)
    check = {"url": params["url"], "method": (params.get("method") or "GET").upper(), "headers": headers,
             "body": params.get("body"), "validate_certs": params.get("validate_certs", True)}
    return check, secrets


def pauses(params):
    """The pause before each retry: backoff, times backoff_factor each time, at most backoff_max."""
    delay, factor = parse_duration(params.get("backoff", "1s")), float(params.get("backoff_factor", 2.0))
    longest = parse_duration(params.get("backoff_max", "30s"))
    for _ in range(max(int(params.get("retries") or 0), 0)):
        yield min(delay, longest)
        delay *= factor


def attempt_detail(status, error, wanted):
    if error is not None:
        return error
    if status in wanted:
        return "HTTP %s" % status
    return "status %s, expected %s" % (status, " or ".join(str(s) for s in wanted))


def call(params, request=perform, sleep=time.sleep, remaining=None):
    """Send the call with its retries; the result, every secret replaced."""
    check, secrets = request_of(params)
    wanted = expected_statuses(params.get("status"))
    retried = set(int(s) for s in params.get("retry_statuses") or ())
    timeout = parse_duration(params.get("timeout", "10s"))
    waits = pauses(params)
    history, stopped = [], ""
    while True:
        left = remaining() if remaining is not None else None
        status, body, elapsed_ms, error = request(check, timeout if left is None else max(0.1, min(timeout, left)))
        history.append({"status": status, "elapsed_ms": elapsed_ms, "detail": attempt_detail(status, error, wanted)})
        if error is None and status in wanted or (error is None and status not in retried):
            break
        pause = next(waits, None)
        if pause is None:
            break
        try:
            sleep(pause)
        except WorkStopped as exc:
            stopped = str(exc)
            break
    return redact(outcome(check, wanted, history, status, body, elapsed_ms, stopped, secrets), secrets)


def outcome(check, wanted, history, status, body, elapsed_ms, stopped, secrets):
    text = body_text(body)
    try:
        data = json.loads(text) if text.strip() else None
    except ValueError:
        data = None
    ok = status in wanted and history[-1]["detail"].startswith("HTTP")
    where = "%s %s" % (check["method"], check["url"])
    msg = "%s: %s (after %d attempt%s%s)" % (where, history[-1]["detail"], len(history),
                                            "" if len(history) == 1 else "s", "; " + stopped if stopped else "")
    return {"ok": ok, "status": status, "json": data, "body": text[:BODY_LIMIT], "elapsed_ms": elapsed_ms,
            "attempts": len(history), "history": history, "url": check["url"], "method": check["method"],
            "request_headers": redacted_headers(check["headers"], secret_names_of(check, secrets)),
            "changed": ok and check["method"] not in SAFE_METHODS, "msg": msg}


def secret_names_of(check, secrets):
    """Headers whose values hold a secret (a header named in secret_headers, or one the token is in)."""
    return [k for k, v in check["headers"].items() if any(s and s in str(v) for s in secrets)]


def plan(params):
    check, secrets = request_of(params)
    wanted = expected_statuses(params.get("status"))
    msg = "would call %s %s expecting status %s (%d retr%s)" % (
        check["method"], check["url"], " or ".join(str(s) for s in wanted), params.get("retries") or 0,
        "y" if params.get("retries") == 1 else "ies")
    return redact({"ok": None, "status": None, "json": None, "body": "", "elapsed_ms": None, "attempts": 0,
                   "history": [], "url": check["url"], "method": check["method"], "skipped": True,
                   "request_headers": redacted_headers(check["headers"], secret_names_of(check, secrets)),
                   "changed": check["method"] not in SAFE_METHODS, "msg": msg}, secrets)


ARGUMENT_SPEC = dict(
    url=dict(type="str", required=True),
    method=dict(type="str", default="GET"),
    headers=dict(type="dict", default={}),
    secret_headers=dict(type="list", elements="str", default=[], no_log=False),
    token=dict(type="str", default="", no_log=True),
    body=dict(type="raw"),
    status=dict(type="raw", default=200),
    retries=dict(type="int", default=0),
    retry_statuses=dict(type="list", elements="int", default=[408, 429, 500, 502, 503, 504]),
    backoff=dict(type="raw", default="1s"),
    backoff_factor=dict(type="float", default=2.0),
    backoff_max=dict(type="raw", default="30s"),
    timeout=dict(type="raw", default="10s"),
    validate_certs=dict(type="bool", default=True),
    runbook_timeout=dict(type="float", default=0.0),
)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    p = module.params
    module.no_log_values.update(request_of(p)[1])
    try:
        expected_statuses(p["status"])
        for name in ("backoff", "backoff_max", "timeout"):
            parse_duration(p[name])
    except (TypeError, ValueError) as exc:
        module.fail_json(msg="invalid option: %s" % exc)
    if module.check_mode:
        module.exit_json(**plan(p))
    work = start_work("http_call", p)
    result = call(p, sleep=work.sleep, remaining=work.remaining)
    result["msg"] = work.explain(result["msg"])
    work.finish(not result["ok"], result["msg"])
    if not result["ok"]:
        module.fail_json(stopped=work.reason, **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
