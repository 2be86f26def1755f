# -*- coding: utf-8 -*-
# Copyright: runbook-runner maintainers
# License: Apache-2.0
"""The JSON state files modules keep on a host (host leases, release ledgers): an exclusive lock held across a
read-decide-write, and the JSON written through the one writer (module_utils/safe_files). Standard library only."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import fcntl
import json
import os

from ansible_collections.runbook.ops.plugins.module_utils.safe_files import ensure_dir, open_lock_file, write_file


@contextlib.contextmanager
def exclusive_lock(directory, lock_name):
    """Exclusive flock on <directory>/<lock_name> (created with the directory when missing, never deleted)."""
    ensure_dir(directory, 0o755)
    fd = open_lock_file(os.path.join(directory, lock_name))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the flock


def write_json(path, data, replace=True):
    """data as JSON at path, mode 0644, atomically; with replace=False only when nothing is there (FileExistsError)."""
    text = json.dumps(data, sort_keys=True, indent=2) + "\n"
    write_file(path, text.encode("utf-8"), mode=0o644, replace=replace)
