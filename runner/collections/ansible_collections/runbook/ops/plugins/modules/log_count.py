#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook-runner maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: log_count
short_description: Count the recent log lines matching a pattern (a container's or a file's) and fail above a threshold
version_added: "0.1.0"
description:
  - Each check counts the lines matching C(pattern) (a Python regular expression, default C(ERROR|FATAL|panic)) in
    the recent logs of a C(container) (stdout and stderr through the Docker Engine API at O(docker_host)) or of a
    C(file) on the host, and fails when more than C(max) lines match.
  - Recent means the last C(minutes) minutes. A container's lines are those the engine logged in that time. In a
    file, a line counts by the first ISO 8601 time it holds in its first 64 characters (C(2026-12-02T17:05:09Z),
    C(2026-12-02 17:05:09,123+01:00); a time without a zone is the host's local time); a line without one belongs
    to the timed line before it (a stack trace), and lines before the first timed line belong to none. A file in
    which no line has a time is judged by its last C(lines) lines instead; so is any source when C(minutes) is 0.
    Only the last 64 MiB of a file are read.
  - Reads only; runs the same in check mode. Fails when a check fails; the results are returned either way.
author:
  - runbook-runner maintainers
options:
  checks:
    description: The logs to count, in order.
    type: list
    elements: dict
    required: true
    suboptions:
      name: {description: Name in results and reports; default C(errors in <container or file>)., type: str}
      container: {description: Container whose logs are read (give this or C(file))., type: str}
      file: {description: Log file on the host (give this or C(container))., type: path}
      pattern: {description: Regular expression a line must match to count., type: str, default: "ERROR|FATAL|panic"}
      ignore_case: {description: Match the pattern regardless of case., type: bool, default: false}
      minutes: {description: How far back lines count (0 - the last C(lines) lines)., type: int, default: 10}
      lines: {description: Lines judged when there is no time to go by., type: int, default: 1000}
      max: {description: Most matching lines accepted; more fail the check., type: int, default: 10}
  docker_host:
    description: Docker Engine endpoint for C(container) checks.
    type: str
    default: unix:///var/run/docker.sock
notes:
  - Supports check mode (it only reads).
"""

EXAMPLES = r"""
- name: No burst of errors in the backend's last 10 minutes (seed 002 - more than 10 fails)
  runbook.ops.log_count:
    checks:
      - {container: backend, minutes: 10, max: 10}
      - {file: /var/log/nginx/error.log, pattern: "\\[(crit|alert|emerg)\\]", max: 0}
"""

RETURN = r"""
checks: {description: "One C(name), C(ok), C(detail) per check.", returned: always, type: list, elements: dict}
results:
  description: "Per check - name, ok, detail, count, lines (lines judged), window (how they were chosen), samples (up to 5 matching lines, 200 characters each)."
  returned: always
  type: list
  elements: dict
healthy: {description: True when every check passed., returned: always, type: bool}
"""

import collections
import datetime
import os
import re
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.runbook.ops.plugins.module_utils.check_results import failures_text, summary
from ansible_collections.runbook.ops.plugins.module_utils.docker_api import DockerClient, DockerError

TAIL_BYTES = 64 * 1024 * 1024
STAMP_ZONE = 64  # a line's time is looked for in its first characters only
SAMPLES = 5
_STAMP = re.compile(r"(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:[.,](\d+))?\s?(Z|[+-]\d{2}:?\d{2})?")


def line_time(line):
    """Epoch seconds of the first ISO 8601 time in the line's first characters, or None."""
    match = _STAMP.search(line[:STAMP_ZONE])
    if match is None:
        return None
    day, clock, fraction, zone = match.groups()
    try:
        moment = datetime.datetime.strptime("%s %s" % (day, clock), "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None
    seconds = float("0." + fraction) if fraction else 0.0
    if zone is None:
        return time.mktime(moment.timetuple()) + seconds
    if zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        offset = datetime.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        moment -= sign * offset
    return moment.replace(tzinfo=datetime.timezone.utc).timestamp() + seconds


def recent_lines(lines, minutes, keep_lines, now=None):
    """(the lines that count, how they were chosen): those timed within the last `minutes` (untimed lines follow
    the timed one before them), or the last `keep_lines` when no line is timed or minutes is 0."""
    last = collections.deque(maxlen=max(keep_lines, 0))
    chosen, timed, inside = [], False, False
    since = (now if now is not None else time.time()) - minutes * 60
    for line in lines:
        last.append(line)
        if minutes <= 0:
            continue
        stamp = line_time(line)
        if stamp is not None:
            timed, inside = True, stamp >= since
        if inside:
            chosen.append(line)
    if minutes > 0 and timed:
        return chosen, "lines timed in the last %d minute%s" % (minutes, "" if minutes == 1 else "s")
    return list(last), "the last %d lines" % keep_lines


def file_lines(path, limit=TAIL_BYTES):
    """The lines of the file's last `limit` bytes (a partial first line dropped)."""
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > limit:
            handle.seek(size - limit)
            handle.readline()
        for raw in handle:
            yield raw.decode("utf-8", "replace").rstrip("\r\n")


def container_lines(client, name, minutes, keep_lines, now=None):
    """(the container's recent lines, how they were chosen); DockerError when there is no such container."""
    found = client.inspect_container(name)
    if found is None:
        raise DockerError("no container %s" % name, 404)
    if minutes > 0:
        since = (now if now is not None else time.time()) - minutes * 60
        text = client.logs_text(found["Id"], since=since)
        return text.splitlines(), "lines logged in the last %d minute%s" % (minutes, "" if minutes == 1 else "s")
    return client.logs_text(found["Id"], tail=keep_lines).splitlines(), "the last %d lines" % keep_lines


def source_of(check):
    return "container %s" % check["container"] if check.get("container") else "file %s" % check["file"]


def check_name(check):
    return check.get("name") or "errors in %s" % source_of(check)


def count_check(check, docker_host, now=None):
    result = {"name": check_name(check), "ok": False, "count": None, "lines": 0, "window": "", "samples": []}
    minutes, keep = int(check.get("minutes", 10)), int(check.get("lines") or 1000)
    pattern = re.compile(check.get("pattern") or "ERROR|FATAL|panic", re.IGNORECASE if check.get("ignore_case") else 0)
    try:
        if check.get("container"):
            lines, window = container_lines(DockerClient(docker_host), check["container"], minutes, keep, now=now)
        else:
            lines, window = recent_lines(file_lines(check["file"]), minutes, keep, now=now)
    except (DockerError, OSError) as exc:
        result["detail"] = "cannot read the logs of %s: %s" % (source_of(check), exc)
        return result
    matching = [line for line in lines if pattern.search(line)]
    limit = int(check.get("max", 10))
    result.update(count=len(matching), lines=len(lines), window=window, ok=len(matching) <= limit,
                  samples=[line[:200] for line in matching[:SAMPLES]])
    result["detail"] = "%d line%s match%s %r in %s of %s%s" % (
        len(matching), "" if len(matching) == 1 else "s", "es" if len(matching) == 1 else "", pattern.pattern,
        window, source_of(check), "" if result["ok"] else ", more than %d" % limit)
    return result


def validate(checks):
    for check in checks:
        if bool(check.get("container")) == bool(check.get("file")):
            raise ValueError("check %r must give one of container and file" % (check.get("name") or check))
        re.compile(check.get("pattern") or "ERROR|FATAL|panic")
        if int(check.get("max", 10)) < 0 or int(check.get("minutes", 10)) < 0:
            raise ValueError("check %r: max and minutes cannot be negative" % check_name(check))


def main():
    check_spec = dict(
        name=dict(type="str"),
        container=dict(type="str"),
        file=dict(type="path"),
        pattern=dict(type="str", default="ERROR|FATAL|panic"),
        ignore_case=dict(type="bool", default=False),
        minutes=dict(type="int", default=10),
        lines=dict(type="int", default=1000),
        max=dict(type="int", default=10),
    )
    module = AnsibleModule(
        argument_spec=dict(
            checks=dict(type="list", elements="dict", required=True, options=check_spec),
            docker_host=dict(type="str", default="unix:///var/run/docker.sock"),
        ),
        supports_check_mode=True,
    )
    checks = module.params["checks"]
    try:
        validate(checks)
    except (re.error, ValueError) as exc:
        module.fail_json(msg="invalid option: %s" % exc)
    results = [count_check(c, module.params["docker_host"]) for c in checks]
    failed = [r for r in results if not r["ok"]]
    if failed:
        module.fail_json(msg=failures_text(failed, len(results), "log"), results=results, checks=summary(results),
                         healthy=False)
    module.exit_json(changed=False, results=results, checks=summary(results), healthy=True,
                     msg="%d log check(s) passed" % len(results))


if __name__ == "__main__":
    main()
