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
    choices: [acquire, renew, release, query]
  run_id:
    description: Id of the run that takes, renews or releases the lease.
    type: str
    required: true
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
  description: The lease as stored (run_id, owner, pid, control_host, acquired_at, expires_at, renewed_at).
  returned: when the run holds it
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
import fcntl
import json
import os
import re
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule

FORMAT = 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class LeaseError(Exception):
    """The action cannot be done; holder is the lease in the way (or None)."""

    def __init__(self, message, holder=None):
        super(LeaseError, self).__init__(message)
        self.holder = holder


def iso(epoch):
    moment = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (moment.microsecond // 1000)


def lease_path(lock_dir, name):
    if not _NAME.match(name or ""):
        raise LeaseError("invalid lock name %r (letters, digits, '.', '_', '-')" % (name,))
    return os.path.join(lock_dir, name + ".json")


def _fsync_dir(directory):
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def guarded(lock_dir, name):
    """Exclusive flock on <lock_dir>/.<name>.guard for the whole read-decide-write (never deleted)."""
    if not os.path.isdir(lock_dir):
        os.makedirs(lock_dir, 0o755, exist_ok=True)
    fd = os.open(os.path.join(lock_dir, "." + name + ".guard"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the flock


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


def is_live(lease, now):
    return lease is not None and "unreadable" not in lease and expires_epoch(lease) > now


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


def _write_temp(lock_dir, name, lease):
    fd, temp = tempfile.mkstemp(prefix="." + name + ".", suffix=".tmp", dir=lock_dir)  # O_EXCL
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(lease, handle, sort_keys=True, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, 0o644)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    return temp


def create_exclusive(lock_dir, name, lease):
    """Publish a fully written lease under its name; False when the name already exists (EEXIST)."""
    path = lease_path(lock_dir, name)
    temp = _write_temp(lock_dir, name, lease)
    try:
        os.link(temp, path)
    except OSError as exc:
        if exc.errno == errno.EEXIST:
            return False
        raise
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temp)
    _fsync_dir(lock_dir)
    return True


def replace(lock_dir, name, lease):
    temp = _write_temp(lock_dir, name, lease)
    os.rename(temp, lease_path(lock_dir, name))
    _fsync_dir(lock_dir)


def new_lease(name, run_id, owner, pid, control_host, ttl, now, acquired_at=None):
    return {
        "format": FORMAT,
        "name": name,
        "run_id": run_id,
        "owner": owner or "",
        "pid": int(pid or 0),
        "control_host": control_host or "",
        "acquired_at": acquired_at or iso(now),
        "renewed_at": iso(now),
        "expires_at": iso(now + ttl),
        "expires_epoch": round(now + ttl, 3),
        "ttl": int(ttl),
    }


def acquire(lock_dir, name, run_id, owner="", pid=0, control_host="", ttl=900, now=None, check_mode=False,
            take_over=()):
    """Take the lease (or extend our own); LeaseError with the holder when another run's lease is live."""
    if ttl <= 0:
        raise LeaseError("ttl must be a positive number of seconds")
    path = lease_path(lock_dir, name)
    with guarded(lock_dir, name):
        now = time.time() if now is None else now
        current = read_lease(path)
        result = {"changed": True, "acquired": True, "path": path}
        if current is not None and "unreadable" not in current and current.get("run_id") == run_id:
            lease = new_lease(name, run_id, owner, pid, control_host, ttl, now, current.get("acquired_at"))
            result.update(lease=lease, reacquired=True)
            if not check_mode:
                replace(lock_dir, name, lease)
            return result
        if is_live(current, now) and current.get("run_id") not in take_over:
            raise LeaseError("lock %r on this host is held by %s" % (name, describe(current)), holder=current)
        lease = new_lease(name, run_id, owner, pid, control_host, ttl, now)
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
        now = time.time() if now is None else now
        current = read_lease(path)
        if current is None or "unreadable" in current:
            raise LeaseError("lock %r on this host: no lease of run %s to renew (lost)" % (name, run_id))
        if current.get("run_id") != run_id:
            raise LeaseError(
                "lock %r on this host: run %s lost its lease; now held by %s" % (name, run_id, describe(current)),
                holder=current,
            )
        lease = dict(current)
        lease.update(renewed_at=iso(now), expires_at=iso(now + ttl), expires_epoch=round(now + ttl, 3), ttl=int(ttl))
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
            os.unlink(path)
            _fsync_dir(lock_dir)
        return {"changed": True, "acquired": False, "released": current, "path": path}


def query(lock_dir, name, run_id, now=None):
    path = lease_path(lock_dir, name)
    current = read_lease(path)
    now = time.time() if now is None else now
    result = {"changed": False, "path": path, "acquired": bool(current and current.get("run_id") == run_id)}
    if current is not None:
        result["holder"] = current
        result["live"] = is_live(current, now)
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", default="host"),
            action=dict(type="str", default="acquire", choices=["acquire", "renew", "release", "query"]),
            run_id=dict(type="str", required=True),
            owner=dict(type="str", default=""),
            pid=dict(type="int", default=0),
            control_host=dict(type="str", default=""),
            ttl=dict(type="int", default=900),
            path=dict(type="path", default="/var/lib/runbook/locks"),
            take_over=dict(type="list", elements="str", default=[]),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        if p["action"] == "acquire":
            result = acquire(
                p["path"], p["name"], p["run_id"], p["owner"], p["pid"], p["control_host"], p["ttl"],
                check_mode=module.check_mode, take_over=p["take_over"],
            )
        elif p["action"] == "renew":
            result = renew(p["path"], p["name"], p["run_id"], p["ttl"], check_mode=module.check_mode)
        elif p["action"] == "release":
            result = release(p["path"], p["name"], p["run_id"], check_mode=module.check_mode)
        else:
            result = query(p["path"], p["name"], p["run_id"])
    except LeaseError as exc:
        extra = {"holder": exc.holder} if exc.holder is not None else {}
        module.fail_json(msg=str(exc), acquired=False, **extra)
    except (IOError, OSError) as exc:
        module.fail_json(msg="lease %r: %s" % (p["name"], exc), acquired=False)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
