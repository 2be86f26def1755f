# -*- coding: utf-8 -*-
# Copyright: runbook-runner maintainers
# License: Apache-2.0
"""Where a watch's samples come from. Each provider takes one sample: `sample(check, timeout)` returns
(value, error) - a float, or None when there is no data (NaN, an empty result, a command that printed no
number), and None or the text of the provider error (no answer, a refused query, a failed command).

- prometheus: an instant query (GET <url>/api/v1/query), one series or a scalar;
- http: `requests` requests of its own to a URL; the error rate (no response, or a status outside 200-399) or a
  latency percentile, in seconds;
- postgres: pg_isready - 1 when the server accepts connections, 0 when it does not;
- command: the number a command (an argv list, no shell) prints.

Standard library only; subprocesses go through module_utils/host_work, so they end with the module's work.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import math
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

from ansible_collections.runbook.ops.plugins.module_utils.host_work import tracked_popen
from ansible_collections.runbook.ops.plugins.module_utils.pg_common import PgClient, PgError
from ansible_collections.runbook.ops.plugins.module_utils.watch_rules import as_value

PROVIDERS = ("prometheus", "http", "postgres", "command")
MEASURES = ("error_rate", "p50", "median", "p95", "p99")
PERCENTILES = {"p50": 50, "median": 50, "p95": 95, "p99": 99}
REQUIRED = {"prometheus": ("url", "query"), "http": ("url",), "postgres": (), "command": ("argv",)}
MAX_REQUESTS = 1000
MAX_BODY = 4 * 1024 * 1024


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A 3xx is the service's answer (and a success), not a reason to call another URL."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def check_provider_options(check):
    """ValueError when a check lacks what its provider needs, or asks for what the provider cannot do."""
    provider = check.get("provider")
    if provider not in PROVIDERS:
        raise ValueError("check %s: unknown provider %r (use one of %s)" % (check.get("name"), provider,
                                                                            ", ".join(PROVIDERS)))
    missing = [key for key in REQUIRED[provider] if not check.get(key)]
    if missing:
        raise ValueError("check %s: provider %s needs %s" % (check["name"], provider, ", ".join(missing)))
    if provider == "http":
        if check.get("measure", "error_rate") not in MEASURES:
            raise ValueError("check %s: measure must be one of %s" % (check["name"], ", ".join(MEASURES)))
        requests = check.get("requests")
        if not 1 <= int(10 if requests is None else requests) <= MAX_REQUESTS:
            raise ValueError("check %s: requests must be between 1 and %d" % (check["name"], MAX_REQUESTS))
    if provider == "command" and not all(isinstance(a, str) for a in check["argv"]):
        raise ValueError("check %s: argv must be a list of strings" % check["name"])


def sampler(stop_check=None):
    """sample(check, timeout) of the check's provider; `stop_check` (raising when the watch must stop) is called
    between the requests of an http sample, so a cancel never waits for all of them."""

    def sample(check, timeout):
        if check["provider"] == "http":
            return sample_http(check, timeout, stop_check)
        return _SAMPLERS[check["provider"]](check, timeout)

    return sample


# ------------------------------------------------------------------------------------------------ prometheus

def prometheus_url(base, query):
    return base.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": query})


def prometheus_value(document):
    """(value, error) of an instant query's JSON answer: one series of a vector, or a scalar."""
    if not isinstance(document, dict):
        return None, "not a Prometheus answer"
    if document.get("status") != "success":
        return None, "query failed: %s: %s" % (document.get("errorType", "error"), document.get("error", "?"))
    data = document.get("data") or {}
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar" and isinstance(result, list) and len(result) == 2:
        return as_value(result[1]), None
    if kind != "vector" or not isinstance(result, list):
        return None, "query gave a %s: a watch needs one series or a scalar" % (kind or "result of no type")
    if not result:
        return None, None
    if len(result) > 1:
        return None, "query gave %d series: aggregate them to one (sum, max, avg)" % len(result)
    value = result[0].get("value") if isinstance(result[0], dict) else None
    if not isinstance(value, list) or len(value) != 2:
        return None, "query gave a series without a value"
    return as_value(value[1]), None


def sample_prometheus(check, timeout):
    request = urllib.request.Request(prometheus_url(check["url"], check["query"]),
                                     headers=dict(check.get("headers") or {}, Accept="application/json"))
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            body = response.read(MAX_BODY)
    except urllib.error.HTTPError as exc:
        return None, _http_error(exc.code, exc.read(MAX_BODY) or b"")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return None, "no answer from Prometheus: %s" % (getattr(exc, "reason", None) or exc)
    try:
        document = json.loads(body.decode("utf-8", "replace"))
    except ValueError:
        return None, "Prometheus answered no JSON: %r" % body[:80]
    return prometheus_value(document)


def _http_error(code, body):
    try:
        document = json.loads(body.decode("utf-8", "replace"))
        detail = document["error"]
    except (ValueError, TypeError, KeyError):
        detail = body[:200].decode("utf-8", "replace")
    return "Prometheus answered HTTP %d: %s" % (code, detail)


# ------------------------------------------------------------------------------------------------------ http

def percentile(values, rank):
    """Nearest-rank percentile (p95 of 20 values is the 19th smallest); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    index = max(1, int(math.ceil(rank / 100.0 * len(ordered))))
    return ordered[index - 1]


def one_request(check, timeout):
    """(ok, seconds or None when the request got no answer and did not time out, error text or None)."""
    request = urllib.request.Request(check["url"], method=(check.get("method") or "GET").upper(),
                                     headers=dict(check.get("headers") or {}))
    started = time.monotonic()
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            response.read(MAX_BODY)
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (socket.timeout, TimeoutError):
        return False, time.monotonic() - started, "timed out after %gs" % timeout
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        if isinstance(reason, (socket.timeout, TimeoutError)):
            return False, time.monotonic() - started, "timed out after %gs" % timeout
        return False, None, "no response: %s" % (reason,)
    elapsed = time.monotonic() - started
    return 200 <= status < 400, elapsed, None if 200 <= status < 400 else "HTTP %d" % status


def http_measure(outcomes, measure):
    """The value of a sample from its requests' (ok, seconds, error): the error rate, or a latency percentile over
    the requests that got an answer or timed out (a timeout is a latency too); None when there is none."""
    if not outcomes:
        return None
    if measure == "error_rate":
        return sum(1 for ok, _, _ in outcomes if not ok) / float(len(outcomes))
    return percentile([seconds for _, seconds, _ in outcomes if seconds is not None], PERCENTILES[measure])


def sample_http(check, timeout, stop_check=None):
    outcomes = []
    for _ in range(int(check.get("requests") or 10)):
        if stop_check is not None:
            stop_check()
        outcomes.append(one_request(check, timeout))
    value = http_measure(outcomes, check.get("measure") or "error_rate")
    if value is None and outcomes:
        errors = sorted(set(error for _, _, error in outcomes if error))
        return None, "no request got an answer: %s" % "; ".join(errors)
    return value, None


# -------------------------------------------------------------------------------------------------- postgres

def sample_postgres(check, timeout):
    client = PgClient(check.get("login_host"), check.get("login_port"), check.get("login_user"),
                      bin_dir=check.get("bin_dir"), connect_timeout=max(1, int(math.ceil(timeout))))
    argv = [client.tool("pg_isready"), "-q", "-t", str(client.connect_timeout),
            "-d", client.conninfo(check.get("database") or "postgres")]
    try:
        code, _, err = client.run(argv, timeout=timeout + 2, check=False, what="pg_isready")
    except PgError as exc:
        return None, str(exc)
    if code == 0:
        return 1.0, None
    if code in (1, 2):  # rejecting connections (starting, shutting down) / no response
        return 0.0, None
    return None, "pg_isready made no attempt (exit %d): %s" % (code, err.strip() or "bad connection options")


# --------------------------------------------------------------------------------------------------- command

def sample_command(check, timeout):
    try:
        proc = tracked_popen(list(check["argv"]), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    except OSError as exc:
        return None, "cannot run %s: %s" % (check["argv"][0], exc)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return None, "%s timed out after %gs" % (check["argv"][0], timeout)
    if proc.returncode != 0:
        last = (err.decode("utf-8", "replace").strip().splitlines() or ["(no output)"])[-1]
        return None, "%s failed (exit %d): %s" % (check["argv"][0], proc.returncode, last[:200])
    return as_value(out.decode("utf-8", "replace").strip()), None


_SAMPLERS = {
    "prometheus": sample_prometheus,
    "http": sample_http,
    "postgres": sample_postgres,
    "command": sample_command,
}
