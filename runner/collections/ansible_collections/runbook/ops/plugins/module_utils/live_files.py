# -*- coding: utf-8 -*-
# Copyright: runbook-runner maintainers
# License: Apache-2.0
"""Changing the files a running service reads, and telling it: shared by the modules that switch nginx upstreams
(nginx_upstream) and restore configuration snapshots (config_files). Standard library only."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import subprocess

from ansible_collections.runbook.ops.plugins.module_utils.safe_files import ensure_dir, write_file


def run_command(argv):
    """(exit status, output) of a validate or reload command; 127 and the reason when it cannot start."""
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    except OSError as exc:
        return 127, str(exc)
    return proc.returncode, proc.stdout.decode("utf-8", "replace").strip()


def put_file(path, data, mode, uid=None, gid=None):
    """Replace a live file through the one writer (never through a link): its mode and, when given and allowed,
    owner (else the replaced file's owner); a missing directory is made 0755."""
    parent = os.path.dirname(path)
    if parent and not os.path.isdir(parent):
        ensure_dir(parent, 0o755)
    write_file(path, data, mode, uid, gid)
