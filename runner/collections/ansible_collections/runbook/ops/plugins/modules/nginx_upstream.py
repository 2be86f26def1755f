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
  - The state file is written before the upstream file - the switch C(pending) (what it replaces, what it writes),
    then the file, the test, the reload, and the state with the switch done - so a switch killed on the way is
    settled by the next call (finished when its file is in place, dropped when it is not) and C(to=previous)
    never goes one switch too far back. One switch of an upstream runs at a time on a host (an exclusive lock
    in O(state_dir)).
  - O(plan) resolves what the switch would write without writing it (C(content)); O(content) then writes exactly
    that text - the traffic_switch role records it as the step's intent in between, so that the step re-run
    after the control node died switches to the same file instead of resolving C(previous) again.
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
  content: {description: "The exact upstream file to write (what O(plan) returned); empty - resolve O(to).", type: str, default: ""}
  plan: {description: Resolve what would be written (returned as C(content)) and write nothing., type: bool, default: false}
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
content: {description: The upstream file the switch writes (wrote, or would write)., returned: always, type: str}
settled: {description: What was done about a switch an interrupted call left pending (empty - none)., returned: always, type: str}
"""

import contextlib
import datetime
import json
import os
import re

try:
    from ansible.module_utils.basic import AnsibleModule
except ImportError:  # imported as a plain library (tests): stdlib only
    AnsibleModule = None

from ansible_collections.runbook.ops.plugins.module_utils.backup_files import safe_file_part
from ansible_collections.runbook.ops.plugins.module_utils.live_files import put_file, run_command
from ansible_collections.runbook.ops.plugins.module_utils.safe_files import check_dir, check_target, ensure_dir, write_file
from ansible_collections.runbook.ops.plugins.module_utils.step_intents import IntentError, held_lock

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


def switch_target(params, before, active, state, path, state_path):
    """(colour, servers, file text) the upstream goes to: the exact text asked for (a step's recorded intent), the
    colour named, the other of two, or the text the previous switch replaced (recorded in the state file)."""
    upstream, colours, to = params.get("upstream") or "backend", params["colours"], params["to"]
    if params.get("content"):
        after = upstream_servers(params["content"], upstream)
        if after is None:
            raise SwitchFailed("the content asked for has no upstream %s block" % upstream)
        return colour_of(after, colours), after, params["content"]
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
        return colour_of(after, colours), after, new_text
    after = list(colours[to])
    return to, after, render(upstream, to, after, _now(), params.get("run_id") or "")


def _now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Upstream(object):
    """One upstream's live file and state file. The state is written before the live file: a `pending` switch
    (what it replaces, what it writes), then the file, nginx -t, the reload, and the state with the switch done;
    a switch found pending (the module was killed on the way) is settled first by the next call."""

    def __init__(self, params, check_mode):
        self.p = params
        self.check_mode = check_mode
        self.path, self.name = params["file"], params.get("upstream") or "backend"
        self.state_dir = params.get("state_dir") or "/var/lib/runbook/traffic"
        self.state_path = os.path.join(self.state_dir, safe_file_part(self.name) + ".json")
        for check, target in ((check_target, self.path), (check_dir, self.state_dir),
                              (check_target, self.state_path)):
            check(target)  # a planted link is refused before anything is switched
        self.state = load_state(self.state_path)
        self.had_state = os.path.exists(self.state_path)

    def read(self):
        try:
            with open(self.path) as handle:
                text = handle.read()
            return text, os.stat(self.path).st_mode & 0o7777
        except OSError as exc:
            raise SwitchFailed("cannot read %s: %s" % (self.path, exc))

    def save(self, state):
        """Write the state file (or, when it did not exist and nothing is to be kept, leave none)."""
        self.state = state
        if self.check_mode:
            return
        if not state and not self.had_state:
            if os.path.exists(self.state_path):
                os.unlink(self.state_path)
            return
        ensure_dir(self.state_dir, 0o755)
        write_file(self.state_path, (json.dumps(state, indent=2, sort_keys=True) + "\n").encode("utf-8"))

    def done(self, pending):
        """The state once a switch is done: active colour, the file it replaced (for to=previous), history."""
        history = (self.state.get("history") or [])[-(HISTORY_KEPT - 1):]
        history.append({"at": _now(), "from": pending["colour"], "to": pending["to"], "servers": pending["to_servers"],
                         "run_id": pending.get("run_id") or ""})
        return {"upstream": self.name, "file": self.path, "active": pending["to"], "history": history,
                "previous": {"colour": pending["colour"], "servers": pending["servers"],
                             "content": pending["content"]}}

    def without_pending(self):
        return {k: v for k, v in self.state.items() if k != "pending"}

    def put_back(self, text, mode, reload_too):
        write_keeping_mode(self.path, text, mode)
        if reload_too:
            run_command(self.p["reload_command"])

    def settle(self):
        """A switch left pending: finished when its file is in place (tested and reloaded again), else dropped."""
        pending = self.state.get("pending")
        if not pending:
            return ""
        current, mode = self.read()
        if current != pending.get("to_content"):
            self.save(self.without_pending())
            return "an interrupted switch that had not written the file was dropped"
        if self.check_mode:
            self.save(self.done(pending))  # in memory only: as it is once finished
            return "an interrupted switch would be finished (tested and reloaded)"
        if run_command(self.p["test_command"])[0] != 0 or run_command(self.p["reload_command"])[0] != 0:
            self.put_back(pending["content"], mode, reload_too=True)
            self.save(self.without_pending())
            return "an interrupted switch nginx rejects now was put back"
        self.save(self.done(pending))
        return "an interrupted switch was finished (tested and reloaded)"

    def apply(self, pending, current, mode):
        """Write the new file, test, reload; the state says what is going on at every moment."""
        self.save(dict(self.without_pending(), pending=pending))
        write_keeping_mode(self.path, pending["to_content"], mode)
        rejected = "%s rejects the new configuration (exit %d): %s; %s put back, nginx not reloaded"
        for command, reload_too, failure in (("test_command", False, rejected),
                                             ("reload_command", True, "%s failed (exit %d): %s; %s put back")):
            rc, out = run_command(self.p[command])
            if rc != 0:
                self.put_back(current, mode, reload_too=reload_too)
                self.save(self.without_pending())
                raise SwitchFailed(failure % (" ".join(self.p[command]), rc, out[-500:], self.path))
        self.save(self.done(pending))


@contextlib.contextmanager
def upstream_lock(params, check_mode):
    """One switch of an upstream at a time on this host (none in check mode: nothing is written)."""
    if check_mode:
        yield
        return
    state_dir = params.get("state_dir") or "/var/lib/runbook/traffic"
    check_dir(state_dir)
    try:
        with held_lock(state_dir, ".%s.lock" % safe_file_part(params.get("upstream") or "backend"),
                       what="upstream %s" % params.get("upstream")):
            yield
    except IntentError as exc:
        raise SwitchFailed(str(exc))


def switch(params, check_mode=False):
    check_params(params)
    check_mode = check_mode or bool(params.get("plan"))  # a plan writes nothing, as check mode
    with upstream_lock(params, check_mode):
        upstream = Upstream(params, check_mode)
        settled = upstream.settle()
        current, mode = upstream.read()
        before = upstream_servers(current, upstream.name)
        if before is None:
            raise SwitchFailed("%s has no upstream %s block" % (upstream.path, upstream.name))
        active = colour_of(before, params["colours"])
        target, after, new_text = switch_target(params, before, active, upstream.state, upstream.path,
                                                upstream.state_path)
        result = {"changed": False, "colour_before": active, "colour_after": target, "servers_before": before,
                  "servers_after": after, "file": upstream.path, "state_file": upstream.state_path, "tested": "",
                  "content": new_text, "settled": settled}
        if sorted(after) == sorted(before):
            result["msg"] = "upstream %s already serves %s (%s): nothing to do" % (
                upstream.name, target or "these servers", ", ".join(after))
            return result
        result["changed"] = True
        describe = "upstream %s: %s (%s) -> %s (%s)" % (upstream.name, active or "no colour", ", ".join(before),
                                                        target or "no colour", ", ".join(after))
        if check_mode:
            result["msg"] = "would switch %s, after %s" % (describe, " ".join(params["test_command"]))
            return result
        pending = {"colour": active, "servers": before, "content": current, "to": target, "to_servers": after,
                   "to_content": new_text, "run_id": params.get("run_id") or "", "at": _now()}
        upstream.apply(pending, current, mode)
    result["msg"] = "switched %s; nginx tested and reloaded" % describe
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            file=dict(type="path", required=True),
            upstream=dict(type="str", default="backend"),
            colours=dict(type="dict", required=True),
            to=dict(type="str", required=True),
            content=dict(type="str", default=""),
            plan=dict(type="bool", default=False),
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
