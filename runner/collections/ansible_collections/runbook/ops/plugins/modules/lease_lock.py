#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook-runner maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: lease_lock
short_description: A lease lock stored on the managed host, so two runbook runs never act on one host at once
version_added: "0.1.0"
description:
  - Keeps a lease in C(<path>/<name>.json) on the host with the holder's C(run_id), C(owner), the C(pid) of the
    control-node process, the C(control_host), C(acquired_at) and C(expires_at) (UTC).
  - O(action=acquire) creates the lease exclusively - the lease is written to a temporary file created with
    C(O_EXCL), fsynced, then hard-linked to its name, which fails when the name exists just as C(O_EXCL) does,
    so a lease file is never seen half-written. It fails, returning the holder, when a live lease of another
    run exists. A lease past its expiry (or an unreadable one, left by a crash mid-write) is taken over and
    the old lease is returned in RV(taken_over). Acquiring again with the same O(run_id) extends the lease.
  - O(action=renew) extends the lease of the same O(run_id); it fails when the lease is gone or held by another run.
  - O(action=release) removes the lease only when it belongs to O(run_id); it fails when another run holds it.
    Releasing a lease that does not exist changes nothing.
  - O(action=list) returns every lease kept in O(path) (RV(leases)), whether it is live and how long it still lives.
  - O(action=force_release) removes the lease O(name) whatever run holds it (the operator's way out) and returns
    it in RV(released).
  - Expiry is measured on the host that keeps the lease, by durations, never by comparing two machines' wall
    clocks. Each acquire and renew records the host's boot id and its monotonic clock; while the host runs in
    that boot, the lease expires when more than C(ttl) seconds passed on the monotonic clock since the last
    renewal, so a wall clock that jumps expires nothing. After a reboot it expires by the wall clock
    (C(expires_at)).
  - The holder's control-node process is recorded as its boot id, pid namespace and the process's start time
    besides its pid, so the runner can tell a holder that is provably dead from one it cannot see.
  - Every action runs under an exclusive C(fcntl.flock) on C(<path>/.<name>.guard), so concurrent acquires,
    take-overs and releases on one host are serialised - exactly one of many racing runs wins.
  - Uses the Python standard library only.
author:
  - runbook-runner maintainers
options:
  name:
    description: Lock name (file name of the lease); C(host) for the default one-run-per-host lock.
    type: str
    default: host
  action:
    description: What to do.
    type: str
    default: acquire
    choices: [acquire, renew, release, query, list, force_release]
  run_id:
    description: Id of the run that takes, renews or releases the lease (required for those actions).
    type: str
    default: ""
  owner:
    description: Who runs it (user@control-host).
    type: str
    default: ""
  pid:
    description: Process id of the runbook runner on the control node.
    type: int
    default: 0
  control_host:
    description: Host name of the control node.
    type: str
    default: ""
  control_boot_id:
    description: Boot id of the control node (C(/proc/sys/kernel/random/boot_id)).
    type: str
    default: ""
  pid_start:
    description: Start time of the control-node process (C(/proc/PID/stat) field 22, clock ticks since boot).
    type: int
    default: 0
  pid_ns:
    description: PID namespace of the control-node process (C(readlink /proc/self/ns/pid)).
    type: str
    default: ""
  ttl:
    description: Seconds the lease lives without renewal.
    type: int
    default: 900
  path:
    description: Directory of the lease files (created when missing, mode 0755).
    type: path
    default: /var/lib/runbook/locks
  take_over:
    description:
      - Run ids whose live leases may be replaced, because the caller knows their control-node process died
        (the runner checks this on its own control node before asking).
    type: list
    elements: str
    default: []
notes:
  - Supports check mode - it reports what it would do without writing.
"""

EXAMPLES = r"""
- name: Take the host lease for this run
  runbook.ops.lease_lock:
    name: host
    action: acquire
    run_id: "{{ runbook_run_id }}"
    owner: oncall@control
    pid: 4242
    control_host: control
    ttl: 1800

- name: Give it back
  runbook.ops.lease_lock:
    name: host
    action: release
    run_id: "{{ runbook_run_id }}"
"""

RETURN = r"""
acquired:
  description: Whether this run holds the lease after the task.
  returned: always
  type: bool
lease:
  description:
    - The lease as stored (run_id, owner, pid, control_host, control_boot_id, pid_start, pid_ns, acquired_at,
      renewed_at, expires_at, ttl, host_boot_id, renewed_mono).
  returned: when the run holds it
  type: dict
leases:
  description: Every lease in O(path) - name, lease, live, expires_in_s (negative once expired).
  returned: with O(action=list)
  type: list
  elements: dict
released:
  description: The lease removed (none when there was none).
  returned: with O(action=release) or O(action=force_release)
  type: dict
holder:
  description: The lease of the run that holds the lock, when that is another run.
  returned: when held by another run (also on failure)
  type: dict
taken_over:
  description: An expired (or unreadable) lease that this acquire replaced.
  returned: when a stale lease was taken over
  type: dict
path:
  description: Path of the lease file.
  returned: always
  type: str
"""

import contextlib
import datetime
import errno
import json
import os
import re
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.runbook.ops.plugins.module_utils.backup_files import fsync_path
from ansible_collections.runbook.ops.plugins.module_utils.state_files import exclusive_lock, write_json

FORMAT = 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"
HOLDER_FIELDS = (("control_boot_id", ""), ("pid_start", 0), ("pid_ns", ""))


class LeaseError(Exception):
    """The action cannot be done; holder is the lease in the way (or None)."""

    def __init__(self, message, holder=None):
        super(LeaseError, self).__init__(message)
        self.holder = holder


def iso(epoch):
    moment = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (moment.microsecond // 1000)


class Clock(object):
    """This host's clocks at one moment: the wall clock (epoch seconds), the monotonic clock (seconds since
    boot, never stepped) and the boot it counts from."""

    def __init__(self, wall, mono, boot):
        self.wall = wall
        self.mono = mono
        self.boot = boot


def boot_id():
    try:
        with open(BOOT_ID_PATH, "r") as handle:
            return handle.read().strip()
    except (IOError, OSError):
        return ""


def read_clock():
    return Clock(time.time(), time.monotonic(), boot_id())


def lease_path(lock_dir, name):
    if not _NAME.match(name or ""):
        raise LeaseError("invalid lock name %r (letters, digits, '.', '_', '-')" % (name,))
    return os.path.join(lock_dir, name + ".json")


def _fsync_dir(directory):
    with contextlib.suppress(OSError):  # the lease file is in place either way
        fsync_path(directory)


def guarded(lock_dir, name):
    """Exclusive flock on <lock_dir>/.<name>.guard for the whole read-decide-write (never deleted)."""
    return exclusive_lock(lock_dir, "." + name + ".guard")


def read_lease(path):
    """The stored lease; None when there is none; {'unreadable': reason} when it cannot be parsed."""
    try:
        with open(path, "r") as handle:
            text = handle.read()
    except (IOError, OSError) as exc:
        if exc.errno == errno.ENOENT:
            return None
        return {"unreadable": str(exc)}
    try:
        lease = json.loads(text)
    except ValueError as exc:
        return {"unreadable": "not JSON (%s)" % exc}
    if not isinstance(lease, dict) or not lease.get("run_id"):
        return {"unreadable": "not a lease"}
    return lease


def expires_epoch(lease):
    value = lease.get("expires_epoch")
    if isinstance(value, (int, float)):
        return float(value)
    text = lease.get("expires_at")
    if isinstance(text, str) and text:
        try:
            parsed = datetime.datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")
            return parsed.replace(tzinfo=datetime.timezone.utc).timestamp()
        except ValueError:
            pass
    return 0.0


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def seconds_left(lease, now):
    """How long the lease still lives (<= 0: expired). In the boot it was last renewed in: its ttl less the time
    since that renewal on the monotonic clock. After a reboot, or for a lease that did not record the clock: until
    its expiry by the wall clock."""
    ttl, renewed = lease.get("ttl"), lease.get("renewed_mono")
    if now.boot and lease.get("host_boot_id") == now.boot and _number(ttl) and _number(renewed):
        return float(ttl) - (now.mono - float(renewed))
    return expires_epoch(lease) - now.wall


def is_live(lease, now):
    return lease is not None and "unreadable" not in lease and seconds_left(lease, now) > 0


def describe(lease):
    if lease is None:
        return "nobody"
    if "unreadable" in lease:
        return "an unreadable lease (%s)" % lease["unreadable"]
    return "run %s (%s, pid %s on %s) until %s" % (
        lease.get("run_id"),
        lease.get("owner") or "unknown owner",
        lease.get("pid"),
        lease.get("control_host") or "unknown host",
        lease.get("expires_at"),
    )


def create_exclusive(lock_dir, name, lease):
    """Publish a fully written lease under its name; False when the name already exists (EEXIST)."""
    try:
        write_json(lease_path(lock_dir, name), lease, replace=False)
    except FileExistsError:
        return False
    return True


def replace(lock_dir, name, lease):
    write_json(lease_path(lock_dir, name), lease)


def renewal(ttl, now):
    """What an acquire or renew sets: when (by both clocks, in which boot) and for how long."""
    return {
        "renewed_at": iso(now.wall),
        "expires_at": iso(now.wall + ttl),
        "expires_epoch": round(now.wall + ttl, 3),
        "ttl": int(ttl),
        "host_boot_id": now.boot,
        "renewed_mono": round(now.mono, 3),
    }


def new_lease(name, run_id, owner, pid, control_host, ttl, now, acquired_at=None, identity=None):
    lease = {
        "format": FORMAT,
        "name": name,
        "run_id": run_id,
        "owner": owner or "",
        "pid": int(pid or 0),
        "control_host": control_host or "",
        "acquired_at": acquired_at or iso(now.wall),
    }
    identity = identity or {}
    for key, unknown in HOLDER_FIELDS:
        lease[key] = identity.get(key) or unknown
    lease.update(renewal(ttl, now))
    return lease


def acquire(lock_dir, name, run_id, owner="", pid=0, control_host="", ttl=900, now=None, check_mode=False,
            take_over=(), identity=None):
    """Take the lease (or extend our own); LeaseError with the holder when another run's lease is live.
    identity: the holder's control_boot_id, pid_start and pid_ns."""
    if ttl <= 0:
        raise LeaseError("ttl must be a positive number of seconds")
    path = lease_path(lock_dir, name)
    with guarded(lock_dir, name):
        now = read_clock() if now is None else now
        current = read_lease(path)
        result = {"changed": True, "acquired": True, "path": path}
        if current is not None and "unreadable" not in current and current.get("run_id") == run_id:
            lease = new_lease(name, run_id, owner, pid, control_host, ttl, now, current.get("acquired_at"), identity)
            result.update(lease=lease, reacquired=True)
            if not check_mode:
                replace(lock_dir, name, lease)
            return result
        if is_live(current, now) and current.get("run_id") not in take_over:
            raise LeaseError("lock %r on this host is held by %s" % (name, describe(current)), holder=current)
        lease = new_lease(name, run_id, owner, pid, control_host, ttl, now, identity=identity)
        result["lease"] = lease
        if current is not None:
            result["taken_over"] = current
            if not check_mode:
                replace(lock_dir, name, lease)
            return result
        if not check_mode and not create_exclusive(lock_dir, name, lease):
            # only possible when a writer ignores the guard: report whoever is there
            holder = read_lease(path)
            raise LeaseError("lock %r on this host is held by %s" % (name, describe(holder)), holder=holder)
        return result


def renew(lock_dir, name, run_id, ttl=900, now=None, check_mode=False):
    """Extend our lease; LeaseError when it is gone or another run holds it."""
    path = lease_path(lock_dir, name)
    with guarded(lock_dir, name):
        now = read_clock() if now is None else now
        current = read_lease(path)
        if current is None or "unreadable" in current:
            raise LeaseError("lock %r on this host: no lease of run %s to renew (lost)" % (name, run_id))
        if current.get("run_id") != run_id:
            raise LeaseError(
                "lock %r on this host: run %s lost its lease; now held by %s" % (name, run_id, describe(current)),
                holder=current,
            )
        lease = dict(current)
        lease.update(renewal(ttl, now))
        if not check_mode:
            replace(lock_dir, name, lease)
        return {"changed": True, "acquired": True, "lease": lease, "path": path}


def release(lock_dir, name, run_id, check_mode=False):
    """Remove our lease; nothing to do when there is none; LeaseError when another run holds it."""
    path = lease_path(lock_dir, name)
    if not os.path.isdir(lock_dir):
        return {"changed": False, "acquired": False, "path": path}
    with guarded(lock_dir, name):
        current = read_lease(path)
        if current is None:
            return {"changed": False, "acquired": False, "path": path}
        if "unreadable" in current or current.get("run_id") != run_id:
            raise LeaseError(
                "lock %r on this host is held by %s, not by run %s: not released" % (name, describe(current), run_id),
                holder=current,
            )
        if not check_mode:
            _remove(lock_dir, path)
        return {"changed": True, "acquired": False, "released": current, "path": path}


def force_release(lock_dir, name, check_mode=False):
    """Remove the lease whatever run holds it (`runbook lock release --force`); released: what was removed."""
    path = lease_path(lock_dir, name)
    if not os.path.isdir(lock_dir):
        return {"changed": False, "released": None, "path": path}
    with guarded(lock_dir, name):
        current = read_lease(path)
        if current is not None and not check_mode:
            _remove(lock_dir, path)
        return {"changed": current is not None, "released": current, "path": path}


def _remove(lock_dir, path):
    os.unlink(path)
    _fsync_dir(lock_dir)


def list_leases(lock_dir, now=None):
    """Every lease in lock_dir: its name, the lease, whether it is live, the seconds it still lives."""
    now = read_clock() if now is None else now
    leases = []
    for entry in sorted(os.listdir(lock_dir)) if os.path.isdir(lock_dir) else []:
        name = entry[: -len(".json")]
        lease = read_lease(os.path.join(lock_dir, entry)) if entry.endswith(".json") and _NAME.match(name) else None
        if lease is None:
            continue
        left = seconds_left(lease, now) if "unreadable" not in lease else 0.0
        leases.append({"name": name, "lease": lease, "live": is_live(lease, now), "expires_in_s": round(left, 1)})
    return {"changed": False, "path": lock_dir, "leases": leases}


def query(lock_dir, name, run_id, now=None):
    path = lease_path(lock_dir, name)
    current = read_lease(path)
    now = read_clock() if now is None else now
    result = {"changed": False, "path": path, "acquired": bool(current and current.get("run_id") == run_id)}
    if current is not None:
        result["holder"] = current
        result["live"] = is_live(current, now)
    return result


ACTIONS = ["acquire", "renew", "release", "query", "list", "force_release"]


def run_action(p, check_mode):
    """The module's result for its parameters p."""
    action, lock_dir, name = p["action"], p["path"], p["name"]
    if action == "acquire":
        identity = dict((key, p[key]) for key, _ in HOLDER_FIELDS)
        return acquire(
            lock_dir, name, p["run_id"], p["owner"], p["pid"], p["control_host"], p["ttl"],
            check_mode=check_mode, take_over=p["take_over"], identity=identity,
        )
    if action == "renew":
        return renew(lock_dir, name, p["run_id"], p["ttl"], check_mode=check_mode)
    if action == "release":
        return release(lock_dir, name, p["run_id"], check_mode=check_mode)
    if action == "force_release":
        return force_release(lock_dir, name, check_mode=check_mode)
    if action == "list":
        return list_leases(lock_dir)
    return query(lock_dir, name, p["run_id"])


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", default="host"),
            action=dict(type="str", default="acquire", choices=ACTIONS),
            run_id=dict(type="str", default=""),
            owner=dict(type="str", default=""),
            pid=dict(type="int", default=0),
            control_host=dict(type="str", default=""),
            control_boot_id=dict(type="str", default=""),
            pid_start=dict(type="int", default=0),
            pid_ns=dict(type="str", default=""),
            ttl=dict(type="int", default=900),
            path=dict(type="path", default="/var/lib/runbook/locks"),
            take_over=dict(type="list", elements="str", default=[]),
        ),
        required_if=[("action", action, ["run_id"]) for action in ("acquire", "renew", "release")],
        supports_check_mode=True,
    )
    p = module.params
    try:
        result = run_action(p, module.check_mode)
    except LeaseError as exc:
        extra = {"holder": exc.holder} if exc.holder is not None else {}
        module.fail_json(msg=str(exc), acquired=False, **extra)
    except (IOError, OSError) as exc:
        module.fail_json(msg="lease %r: %s" % (p["name"], exc), acquired=False)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
