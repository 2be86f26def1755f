#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook-runner maintainers
# License: Apache-2.0
"""What a run's work left on this host, once every process of it has ended."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: work_state
short_description: Wait until a run's work on this host has ended (ending what is left), and say what it left
description:
  - Every task of a rendered step runs with the environment variables C(RUNBOOK_WORK) (the run id) and
    C(RUNBOOK_WORK_HOST) (the inventory host), and so does every process it starts. After a task failed by
    Ansible's timeout, or after a run was cancelled, this module finds the processes of that run on the host
    (other than itself and its parents) and tells them the run is gone (SIGHUP, with O(stop)); a module of the
    collection then stops its own work, cleans up and records what it left; a plain command ends. It waits up
    to O(wait) seconds for them to end, then ends what is still there (SIGTERM, SIGKILL 5 seconds later).
  - Returns the state the last module of the run recorded on the host (C(state)), and whether the work is
    confirmed ended (C(ended)). A module recorded as running whose process is gone (killed) is recorded as ended
    by this module, keeping what it had recorded that it leaves.
  - In check mode it only looks.
version_added: "0.2.0"
author: runbook-runner maintainers
options:
  run_id: {description: "Run whose work to look at; empty - this task's own run (C(RUNBOOK_WORK))", type: str, default: ""}
  host: {description: "Inventory host of that work; empty - this task's (C(RUNBOOK_WORK_HOST))", type: str, default: ""}
  stop: {description: Tell the run's processes first that the run is gone (SIGHUP)., type: bool, default: true}
  wait: {description: Seconds to wait for the work to end (after O(stop)) before ending it., type: float, default: 45}
  end: {description: End the processes still running after O(wait)., type: bool, default: true}
  dir: {description: "State directory (empty - C(RUNBOOK_WORK_DIR) or /var/lib/runbook/work).", type: str, default: ""}
"""

EXAMPLES = r"""
- name: Ask the host what the restore left (Ansible stopped waiting for it)
  runbook.ops.work_state:
    wait: 60
  register: left
"""

RETURN = r"""
ended: {description: Whether no process of the run is left on the host., returned: always, type: bool}
state: {description: "What the last module of the run recorded (module, status, stopped, failed, msg, left); {} when none.", returned: always, type: dict}
ended_processes: {description: "Processes this module ended ({pid, command}).", returned: always, type: list}
processes: {description: "Processes of the run still running ({pid, command}).", returned: always, type: list}
msg: {description: What the work left, in one sentence., returned: always, type: str}
"""

import os
import signal
import time

try:
    from ansible.module_utils.basic import AnsibleModule
except ImportError:  # imported as a plain library (tests): stdlib only
    AnsibleModule = None

from ansible_collections.runbook.ops.plugins.module_utils.host_work import (
    ENDED, RUNNING, TERM_GRACE_S, WORK_ENV, WORK_HOST_ENV, read_state, state_path, write_state,
)

PROC = "/proc"
POLL_S = 0.25


def read_environ(pid, proc=PROC):
    try:
        with open(os.path.join(proc, str(pid), "environ"), "rb") as handle:
            raw = handle.read()
    except OSError:
        return None
    return dict(item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)


def parent_of(pid, proc=PROC):
    try:
        with open(os.path.join(proc, str(pid), "stat"), "rb") as handle:
            stat = handle.read()
        fields = stat.rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return 0
    return int(fields[1]) if fields[0] != b"Z" else -1


def command_of(pid, proc=PROC):
    try:
        with open(os.path.join(proc, str(pid), "cmdline"), "rb") as handle:
            text = handle.read().replace(b"\0", b" ").strip().decode("utf-8", "replace")
    except OSError:
        return ""
    return text[:120]


def ancestors(pid, proc=PROC):
    found = set()
    while pid > 1 and pid not in found:
        found.add(pid)
        pid = parent_of(pid, proc)
    return found


def work_processes(run_id, host, proc=PROC, me=None):
    """Live processes whose environment names this run (and host), other than this process and its parents."""
    mine = ancestors(me if me is not None else os.getpid(), proc)
    wanted = {WORK_ENV.encode(): run_id.encode("utf-8")}
    if host:
        wanted[WORK_HOST_ENV.encode()] = host.encode("utf-8")
    found = []
    for name in os.listdir(proc):
        if not name.isdigit() or int(name) in mine:
            continue
        env = read_environ(name, proc)
        if env is None or any(env.get(k) != v for k, v in wanted.items()):
            continue
        if parent_of(int(name), proc) >= 0:  # not a zombie
            found.append(int(name))
    return sorted(found)


def wait_gone(list_them, seconds, sleep=time.sleep, clock=time.monotonic):
    deadline = clock() + seconds
    left = list_them()
    while left and clock() < deadline:
        sleep(POLL_S)
        left = list_them()
    return left


def send(pids, sig):
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def end_processes(pids, list_them, sleep=time.sleep):
    """SIGTERM, then SIGKILL after TERM_GRACE_S; the processes still there after that."""
    for sig, grace in ((signal.SIGTERM, TERM_GRACE_S), (signal.SIGKILL, 2.0)):
        send(pids, sig)
        pids = wait_gone(list_them, grace, sleep)
        if not pids:
            break
    return pids


def wait_for_work(list_them, module_pid, wait, grace, proc=PROC, sleep=time.sleep, clock=time.monotonic):
    """Wait until the run's processes are gone. The tree of the collection's module that recorded the state (it
    stops and cleans up by itself) gets `wait` seconds; any other process (a plain command, perhaps deaf to
    SIGHUP) `grace` seconds, then SIGTERM and SIGKILL. What is still there after `wait`."""
    started = clock()
    ended_plain_at = None
    left = list_them()
    while left and clock() - started < wait:
        plain = [p for p in left if module_pid not in ancestors(p, proc)]
        elapsed = clock() - started
        if plain and ended_plain_at is None and elapsed >= grace:
            send(plain, signal.SIGTERM)
            ended_plain_at = elapsed
        elif plain and ended_plain_at is not None and elapsed >= ended_plain_at + TERM_GRACE_S:
            send(plain, signal.SIGKILL)
        sleep(POLL_S)
        left = list_them()
    return left


def settle_state(path, live):
    """The recorded state; a module recorded as running whose process is gone is recorded as ended (killed)."""
    state = read_state(path) or {}
    if state.get("status") == RUNNING and int(state.get("pid") or 0) not in live:
        state.update(status=ENDED, stopped=state.get("stopped") or "killed", failed=True,
                     msg="%s was killed before it recorded its end" % state.get("module", "the module"))
        write_state(path, state)
    return state


def summary(run_id, ended, state, ended_procs, left_procs):
    parts = []
    if state.get("module"):
        parts.append(state.get("msg") or "%s %s" % (state["module"], state.get("status", "")))
    if ended_procs:
        parts.append("ended %d process(es) of the run: %s" % (
            len(ended_procs), ", ".join(p["command"] or str(p["pid"]) for p in ended_procs[:3])))
    if not ended:
        parts.append("still running: %s" % ", ".join("%d %s" % (p["pid"], p["command"]) for p in left_procs[:3]))
    head = "host work of run %s %s" % (run_id, "ended" if ended else "NOT confirmed ended")
    return head + (": " + "; ".join(parts) if parts else "")


def run(params, check_mode=False, proc=PROC, sleep=time.sleep):
    run_id = params.get("run_id") or os.environ.get(WORK_ENV, "")
    host = params.get("host") or os.environ.get(WORK_HOST_ENV, "")
    if not run_id:
        return {"changed": False, "ended": False, "state": {}, "processes": [], "ended_processes": [],
                "msg": "no run id (RUNBOOK_WORK is not set): what the work left is not known"}

    def list_them():
        return work_processes(run_id, host, proc)

    path = state_path(run_id, host, params.get("dir") or None)
    recorded = read_state(path) or {}
    module_pid = int(recorded.get("pid") or 0) if recorded.get("status") == RUNNING else 0
    first = list_them()
    commands = dict((pid, command_of(pid, proc)) for pid in first)
    acting = bool(first) and not check_mode
    wait = float(params.get("wait") or 0)
    if acting and params.get("stop", True):
        send(first, signal.SIGHUP)  # the run is gone: the collection's modules stop and clean up, commands end
        left = wait_for_work(list_them, module_pid, wait, TERM_GRACE_S if params.get("end", True) else wait, proc,
                             sleep)
    else:
        left = wait_gone(list_them, wait, sleep)
    if left and acting and params.get("end", True):
        left = end_processes(left, list_them, sleep)
    ended_procs = [{"pid": p, "command": commands.get(p, "")} for p in first if p not in left] if acting else []
    left_procs = [{"pid": p, "command": commands.get(p) or command_of(p, proc)} for p in left]
    state = settle_state(path, set(left)) if not check_mode else recorded
    ended = not left
    return {"changed": bool(ended_procs), "ended": ended, "state": state, "processes": left_procs,
            "ended_processes": ended_procs, "msg": summary(run_id, ended, state, ended_procs, left_procs)}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            run_id=dict(type="str", default=""),
            host=dict(type="str", default=""),
            stop=dict(type="bool", default=True),
            wait=dict(type="float", default=45),
            end=dict(type="bool", default=True),
            dir=dict(type="str", default=""),
        ),
        supports_check_mode=True,
    )
    module.exit_json(**run(module.params, module.check_mode))


if __name__ == "__main__":
    main()
