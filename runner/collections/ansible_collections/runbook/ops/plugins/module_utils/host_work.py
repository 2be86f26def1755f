# -*- coding: utf-8 -*-
# Copyright: runbook-runner maintainers
# License: Apache-2.0
"""The work a module does on a host ends when its time is up or when nobody waits for it any more.

Ansible's task timeout only stops the waiting on the control node: the module goes on running on the host. So a
module that does long work (pg_dump, pg_restore, a container swap, HTTP waits) makes one HostWork (`start_work`)
with the deadline of its `runbook_timeout` option, which the rendered play gives every module of the collection's
`host_work` action group (meta/runtime.yml) through module_defaults, a little shorter than the step's Ansible
timeout:

- its subprocesses run in their own process group (`popen`), so a whole tree (pg_restore -j workers) ends together;
- a watchdog thread ends those groups (SIGTERM, SIGKILL TERM_GRACE_S later) when the time is up, and when the module
  is orphaned: the ssh session or the local Ansible worker that started it is gone (its stdout has no reader any
  more, or its parent changed, or it gets SIGHUP - which runbook.ops.work_state sends when the run is cancelled,
  since a cancelled ssh session can stay open on the host until its ControlPersist master goes). Ctrl-C, SIGTERM
  or SIGHUP of `runbook run`, its --timeout and a dead control node all end that way on the host; a SIGTERM of
  the module itself does the same;
- code that waits without a subprocess (HTTP attempts, a health wait) calls `check()` / `sleep()`, which raise
  WorkStopped;
- what the module is doing and what it leaves (a restore: whether the live database was dropped) is kept in a
  state file on the host, <work dir>/<run id>/<inventory host>.json, the run named by the RUNBOOK_WORK and
  RUNBOOK_WORK_HOST environment variables the rendered play sets on every task: `running` when the module starts,
  each change of what it leaves, `ended` at its end. runbook.ops.work_state reads it for the roles and the runner
  and ends what still runs with those variables.

Times are durations measured on the host (a deadline never compares the clocks of two machines). Standard
library only.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import select
import signal
import subprocess
import threading
import time

from ansible_collections.runbook.ops.plugins.module_utils.safe_files import ensure_dir, write_file

WORK_ENV = "RUNBOOK_WORK"
WORK_HOST_ENV = "RUNBOOK_WORK_HOST"
WORK_DIR_ENV = "RUNBOOK_WORK_DIR"
DEFAULT_WORK_DIR = "/var/lib/runbook/work"
TERM_GRACE_S = 5.0  # SIGTERM, then SIGKILL this much later
CLEANUP_S = 30.0  # what a module starts to clean up after the stop is ended this much after the stop
POLL_S = 0.25
KEEP_RUNS_S = 14 * 86400  # state directories of older runs are removed

TIMEOUT = "timeout"
ORPHANED = "orphaned"
SIGNALLED = "signal"
RUNNING = "running"
ENDED = "ended"


class WorkStopped(Exception):
    """The module's work was stopped (its time was up, or nobody waits for it any more)."""


def safe_part(text):
    return re.sub(r"[^A-Za-z0-9_.@-]", "_", text or "") or "_"


def work_dir():
    return os.environ.get(WORK_DIR_ENV) or DEFAULT_WORK_DIR


def state_path(run_id, host, directory=None):
    return os.path.join(directory or work_dir(), safe_part(run_id), safe_part(host) + ".json")


def read_state(path):
    """The state a module recorded, or None when there is none (or it cannot be read)."""
    try:
        with open(path, "rb") as handle:
            data = json.loads(handle.read().decode("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_state(path, state):
    """Write a state file (0600, its run directory 0700); False when the host does not let us."""
    try:
        ensure_dir(os.path.dirname(os.path.dirname(path)), 0o755)
        ensure_dir(os.path.dirname(path), 0o700)
        write_file(path, (json.dumps(state, sort_keys=True, indent=2) + "\n").encode("utf-8"), mode=0o600)
    except OSError:
        return False
    return True


def stdout_unread(fd=1):
    """Whether the pipe or socket on fd lost its reader (POLLERR / POLLHUP): the ssh channel is closed."""
    poller = select.poll()
    try:
        poller.register(fd, 0)
        events = poller.poll(0)
    except (OSError, ValueError):
        return False
    return any(revents & (select.POLLERR | select.POLLHUP) for _, revents in events)


def orphan_detector(parent=None, fd=1):
    """A callable saying whether the module lost the session that started it."""
    first_parent = os.getppid() if parent is None else parent

    def orphaned():
        return os.getppid() != first_parent or stdout_unread(fd)

    return orphaned


def describe_stop(reason, timeout_s):
    if reason == TIMEOUT:
        return "stopped at its timeout (%gs)" % timeout_s
    if reason == ORPHANED:
        return "stopped because the run that started it is gone (cancelled, timed out or its control node died)"
    return "stopped by a signal"


class HostWork(object):
    """One module's work on this host: its deadline, its process groups, the watchdog and its state file."""

    def __init__(self, module, timeout_s=0.0, run_id=None, host=None, directory=None, clock=time.monotonic,
                 orphaned=None, poll_s=POLL_S):
        self.module = module
        self.timeout_s = float(timeout_s or 0)
        self.started = time.time()
        self.clock = clock
        self.deadline = clock() + self.timeout_s if self.timeout_s > 0 else None
        self.run_id = os.environ.get(WORK_ENV, "") if run_id is None else run_id
        self.host = os.environ.get(WORK_HOST_ENV, "") if host is None else host
        self.path = state_path(self.run_id, self.host, directory) if self.run_id else None
        self.poll_s = poll_s
        self.reason = None
        self.left = {}
        self._orphaned = orphaned if orphaned is not None else (lambda: False)
        self._stopped_at = None
        self._procs = []  # (Popen, started after the stop)
        self._lock = threading.RLock()
        self._wakeup = threading.Event()  # the watchdog's
        self._stopping = threading.Event()  # set once, at the stop: wakes up sleep()
        self._done = threading.Event()
        self._thread = None
        self._handlers = {}

    # ------------------------------------------------------------------------------------------------ life

    def start(self):
        """Record `running`, start the watchdog, stop on SIGTERM/SIGHUP; the work, made the current one."""
        global _CURRENT
        _CURRENT = self
        self._record(RUNNING)
        _prune(os.path.dirname(os.path.dirname(self.path)) if self.path else None, self.run_id)
        if threading.current_thread() is threading.main_thread():
            # SIGHUP: the session is gone (runbook.ops.work_state says so after a cancel); SIGTERM: told to stop
            for sig, reason in ((signal.SIGTERM, SIGNALLED), (signal.SIGHUP, ORPHANED)):
                self._handlers[sig] = signal.signal(sig, lambda signum, frame, why=reason: self.stop(why))
        self._thread = threading.Thread(target=self._watch, name="host-work-watchdog")
        self._thread.daemon = True
        self._thread.start()
        return self

    def finish(self, failed, msg, **left):
        """The module is done: record `ended` with what it leaves, stop the watchdog."""
        global _CURRENT
        self.left.update(left)
        self._done.set()
        self._wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout=TERM_GRACE_S + 1)
        for sig, previous in self._handlers.items():
            signal.signal(sig, previous)
        self._record(ENDED, failed=bool(failed), msg=msg)
        if _CURRENT is self:
            _CURRENT = None

    def note(self, **left):
        """What the work leaves changed (kept in the state file at once: a kill -9 after it still tells)."""
        self.left.update(left)
        self._record(RUNNING)

    # ------------------------------------------------------------------------------------------- stopping

    @property
    def stopped(self):
        return self.reason is not None

    def stop(self, reason):
        """End the work (the first reason counts): SIGTERM every process group, SIGKILL TERM_GRACE_S later."""
        with self._lock:
            if self.reason is not None:
                return
            self.reason = reason
            self._stopped_at = self.clock()
            self._signal(signal.SIGTERM, lambda late: not late)
        self._stopping.set()
        self._wakeup.set()

    def describe(self):
        return describe_stop(self.reason, self.timeout_s) if self.reason else ""

    def explain(self, message):
        """A failure message that says the work was stopped, when it was and the message does not say so."""
        if self.reason is None or "stopped" in message:
            return message
        return "%s: %s" % (self.describe(), message)

    def check(self):
        """Raise WorkStopped once the work was stopped or its time is up."""
        if self.reason is None and self.deadline is not None and self.clock() >= self.deadline:
            self.stop(TIMEOUT)
        if self.reason is not None:
            raise WorkStopped(self.describe())

    def remaining(self):
        """Seconds left before the deadline (None: no deadline)."""
        return None if self.deadline is None else max(0.0, self.deadline - self.clock())

    def sleep(self, seconds):
        """Sleep, waking up (WorkStopped) when the work is stopped or its time is up."""
        self.check()
        left = self.remaining()
        self._stopping.wait(seconds if left is None else min(seconds, left))
        self.check()

    # ------------------------------------------------------------------------------------------ processes

    def popen(self, argv, **kwargs):
        """subprocess.Popen in a process group of its own, ended with the work. After the stop (cleanup) it
        still starts, and is ended CLEANUP_S after the stop."""
        kwargs.setdefault("start_new_session", True)
        with self._lock:
            proc = subprocess.Popen(argv, **kwargs)
            self._procs.append((proc, self.reason is not None))
        return proc

    def _signal(self, sig, which):
        """Signal the process groups of the tracked processes not reaped yet (a pid is not reused before)."""
        with self._lock:
            self._procs = [(p, late) for p, late in self._procs if p.returncode is None]
            for proc, late in self._procs:
                if which(late):
                    try:
                        os.killpg(proc.pid, sig)
                    except (ProcessLookupError, PermissionError):
                        pass

    def _watch(self):
        killed = False
        while not self._done.is_set():
            self._wakeup.wait(self.poll_s)
            self._wakeup.clear()
            if self._done.is_set():
                return
            if self.reason is None:
                if self.deadline is not None and self.clock() >= self.deadline:
                    self.stop(TIMEOUT)
                elif self._orphaned():
                    self.stop(ORPHANED)
                continue
            since = self.clock() - self._stopped_at
            if since >= TERM_GRACE_S and not killed:
                self._signal(signal.SIGKILL, lambda late: not late)
                killed = True
            if since >= CLEANUP_S:
                self._signal(signal.SIGTERM, lambda late: late)
            if since >= CLEANUP_S + TERM_GRACE_S:
                self._signal(signal.SIGKILL, lambda late: True)

    # ---------------------------------------------------------------------------------------------- state

    def _record(self, status, failed=False, msg=""):
        if self.path is None:
            return
        state = {
            "run_id": self.run_id, "host": self.host, "module": self.module, "pid": os.getpid(),
            "status": status, "stopped": self.reason, "failed": failed, "msg": msg, "left": dict(self.left),
            "timeout_s": self.timeout_s, "updated": time.time(),
        }
        with self._lock:
            write_state(self.path, state)


_CURRENT = None


def current_work():
    """The work of this module process (an idle one, with no deadline and no state file, when none started)."""
    return _CURRENT if _CURRENT is not None else HostWork("", run_id="")


def tracked_popen(argv, **kwargs):
    """subprocess.Popen through the module's work when one started (its own process group, ended with it)."""
    if _CURRENT is None:
        return subprocess.Popen(argv, **kwargs)
    return _CURRENT.popen(argv, **kwargs)


def start_work(module, params):
    """The module's HostWork from its runbook_timeout option, started: orphan detection, deadline, state."""
    return HostWork(module, params.get("runbook_timeout") or 0, orphaned=orphan_detector()).start()


def _prune(directory, keep):
    """Remove the state directories of runs older than KEEP_RUNS_S (best effort)."""
    if not directory:
        return
    now = time.time()
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        run_dir = os.path.join(directory, name)
        try:
            if name == safe_part(keep) or os.path.islink(run_dir) or now - os.stat(run_dir).st_mtime < KEEP_RUNS_S:
                continue
            for entry in os.listdir(run_dir):
                os.unlink(os.path.join(run_dir, entry))
            os.rmdir(run_dir)
        except OSError:
            continue
