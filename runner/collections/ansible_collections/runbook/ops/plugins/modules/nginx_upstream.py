#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook-runner maintainers
# License: Apache-2.0
"""Blue/green switch of one nginx upstream: the new file is tested with nginx -t before any reload, the file it
replaced is kept so that the next switch can put it back exactly (instant switch back)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: nginx_upstream
short_description: Point an nginx upstream at one colour of servers (blue/green), tested before the reload
description:
  - Reads the upstream file and works out which colour it serves (the colour whose servers it lists, or none
    when it lists another set); writes the servers of the colour asked for through a C(.tmp) file and a rename,
    runs the test command (C(nginx -t)) and only then the reload command.
  - When the test fails, the file it replaced is put back and nginx is not reloaded, so traffic never moves to a
    configuration nginx rejects; when the reload fails, the old file is put back and nginx reloaded with it.
  - A state file per upstream records the colour and the exact content that was replaced, so C(to=previous)
    restores the file as it was before the last switch, whatever it held, and C(to=other) picks the colour that
    is not active (with exactly two colours).
  - Idempotent - switching to the colour already served changes nothing. In check mode, says what it would do.
version_added: "0.1.0"
author: runbook-runner maintainers
options:
  file: {description: The upstream file nginx includes., type: path, required: true}
  upstream: {description: Name of the upstream block., type: str, default: backend}
  colours:
    description: Colour -> list of C(host:port) servers.
    type: dict
    required: true
  to: {description: "A colour, C(other) (the colour that is not active), or C(previous) (the file before the last switch).", type: str, required: true}
  state_dir: {description: Where the state file of each upstream is kept., type: path, default: /var/lib/runbook/traffic}
  test_command: {description: Command that validates the whole nginx configuration (argv list)., type: list, elements: str, default: [nginx, -t, -q]}
  reload_command: {description: Command that makes nginx load the configuration (argv list)., type: list, elements: str, default: [nginx, -s, reload]}
  run_id: {description: Run id recorded in the state file's history., type: str, default: ""}
"""

EXAMPLES = r"""
- name: Send the traffic back to blue
  runbook.ops.nginx_upstream:
    file: /etc/nginx/conf.d/upstream-backend.conf
    colours: {blue: ["127.0.10.11:8080"], green: ["127.0.10.12:8080"]}
    to: blue
"""

RETURN = r"""
colour_before: {description: Colour served before (null when the file listed no colour's servers)., returned: always, type: str}
colour_after: {description: Colour served after (null when C(to=previous) restored a file that lists no colour)., returned: always, type: str}
servers_before: {description: Servers the upstream listed before., returned: always, type: list}
servers_after: {description: Servers the upstream lists after., returned: always, type: list}
tested: {description: Output of the test command when it failed, else empty., returned: always, type: str}
"""

import datetime
import json
import os
import re

try:
    from ansible.module_utils.basic import AnsibleModule
except ImportError:  # imported as a plain library (tests): stdlib only
    AnsibleModule = None

from ansible_collections.runbook.ops.plugins.module_utils.backup_files import fsync_path, safe_file_part, write_atomic
from ansible_collections.runbook.ops.plugins.module_utils.live_files import put_file, run_command

SERVER = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]*):[0-9]{1,5}$")
NAME = re.compile(r"^[A-Za-z0-9_-]+$")
HISTORY_KEPT = 20


class SwitchFailed(Exception):
    pass


def upstream_servers(text, upstream):
    """Servers listed in `upstream NAME { ... }` of an nginx file (only the address, parameters dropped), or None
    when the file has no such block."""
    block = re.search(r"(?ms)^\s*upstream\s+%s\s*\{(.*?)\}" % re.escape(upstream), text)
    if block is None:
        return None
    body = re.sub(r"#[^\n]*", "", block.group(1))
    return [m.group(1) for m in re.finditer(r"(?m)^\s*server\s+([^\s;]+)[^;]*;", body)]


def colour_of(servers, colours):
    if servers is None:
        return None
    for colour in sorted(colours):
        if sorted(colours[colour]) == sorted(servers):
            return colour
    return None


def render(upstream, colour, servers, stamp, run_id):
    lines = ["# Managed by runbook (traffic_switch): upstream %s serves %s since %s%s." % (
        upstream, colour, stamp, " (run %s)" % run_id if run_id else ""),
        "upstream %s {" % upstream]
    lines += ["    server %s;" % server for server in servers]
    lines.append("}")
    return "\n".join(lines) + "\n"


def check_params(params):
    colours = params.get("colours") or {}
    if not colours:
        raise SwitchFailed("colours is empty: name at least one colour and its servers")
    if not NAME.match(params.get("upstream") or ""):
        raise SwitchFailed("upstream %r is not a plain name" % params.get("upstream"))
    for colour, servers in colours.items():
        if not NAME.match(colour) or colour in ("other", "previous"):
            raise SwitchFailed("colour %r is not a plain name (other and previous are reserved)" % colour)
        if not isinstance(servers, list) or not servers:
            raise SwitchFailed("colour %s needs a list of host:port servers" % colour)
        bad = [s for s in servers if not isinstance(s, str) or not SERVER.match(s)]
        if bad:
            raise SwitchFailed("colour %s: %s is not host:port" % (colour, ", ".join(repr(b) for b in bad)))
    to = params.get("to") or ""
    if to not in colours and to not in ("other", "previous"):
        raise SwitchFailed("to is %r: a colour (%s), other or previous" % (to, ", ".join(sorted(colours))))


def load_state(path):
    try:
        with open(path) as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_keeping_mode(path, text, mode):
    put_file(path, text.encode("utf-8"), mode)


def switch(params, check_mode=False):
    check_params(params)
    path, upstream, colours = params["file"], params.get("upstream") or "backend", params["colours"]
    state_dir = params.get("state_dir") or "/var/lib/runbook/traffic"
    state_path = os.path.join(state_dir, safe_file_part(upstream) + ".json")
    try:
        with open(path) as handle:
            current = handle.read()
        mode = os.stat(path).st_mode & 0o7777
    except OSError as exc:
        raise SwitchFailed("cannot read %s: %s" % (path, exc))
    before = upstream_servers(current, upstream)
    if before is None:
        raise SwitchFailed("%s has no upstream %s block" % (path, upstream))
    active = colour_of(before, colours)
    state = load_state(state_path)
    to = params["to"]
    if to == "other":
        if len(colours) != 2:
            raise SwitchFailed("to=other needs exactly two colours, not %d" % len(colours))
        if active is None:
            raise SwitchFailed("%s lists %s, which is no colour's servers: cannot tell the other colour; name it"
                               % (path, ", ".join(before) or "no server"))
        to = [c for c in colours if c != active][0]
    if to == "previous":
        previous = state.get("previous") or {}
        if not previous.get("content"):
            raise SwitchFailed("no earlier switch of upstream %s is recorded in %s: nothing to switch back to"
                               % (upstream, state_path))
        new_text = previous["content"]
        after = upstream_servers(new_text, upstream) or []
        target = colour_of(after, colours)
    else:
        target, after = to, list(colours[to])
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        new_text = render(upstream, to, after, stamp, params.get("run_id") or "")
    result = {"changed": False, "colour_before": active, "colour_after": target, "servers_before": before,
              "servers_after": after, "file": path, "state_file": state_path, "tested": ""}
    if sorted(after) == sorted(before):
        result["msg"] = "upstream %s already serves %s (%s): nothing to do" % (
            upstream, target or "these servers", ", ".join(after))
        return result
    result["changed"] = True
    describe = "upstream %s: %s (%s) -> %s (%s)" % (upstream, active or "no colour", ", ".join(before),
                                                    target or "no colour", ", ".join(after))
    if check_mode:
        result["msg"] = "would switch %s, after %s" % (describe, " ".join(params["test_command"]))
        return result
    write_keeping_mode(path, new_text, mode)
    rc, out = run_command(params["test_command"])
    if rc != 0:
        write_keeping_mode(path, current, mode)
        result.update(changed=False, colour_after=active, servers_after=before, tested=out[-2000:])
        raise SwitchFailed("%s rejects the new configuration (exit %d): %s; %s put back, nginx not reloaded" % (
            " ".join(params["test_command"]), rc, out[-500:], path))
    rc, out = run_command(params["reload_command"])
    if rc != 0:
        write_keeping_mode(path, current, mode)
        run_command(params["reload_command"])
        raise SwitchFailed("%s failed (exit %d): %s; %s put back" % (
            " ".join(params["reload_command"]), rc, out[-500:], path))
    history = (state.get("history") or [])[-(HISTORY_KEPT - 1):]
    history.append({"at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "from": active, "to": target, "servers": after, "run_id": params.get("run_id") or ""})
    new_state = {"upstream": upstream, "file": path, "active": target,
                 "previous": {"colour": active, "servers": before, "content": current}, "history": history}
    if not os.path.isdir(state_dir):
        os.makedirs(state_dir, 0o755)
        fsync_path(os.path.dirname(state_dir.rstrip("/")) or "/")
    write_atomic(state_path, (json.dumps(new_state, indent=2, sort_keys=True) + "\n").encode("utf-8"))
    result["msg"] = "switched %s; nginx tested and reloaded" % describe
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            file=dict(type="path", required=True),
            upstream=dict(type="str", default="backend"),
            colours=dict(type="dict", required=True),
            to=dict(type="str", required=True),
            state_dir=dict(type="path", default="/var/lib/runbook/traffic"),
            test_command=dict(type="list", elements="str", default=["nginx", "-t", "-q"]),
            reload_command=dict(type="list", elements="str", default=["nginx", "-s", "reload"]),
            run_id=dict(type="str", default=""),
        ),
        supports_check_mode=True,
    )
    try:
        result = switch(module.params, check_mode=module.check_mode)
    except (SwitchFailed, OSError) as exc:
        module.fail_json(msg="traffic switch failed: %s" % exc)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
