# -*- coding: utf-8 -*-
# Copyright: runbook-runner maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""HTTP requests and what the runbook.ops HTTP modules (http_check, http_call, http_latency) compare in answers.

Durations, expected statuses, JSON lookups (dotted keys and JSON paths such as ``$.items[0].id``), the ``${name}``
references a later call makes to values an earlier one extracted, one request with ``urllib`` and the redaction
of secret header values. Standard library only.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re
import ssl
import time
import urllib.error
import urllib.request

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
REDACTED = "********"
ALWAYS_SECRET_HEADERS = ("authorization", "proxy-authorization")


def parse_duration(value):
    """``1s`` -> 1.0, ``500ms`` -> 0.5, ``1m30s`` -> 90.0, ``2`` / 2 / 2.5 -> seconds. ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("invalid duration %r" % (value,))
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("invalid duration %r (negative)" % (value,))
        return float(value)
    text = str(value).strip().lower()
    if re.match(r"^\d+(\.\d+)?$", text):
        return float(text)
    if not text or _DURATION.sub("", text) != "":
        raise ValueError("invalid duration %r (use e.g. 500ms, 1s, 1m30s, 2h)" % (value,))
    return sum(float(n) * _UNITS[unit] for n, unit in _DURATION.findall(text))


def expected_statuses(status):
    if status is None:
        return [200]
    if isinstance(status, (list, tuple)):
        return [int(s) for s in status]
    return [int(status)]


def as_list(value):
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [str(value)]


MISSING = object()


def lookup(data, key):
    """A key of a JSON object; a dotted key looks into nested objects (and list indexes) when not a key itself.
    A key starting with ``$`` is a JSON path (json_path)."""
    if isinstance(data, dict) and key in data:
        return data[key]
    if isinstance(key, str) and key.startswith("$"):
        try:
            return json_path(data, key)
        except ValueError:
            pass
    current = data
    for part in key.split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return MISSING
    return current


_PATH_STEP = re.compile(r"""\.([A-Za-z_][A-Za-z0-9_-]*)|\[(-?\d+)\]|\[['"]([^'"]*)['"]\]""")


def path_steps(path):
    """``$.items[0]['a b'].id`` -> ["items", 0, "a b", "id"]; ValueError when it is not such a path."""
    if not isinstance(path, str) or not path.startswith("$"):
        raise ValueError("JSON path %r must start with $" % (path,))
    steps, pos = [], 1
    while pos < len(path):
        match = _PATH_STEP.match(path, pos)
        if match is None:
            raise ValueError("JSON path %r: cannot read %r (use $.key, $.list[0] or $['key'])" % (path, path[pos:]))
        name, index, quoted = match.groups()
        steps.append(int(index) if index is not None else (name if name is not None else quoted))
        pos = match.end()
    return steps


def json_path(data, path):
    """The value at a JSON path, or MISSING."""
    current = data
    for step in path_steps(path):
        if isinstance(step, int) and isinstance(current, list) and -len(current) <= step < len(current):
            current = current[step]
        elif isinstance(step, str) and isinstance(current, dict) and step in current:
            current = current[step]
        else:
            return MISSING
    return current


_REFERENCE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class UnknownReference(ValueError):
    """A call refers to a value no earlier call extracted."""


def substitute(value, variables):
    """``${name}`` in every string of value (dicts and lists too) replaced by what an earlier call extracted; a
    string that is only ``${name}`` takes the value itself (a number stays a number); ``$$`` is a literal $."""
    if isinstance(value, dict):
        return dict((k, substitute(v, variables)) for k, v in value.items())
    if isinstance(value, list):
        return [substitute(v, variables) for v in value]
    if not isinstance(value, str) or "$" not in value:
        return value
    whole = _REFERENCE.fullmatch(value)
    if whole is not None and whole.group(1) is not None:
        return _variable(whole.group(1), variables)

    def replace(match):
        if match.group(1) is None:
            return "$"
        found = _variable(match.group(1), variables)
        return found if isinstance(found, str) else json.dumps(found)

    return _REFERENCE.sub(replace, value)


def _variable(name, variables):
    if name not in variables:
        raise UnknownReference("uses ${%s}, which no earlier call extracted" % name)
    return variables[name]


def values_match(expected, actual):
    if expected == actual and type(expected) is type(actual):
        return True
    if isinstance(expected, bool) or isinstance(actual, bool):
        return json.dumps(actual) == (json.dumps(expected) if not isinstance(expected, str) else expected.strip().lower())
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        return expected == actual
    if isinstance(expected, str) and isinstance(actual, (int, float)):
        return expected.strip() in (json.dumps(actual), str(actual))
    if isinstance(actual, str) and isinstance(expected, (int, float)):
        return actual.strip() in (json.dumps(expected), str(expected))
    return expected == actual


def body_text(body):
    return body.decode("utf-8", "replace") if isinstance(body, bytes) else (body or "")


def evaluate(check, status, body, elapsed_ms, error=None):
    """What did not match, as a list of short sentences (empty when the check passed)."""
    if error is not None:
        return [error]
    problems = []
    wanted = expected_statuses(check.get("status"))
    if status not in wanted:
        problems.append("status %s, expected %s" % (status, " or ".join(str(s) for s in wanted)))
    text = body_text(body)
    for needle in as_list(check.get("body_contains")):
        if needle not in text:
            problems.append("body does not contain %r" % needle)
    expected_json = check.get("json") or {}
    if expected_json:
        try:
            data = json.loads(text)
        except ValueError:
            problems.append("body is not JSON (%r)" % text[:80])
        else:
            for key, expected in expected_json.items():
                actual = lookup(data, key)
                if actual is MISSING:
                    problems.append("json %s missing" % key)
                elif not values_match(expected, actual):
                    problems.append("json %s is %s, expected %s" % (key, json.dumps(actual), json.dumps(expected)))
    max_ms = check.get("max_ms")
    if max_ms is not None and elapsed_ms is not None and elapsed_ms > max_ms:
        problems.append("took %d ms, limit %d ms" % (elapsed_ms, max_ms))
    return problems


def extract(extracts, body):
    """(values, problems): each name's value at its JSON path (or dotted key) in the JSON body."""
    if not extracts:
        return {}, []
    text = body_text(body)
    try:
        data = json.loads(text)
    except ValueError:
        return {}, ["cannot extract %s: body is not JSON (%r)" % (", ".join(sorted(extracts)), text[:80])]
    values, problems = {}, []
    for name, path in extracts.items():
        found = lookup(data, str(path))
        if found is MISSING:
            problems.append("cannot extract %s: %s not in the response" % (name, path))
        else:
            values[name] = found
    return values, problems


def check_name(check):
    return check.get("name") or "%s %s" % ((check.get("method") or "GET").upper(), check["url"])


def perform(check, timeout):
    """One request: (status, body bytes, elapsed_ms, error text or None)."""
    method = (check.get("method") or "GET").upper()
    headers = dict(check.get("headers") or {})
    data = check.get("body")
    if isinstance(data, (dict, list)):
        data = json.dumps(data).encode("utf-8")
        headers.setdefault("Content-Type", "application/json")
    elif data is not None:
        data = str(data).encode("utf-8")
    request = urllib.request.Request(check["url"], data=data, method=method, headers=headers)
    context = None
    if check["url"].lower().startswith("https") and check.get("validate_certs") is False:
        context = ssl._create_unverified_context()  # noqa: S323 - the operator asked for it
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            body = response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        body = exc.read() or b""
        status = exc.code
    except (urllib.error.URLError, OSError, ValueError) as exc:
        elapsed_ms = int((time.monotonic() - started) * 1000)
        reason = getattr(exc, "reason", exc)
        return None, b"", elapsed_ms, "no response: %s" % (reason,)
    elapsed_ms = int((time.monotonic() - started) * 1000)
    return status, body, elapsed_ms, None


def secret_values(headers, secret_names=()):
    """The values of the headers that must never be shown: Authorization (and Proxy-Authorization) always, and
    those named (case-insensitively) in secret_names; for a ``Bearer x`` value, ``x`` as well."""
    names = set(ALWAYS_SECRET_HEADERS) | set(str(n).lower() for n in secret_names or ())
    values = set()
    for key, value in (headers or {}).items():
        if str(key).lower() in names and value not in (None, ""):
            text = str(value)
            values.add(text)
            scheme, _, credential = text.partition(" ")
            if credential.strip() and scheme.isalpha():
                values.add(credential.strip())
    return sorted(values, key=len, reverse=True)


def redact(value, secrets):
    """value with every occurrence of every secret replaced by REDACTED (strings in dicts and lists too)."""
    if not secrets:
        return value
    if isinstance(value, dict):
        return dict((k, redact(v, secrets)) for k, v in value.items())
    if isinstance(value, list):
        return [redact(v, secrets) for v in value]
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, REDACTED)
    return value


def redacted_headers(headers, secret_names=()):
    names = set(ALWAYS_SECRET_HEADERS) | set(str(n).lower() for n in secret_names or ())
    return dict((k, REDACTED if str(k).lower() in names else v) for k, v in (headers or {}).items())
