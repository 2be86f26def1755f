# -*- coding: utf-8 -*-
# Copyright: runbook-runner maintainers
# License: Apache-2.0
"""What an interrupted container swap left on a Docker engine, put right before the next swap (container_swap).

A swap creates <name>--runbook-new, stops the old container, renames it to <name>--runbook-old, renames the new one
to <name>, starts it, and removes the old one once the new one runs. Killed at any moment in between it leaves one
of these, and the next swap (the same step re-run, or any later one) starts from a state with the service in it:

- <name>--runbook-new beside a stopped <name>: the old one was stopped for the swap; it is started again;
- the old one aside and no <name>: it is renamed back and started;
- the old one aside and <name> (the new one) never started: the swap is completed when <name> has the image asked
  for now - it is started (and waited for), and the old one is removed only once it runs - else undone;
- the old one aside and <name> running: the swap got past the start; with wait_healthy its health is waited for
  first (undone when it fails), then the old one is removed.

A swap holds an exclusive lock per container on the host while it acts, so a swap left running by a dead control
node and the re-run of its step never act at once. Standard library only.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib

from ansible_collections.runbook.ops.plugins.module_utils.docker_spec import image_ref
from ansible_collections.runbook.ops.plugins.module_utils.step_intents import IntentError, held_lock

NEW_SUFFIX = "--runbook-new"
OLD_SUFFIX = "--runbook-old"
DEFAULT_LOCK_DIR = "/var/lib/runbook/locks"


class SwapFailed(Exception):
    """The swap did not happen. ``restored``: the old container was put back after the new one failed;
    ``unchanged``: nothing was touched at all (or everything was put back)."""

    def __init__(self, message, restored=False, unchanged=None):
        super().__init__(message)
        self.message = message
        self.restored = restored
        self.unchanged = restored if unchanged is None else unchanged


@contextlib.contextmanager
def swap_lock(params, check_mode):
    """The exclusive lock of one container's swaps on this host (none in check mode)."""
    if check_mode:
        yield
        return
    try:
        with held_lock(params.get("lock_dir") or DEFAULT_LOCK_DIR, ".swap-%s.lock" % params["name"],
                       what="container %s" % params["name"]):
            yield
    except IntentError as exc:
        raise SwapFailed("%s; nothing changed" % exc, unchanged=True)


def _running(container):
    return bool(container and (container.get("State") or {}).get("Running"))


class InterruptedSwap(object):
    """Part of container_swap's Swapper (client, p, check_mode, actions, warnings, _target, _wait): finds the
    container to swap once what an interrupted swap left is put right."""

    def _find_container(self):
        name = self.p["name"]
        container, aside, stale = (self.client.inspect_container(name + suffix)
                                   for suffix in ("", OLD_SUFFIX, NEW_SUFFIX))
        if aside is not None and container is not None and aside["Id"] == container["Id"]:
            aside = None
        if aside is not None and _running(aside) and container is not None:
            raise SwapFailed("both %s and %s exist and %s is running; resolve by hand; nothing changed"
                             % (name, name + OLD_SUFFIX, name + OLD_SUFFIX), unchanged=True)
        if stale is not None:
            self._act("removed %s left by an interrupted swap" % (name + NEW_SUFFIX),
                      self.client.remove, stale["Id"], True)
        if aside is None:
            if stale is not None and container is not None and not _running(container):
                self._act("started %s again (stopped by an interrupted swap)" % name, self.client.start,
                          container["Id"])
        elif container is None or not _running(container):
            container = self._new_never_started(container, aside)
        else:
            self._new_started(container, aside)
        if container is None:
            raise SwapFailed("container %s does not exist on this Docker engine (%s); nothing changed"
                             % (name, self.client.docker_host), unchanged=True)
        return container if self.check_mode else self.client.inspect_container(name)

    def _act(self, what, fn, *args):
        if self.check_mode:
            self.actions.append("would have " + what)
            return
        fn(*args)
        self.warnings.append(what)

    def _put_back(self, aside, new):
        """Undo an interrupted swap: the new container goes, the old one is renamed back and started; the old
        one."""
        name = self.p["name"]
        if new is not None:
            self._act("removed %s, never started by an interrupted swap" % name, self.client.remove, new["Id"], True)
        self._act("renamed %s back to %s (left by an interrupted swap)" % (name + OLD_SUFFIX, name),
                  self.client.rename, aside["Id"], name)
        if not _running(aside):
            self._act("started %s" % name, self.client.start, aside["Id"])
        return aside

    def _aims_at_target(self, new, aside):
        """Whether the container an interrupted swap put under the name runs the image this swap wants."""
        old_ref = image_ref(aside, self.client.inspect_image(aside["Image"]))
        try:
            _, target = self._target(aside, old_ref)
        except SwapFailed:
            return False
        return new["Image"] == target["Id"]

    def _new_never_started(self, new, aside):
        """<name> missing or never started beside the old one: the container to swap, once put right."""
        if new is None or self.check_mode or not self._aims_at_target(new, aside):
            return self._put_back(aside, new)
        self._complete(new, aside, "started %s (created by an interrupted swap)" % self.p["name"])
        return new

    def _new_started(self, new, aside):
        if self.p.get("wait_healthy") and self._aims_at_target(new, aside) and not self.check_mode:
            self._complete(new, aside, None)
            return
        self._act("removed the stopped %s left by an interrupted swap" % (self.p["name"] + OLD_SUFFIX),
                  self.client.remove, aside["Id"], True)

    def _complete(self, new, aside, started):
        """Finish the interrupted swap: the new container runs (and is healthy), then the old one goes; when it
        does not come up, the old one is put back and the swap fails."""
        name = self.p["name"]
        try:
            if started:
                self.client.start(new["Id"])
                self.actions.append(started)
            self._wait(new["Id"])
        except Exception as exc:  # noqa: BLE001 - whatever stops it (a failed start, the deadline), the old one goes back
            with contextlib.suppress(Exception):
                self.client.stop(new["Id"], 5)
            self._put_back(aside, new)
            raise SwapFailed("%s of an interrupted swap did not come up (%s); restored the old container"
                             % (name, getattr(exc, "message", None) or exc), restored=True) from exc
        self.client.remove(aside["Id"], force=True)
        self.actions.append("completed the interrupted swap of %s: removed the old container" % name)
