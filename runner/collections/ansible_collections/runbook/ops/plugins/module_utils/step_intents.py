# -*- coding: utf-8 -*-
# Copyright: runbook-runner maintainers
# License: Apache-2.0
"""What a step resolved to do on a host, recorded there before it acts, so that the same step re-run by the same
run (a retry, or `runbook resume` after the control node died) does the same thing instead of resolving
`previous` or `latest` again against what it already changed. Standard library only.

An intent is a JSON object in <dir>/<key>.json; the key is "<run id>.<step id>", the run id being the first run of
a chain of resumes (the runner passes it as runbook_origin_run_id). `record` adds the keys an intent does not hold
yet (the first resolution wins), `update` replaces them (what a later part of the step learned: the safety copy
it took). Each write is atomic; intents older than keep_days are removed when one is written.

held_lock is the exclusive flock a module holds on a host while it acts on one thing (a container, an upstream, a
config set), so a module left running by a dead control node and the re-run of its step never act at once.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import fcntl
import json
import os
import re
import time

from ansible_collections.runbook.ops.plugins.module_utils.safe_files import ensure_dir, open_lock_file, write_file

DEFAULT_DIR = "/var/lib/runbook/intents"
KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")
RESULT_KEY = "runbook_intent"  # a task result holding it: the runner journals the intent at once


class IntentError(Exception):
    pass


def key_for(run_id, step_id):
    """The key of a step's intent, or "" (no intent is kept) outside a run."""
    return "%s.%s" % (run_id, step_id) if run_id and step_id else ""


class IntentStore(object):
    def __init__(self, directory=DEFAULT_DIR, keep_days=30):
        self.directory = directory or DEFAULT_DIR
        self.keep_days = keep_days

    def path(self, key):
        if not KEY.match(key or ""):
            raise IntentError("invalid intent key %r (letters, digits, . _ -)" % (key,))
        return os.path.join(self.directory, key + ".json")

    def get(self, key):
        """The intent recorded under key, or None."""
        try:
            with open(self.path(key), "r", encoding="utf-8") as handle:
                data = json.load(handle)
        except FileNotFoundError:
            return None
        except ValueError as exc:
            raise IntentError("intent %s is not valid JSON (%s)" % (self.path(key), exc))
        return data if isinstance(data, dict) else None

    def write(self, key, data, replace=False, check_mode=False):
        """(found, intent): the intent under key with data merged in - new keys only, unless replace."""
        with held_lock(self.directory, ".intents.lock", what="the intents of this host"):
            current = self.get(key)
            merged = dict(current or {})
            for name, value in (data or {}).items():
                if replace or name not in merged:
                    merged[name] = value
            if merged != current and not check_mode:
                write_file(self.path(key), (json.dumps(merged, sort_keys=True, indent=2) + "\n").encode("utf-8"),
                           mode=0o600)
                self._prune(key)
        return current is not None, merged

    def _prune(self, kept):
        cutoff = time.time() - self.keep_days * 86400
        for name in os.listdir(self.directory):
            path = os.path.join(self.directory, name)
            if name.endswith(".json") and name != kept + ".json":
                with contextlib.suppress(OSError):
                    if os.lstat(path).st_mtime < cutoff:
                        os.unlink(path)


def published(key, intent):
    """The task result part the runner journals as the step's intent."""
    return {RESULT_KEY: dict(intent, key=key)}


@contextlib.contextmanager
def held_lock(directory, name, what, timeout=600.0):
    """Exclusive flock on <directory>/<name>, waited for up to `timeout` seconds (an earlier module acting on the
    same thing, left by a dead control node, finishes first)."""
    ensure_dir(directory, 0o755)
    fd = open_lock_file(os.path.join(directory, name))
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise IntentError("%s stayed locked for %ds by another module on this host (%s)"
                                      % (what, timeout, os.path.join(directory, name)))
                time.sleep(0.2)
        yield
    finally:
        os.close(fd)  # closing drops the flock
