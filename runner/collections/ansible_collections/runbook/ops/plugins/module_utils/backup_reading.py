# -*- coding: utf-8 -*-
# Copyright: runbook-runner maintainers
# License: Apache-2.0
"""A restore reading a backup: the .reading marker that keeps retention away from it, and its plain data.

While a restore reads a backup, <dir>/.reading-<name>@<pid> names the process reading it; backup_retention never
deletes or compresses a backup with a marker whose process is alive (a marker without @<pid>, made by hand, always
holds). A restore killed with -9 leaves its marker behind, and the marker stops holding with the process.

A backup compressed by backup_retention (manifest keys original and compression) is decoded into a hidden scratch
file beside it, <dir>/.<name>.decode-<pid>.tmp, proved equal to the original's sha256, read, and removed; the
restore role's cleanup removes one a killed restore left (its *.tmp leftovers). Standard library only.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import zlib

from ansible_collections.runbook.ops.plugins.module_utils.backup_files import CHUNK, MANIFEST_SUFFIX
from ansible_collections.runbook.ops.plugins.module_utils.safe_files import write_file

READING_PREFIX = ".reading-"


class NotReadable(Exception):
    """The backup cannot be read as its manifest says; check names what failed (manifest, decode)."""

    def __init__(self, check, detail):
        Exception.__init__(self, detail)
        self.check = check
        self.detail = detail


def decompress_to(path, method, out):
    """Write what a compressed backup decodes to into out; its sha256 (zstd or gzip; a damaged stream raises)."""
    digest = hashlib.sha256()
    if method == "zstd":
        if not shutil.which("zstd"):
            raise NotReadable("decode", "%s is zstd-compressed and this host has no zstd" % path)
        proc = subprocess.Popen(["zstd", "-q", "-d", "-c", path], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        for block in iter(lambda: proc.stdout.read(CHUNK), b""):
            digest.update(block)
            out.write(block)
        proc.stdout.close()
        if proc.wait() != 0:
            raise NotReadable("decode", "%s does not decompress (zstd exit %d)" % (path, proc.returncode))
        return digest.hexdigest()
    try:
        with gzip.open(path, "rb") as handle:
            for block in iter(lambda: handle.read(CHUNK), b""):
                digest.update(block)
                out.write(block)
    except (OSError, EOFError, zlib.error) as exc:
        raise NotReadable("decode", "%s does not decompress: %s" % (path, exc))
    return digest.hexdigest()


def _start_time(pid):
    """The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat); None when unknown."""
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return int(handle.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _alive(pid, started):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return started is None or _start_time(pid) in (None, started)


def marker_holds(path):
    """Whether a .reading marker still holds: made by hand (no @pid), or its process is the one that made it."""
    base = os.path.basename(path)
    if "@" not in base:
        return True
    try:
        with open(path, "rb") as handle:
            recorded = json.loads(handle.read().decode("utf-8"))
        pid = int(recorded["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return True  # unreadable: keep the backup rather than guess
    return _alive(pid, recorded.get("started"))


def being_read(directory, name):
    """Whether a restore reads the backup name of directory now."""
    exact = READING_PREFIX + name
    try:
        entries = os.listdir(directory)
    except OSError:
        return False
    return any(marker_holds(os.path.join(directory, entry)) for entry in entries
               if entry == exact or entry.startswith(exact + "@"))


@contextlib.contextmanager
def reading_marker(directory, name):
    pid = os.getpid()
    path = os.path.join(directory, "%s%s@%d" % (READING_PREFIX, name, pid))
    record = {"pid": pid, "started": _start_time(pid), "work": os.environ.get("RUNBOOK_WORK", "")}
    write_file(path, json.dumps(record, sort_keys=True).encode("utf-8"), mode=0o600)
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _manifest_of(data_path, manifest_path):
    if not manifest_path:
        return {}
    try:
        with open(manifest_path, "rb") as handle:
            manifest = json.loads(handle.read().decode("utf-8"))
    except (OSError, ValueError) as exc:
        raise NotReadable("manifest", "cannot read the manifest %s: %s" % (manifest_path, exc))
    if not isinstance(manifest, dict) or manifest.get("data") != os.path.basename(data_path):
        raise NotReadable("manifest", "the manifest %s does not name %s" % (manifest_path, data_path))
    return manifest


def compressed(manifest):
    """Whether backup_retention compressed the backup ("compression" alone is the dump's own: pg_dump -Z)."""
    return isinstance(manifest.get("original"), dict)


@contextlib.contextmanager
def plain_data(data_path, manifest, scratch_dir=None):
    """The data as the dump wrote it: the file, or a scratch copy decoded from a compressed one (removed after);
    the scratch goes beside the data unless scratch_dir is given."""
    if not compressed(manifest):
        yield data_path
        return
    method, original = manifest.get("compression"), manifest["original"].get("sha256")
    if method not in ("zstd", "gzip") or not original:
        raise NotReadable("manifest", "compression %r without the original's sha256" % (method,))
    directory, base = os.path.split(data_path)
    scratch = os.path.join(scratch_dir or directory, ".%s.decode-%d.tmp" % (base, os.getpid()))
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            got = decompress_to(data_path, method, out)
        if got != original:
            raise NotReadable("decode", "%s decodes to sha256 %s, the original was %s" % (data_path, got, original))
        yield scratch
    finally:
        with contextlib.suppress(OSError):
            os.unlink(scratch)


@contextlib.contextmanager
def reading(data_path, manifest_path=""):
    """Hold the backup against retention and yield the path of its plain data for the restore tool."""
    manifest_path = manifest_path or ""
    if manifest_path and not manifest_path.endswith(MANIFEST_SUFFIX):
        raise NotReadable("manifest", "%s is not a backup manifest" % manifest_path)
    manifest = _manifest_of(data_path, manifest_path)
    directory = os.path.dirname(os.path.abspath(manifest_path or data_path))
    name = (os.path.basename(manifest_path)[: -len(MANIFEST_SUFFIX)] if manifest_path
            else os.path.basename(data_path))
    with reading_marker(directory, name):
        with plain_data(data_path, manifest) as plain:
            yield plain
