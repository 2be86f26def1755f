# -*- coding: utf-8 -*-
# Copyright: runbook-runner maintainers
# License: Apache-2.0
"""Backup file helpers shared by the runbook.ops backup modules, on the Python standard library.

A backup is written as <name>.<ext>.partial, fsynced, then renamed to <name>.<ext> next to its
<name>.manifest.json (written through the one writer, module_utils/safe_files: never through a link); markers
such as .latest hold a backup name. Also here: sha256 of a file and of a multi-file listing, and the names of a backup's pieces.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os
import re

from ansible_collections.runbook.ops.plugins.module_utils.safe_files import write_file

CHUNK = 1024 * 1024


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def fsync_path(path):
    """fsync a file, or a directory entry table."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path):
    """fsync a file, or every file of a directory tree and the directories themselves."""
    if os.path.isdir(path):
        for root, dirs, files in os.walk(path):
            for name in files:
                fsync_path(os.path.join(root, name))
            fsync_path(root)
    else:
        fsync_path(path)


def data_files(path):
    """Files of a backup's data (a file, or every file under a directory), sorted, as absolute paths."""
    if os.path.isdir(path):
        found = []
        for root, dirs, files in os.walk(path):
            dirs.sort()
            found.extend(os.path.join(root, name) for name in sorted(files))
        return found
    return [path]


def listing_digest(entries):
    """sha256 of a multi-file backup: over `sha256  relative/path` lines, sorted by path (sha256sum style)."""
    lines = "".join("%s  %s\n" % (e["sha256"], e["path"]) for e in sorted(entries, key=lambda e: e["path"]))
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


def write_atomic(path, data):
    """A manifest or marker, owner only like the backups beside it, through the one writer (a link is refused)."""
    write_file(path, data, mode=0o600)


def safe_file_part(text):
    """A database name as it may appear in a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text) or "_"


DATA_SUFFIX = {"custom": ".dump", "directory": ".dir", "archive": ".archive.gz"}
PARTIAL_SUFFIX = ".partial"
MANIFEST_SUFFIX = ".manifest.json"
LATEST_MARKER = ".latest"
MARKER = re.compile(r"^\.[A-Za-z0-9_-][A-Za-z0-9_.-]*$")


def marker_path(directory, marker):
    """A marker file (.latest, .pre-migration-<run>) of a backup directory; it holds a backup name."""
    if not MARKER.match(marker or "") or marker.endswith(".tmp"):
        raise ValueError("invalid marker name %r (a dot, then letters, digits, dot, dash, underscore)" % marker)
    return os.path.join(directory, marker)


MANIFEST_VERSION = 1


def backup_paths(directory, name, fmt):
    """Where a backup's pieces live: <name>.dump|.dir|.archive.gz, its .partial, <name>.manifest.json."""
    data = os.path.join(directory, name + DATA_SUFFIX[fmt])
    return {"data": data, "partial": data + PARTIAL_SUFFIX,
            "manifest": os.path.join(directory, name + MANIFEST_SUFFIX)}
