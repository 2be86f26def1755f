# -*- coding: utf-8 -*-
# Copyright: runbook-runner maintainers
# License: Apache-2.0
"""The file side of backup retention: read a backup set from a directory, compress one backup, delete one.

Two kinds of sets. Managed backups (postgres, mongodb: the roles' <name>.manifest.json beside the data) are read
from their manifests and checked (files, sizes, sha256: verified or corrupt). Plain files (kind files) are every
file matching a name pattern (seed 004's db_backup_*.sql), also once compressed (pattern + .zst/.gz); they are
unverified. A backup's time is its data file's modification time. The .latest marker names the .latest target;
a restore marks what it reads with .reading-<name>@<pid> in the directory (module_utils/backup_reading).

Every write goes through module_utils/safe_files (manifests) or an O_EXCL|O_NOFOLLOW .partial renamed into place
(compressed data); the original is removed only after the compressed copy decodes to its sha256 and the manifest
names the compressed file, so an interruption never leaves a backup that looks complete but is not.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fnmatch
import gzip
import hashlib
import json
import os
import shutil
import subprocess

from ansible_collections.runbook.ops.plugins.module_utils.backup_check import Refused, _file_checks
from ansible_collections.runbook.ops.plugins.module_utils.backup_reading import (
    NotReadable, being_read, decompress_to,
)
from ansible_collections.runbook.ops.plugins.module_utils.backup_files import (
    CHUNK, LATEST_MARKER, MANIFEST_SUFFIX, PARTIAL_SUFFIX, fsync_path, sha256_file, write_atomic,
)

COMPRESSED = {"zstd": ".zst", "gzip": ".gz"}


def _marker_name(directory, marker):
    try:
        with open(os.path.join(directory, marker)) as handle:
            return os.path.basename(handle.read().strip())
    except OSError:
        return ""


def _base(backup, offsite):
    backup["offsite"] = offsite.get(backup["name"], "missing")
    return backup


def read_managed(directory, kind, marker, offsite):
    """Managed backups of a directory: [{name, time, size, state, latest, reading, compressed, offsite, ...}]."""
    latest = _marker_name(directory, marker or LATEST_MARKER)
    found = []
    for entry in sorted(os.listdir(directory)):
        if not entry.endswith(MANIFEST_SUFFIX) or entry.startswith("."):
            continue
        name = entry[: -len(MANIFEST_SUFFIX)]
        path = os.path.join(directory, entry)
        try:
            with open(path, "rb") as handle:
                manifest = json.loads(handle.read().decode("utf-8"))
            data = os.path.join(directory, manifest["data"])
            if manifest.get("kind") != kind:
                continue
            _file_checks(directory, manifest, lambda *a: None)
            state = "verified"
        except Refused:
            state = "corrupt"
        except (OSError, ValueError, KeyError, TypeError):
            state, manifest, data = "corrupt", {}, path
        when = os.lstat(data).st_mtime if os.path.lexists(data) else os.lstat(path).st_mtime
        found.append(_base({
            "name": name, "time": when, "size": int(manifest.get("size") or 0), "state": state,
            "latest": name == latest, "reading": being_read(directory, name),
            "compressed": isinstance(manifest.get("original"), dict), "data": os.path.basename(data),
            "sha256": manifest.get("sha256", ""), "format": manifest.get("format", ""),
        }, offsite))
    return found


def read_pattern(directory, pattern, marker, offsite):
    """Plain files matching the pattern (or the pattern + .zst/.gz): unverified backups named by their file."""
    latest = _marker_name(directory, marker) if marker else ""
    found = []
    for entry in sorted(os.listdir(directory)):
        full = os.path.join(directory, entry)
        if entry.startswith(".") or entry.endswith(PARTIAL_SUFFIX) or not os.path.isfile(full):
            continue
        stem = next((entry[: -len(s)] for s in COMPRESSED.values() if entry.endswith(s)), entry)
        if not fnmatch.fnmatchcase(stem, pattern):
            continue
        found.append(_base({
            "name": entry, "time": os.lstat(full).st_mtime, "size": os.lstat(full).st_size,
            "state": "unverified", "latest": bool(latest) and (latest == entry or latest == stem or latest in stem),
            "reading": being_read(directory, entry),
            "compressed": stem != entry, "data": entry, "sha256": "", "format": "file",
        }, offsite))
    return found


def compressor():
    """zstd where the host has it, else gzip (Python's own)."""
    return "zstd" if shutil.which("zstd") else "gzip"


def _open_new(path):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    return os.fdopen(fd, "wb")


def _write_compressed(source, target, method):
    if os.path.lexists(target):
        os.unlink(target)  # a .partial an interrupted run left: never finished, never named by a manifest
    if method == "zstd":
        with open(source, "rb") as src, _open_new(target) as out:
            subprocess.run(["zstd", "-q", "-c", "-T1"], stdin=src, stdout=out, check=True)
            out.flush()
            os.fsync(out.fileno())
        return
    with open(source, "rb") as src, _open_new(target) as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6) as out:
            shutil.copyfileobj(src, out, CHUNK)
        raw.flush()
        os.fsync(raw.fileno())


def decoded_sha256(path, method):
    """sha256 of what a compressed file decodes to (the whole stream is read: a damaged one raises ValueError)."""
    with open(os.devnull, "wb") as sink:
        try:
            return decompress_to(path, method, sink)
        except NotReadable as exc:
            raise ValueError(exc.detail)


def compress(directory, backup, managed):
    """Compressed copy, verified to decode to the original sha256, manifest updated, then the original removed."""
    if backup.get("format") == "directory":
        raise ValueError("backup %s is a directory-format backup: not compressed" % backup["name"])
    method = compressor()
    source = os.path.join(directory, backup["data"])
    final = source + COMPRESSED[method]
    partial = final + PARTIAL_SUFFIX
    original = sha256_file(source)
    _write_compressed(source, partial, method)
    if decoded_sha256(partial, method) != original:
        os.unlink(partial)
        raise ValueError("compressed copy of %s does not decode to the original" % backup["name"])
    info = os.stat(source)
    os.utime(partial, (info.st_atime, info.st_mtime))  # the backup's age is its data file's mtime: kept
    os.rename(partial, final)
    fsync_path(directory)
    if managed:
        _rewrite_manifest(directory, backup["name"], method, final, original)
    os.unlink(source)
    fsync_path(directory)
    return {"name": backup["name"], "compression": method, "file": os.path.basename(final),
            "size": os.path.getsize(final), "sha256": sha256_file(final), "original_sha256": original}


def _rewrite_manifest(directory, name, method, final, original):
    path = os.path.join(directory, name + MANIFEST_SUFFIX)
    with open(path, "rb") as handle:
        manifest = json.loads(handle.read().decode("utf-8"))
    entry = manifest["files"][0]
    if entry.get("sha256") != original:
        raise ValueError("backup %s changed since it was read (sha256 differs)" % name)
    manifest["original"] = {"data": manifest["data"], "size": manifest["size"], "sha256": original,
                            "compression": manifest.get("compression", "")}  # the dump's own (pg_dump -Z)
    offsite = manifest.get("offsite")
    if isinstance(offsite, dict) and offsite.get("sha256") == original:
        offsite["holds"] = "original"  # the copy sent before this compression: the uncompressed data, still whole
    size, digest = os.path.getsize(final), sha256_file(final)
    manifest.update({"compression": method, "data": os.path.basename(final), "size": size, "sha256": digest,
                     "files": [{"path": os.path.basename(final), "size": size, "sha256": digest}]})
    write_atomic(path, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def delete(directory, backup, managed):
    """Data first, manifest last: an interrupted delete leaves a manifest whose file is missing (corrupt, never
    complete-looking), which the next run's plan removes."""
    data = os.path.join(directory, backup["data"])
    if os.path.isdir(data) and not os.path.islink(data):
        shutil.rmtree(data)
    elif os.path.lexists(data):
        os.unlink(data)
    fsync_path(directory)
    if managed:
        manifest = os.path.join(directory, backup["name"] + MANIFEST_SUFFIX)
        if os.path.lexists(manifest):
            os.unlink(manifest)
        fsync_path(directory)
    return {"name": backup["name"], "removed": backup["data"]}


def record_offsite(directory, name, offsite):
    """The manifest's "offsite": {host, path, sha256, verified_at} once the copy was verified on the backup host."""
    path = os.path.join(directory, name + MANIFEST_SUFFIX)
    with open(path, "rb") as handle:
        manifest = json.loads(handle.read().decode("utf-8"))
    if manifest.get("offsite") == offsite:
        return False
    manifest["offsite"] = offsite
    write_atomic(path, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8"))
    return True
