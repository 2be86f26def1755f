# -*- coding: utf-8 -*-
# Copyright: runbook-runner maintainers
# License: Apache-2.0
"""The checks that prove a backup whole - manifest, sizes, sha256, full decode, row counts - shared by the
modules that verify one backup (backup_verify) and that survey every backup of a host (backup_catalog)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import zlib

from ansible_collections.runbook.ops.plugins.module_utils.backup_files import (
    CHUNK, DATA_SUFFIX, LATEST_MARKER, MANIFEST_SUFFIX, PARTIAL_SUFFIX, data_files, marker_path, sha256_file,
)
from ansible_collections.runbook.ops.plugins.module_utils.backup_reading import NotReadable, plain_data
from ansible_collections.runbook.ops.plugins.module_utils.pg_decode import DecodeError, decode_postgres
from ansible_collections.runbook.ops.plugins.module_utils.pg_common import display_name, parse_qualified


MONGO_ARCHIVE_MAGIC = b"\x6d\xe2\x99\x81"  # 0x8199e26d little-endian, first bytes of a mongodump archive


class Refused(Exception):
    def __init__(self, check, detail):
        Exception.__init__(self, "%s check failed: %s" % (check, detail))
        self.check = check
        self.detail = detail


def decode_mongo_archive(path):
    """Read the whole gzip stream (CRC and length are checked at its end) and the archive's magic number."""
    total = 0
    try:
        with gzip.open(path, "rb") as handle:
            head = handle.read(4)
            if head != MONGO_ARCHIVE_MAGIC:
                raise Refused("decode", "%s is not a mongodump archive (bad magic number)" % path)
            total = len(head)
            while True:
                block = handle.read(CHUNK)
                if not block:
                    break
                total += len(block)
    except (OSError, EOFError, zlib.error) as exc:
        raise Refused("decode", "%s does not decompress: %s" % (path, exc))
    return total


def _load_manifest(path):
    try:
        with open(path, "rb") as handle:
            manifest = json.loads(handle.read().decode("utf-8"))
    except (OSError, ValueError) as exc:
        raise Refused("manifest", "cannot read manifest %s: %s" % (path, exc))
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), list) or not manifest["files"]:
        raise Refused("manifest", "manifest %s lists no files" % path)
    for key in ("name", "kind", "database", "format", "data"):
        if not manifest.get(key):
            raise Refused("manifest", "manifest %s has no %s" % (path, key))
    return manifest


def locate(directory, backup):
    """(directory, name) of the backup asked for; raises Refused('found') when there is none."""
    backup = (backup or "latest").strip()
    if os.path.isabs(backup) or "/" in backup:
        directory, base = os.path.split(os.path.abspath(backup))
        for suffix in [MANIFEST_SUFFIX] + sorted(DATA_SUFFIX.values(), key=len, reverse=True):
            if base.endswith(suffix):
                return directory, base[: -len(suffix)]
        return directory, base
    if not directory:
        raise Refused("found", "no backup directory given")
    if backup == "latest" or backup.startswith("."):
        try:
            marker = marker_path(directory, LATEST_MARKER if backup == "latest" else backup)
        except ValueError as exc:
            raise Refused("found", str(exc))
        try:
            with open(marker) as handle:
                name = handle.read().strip()
        except OSError:
            raise Refused("found", "no finished backup in %s (no %s marker)" % (directory, os.path.basename(marker)))
        if not name or "/" in name:
            raise Refused("found", "marker %s is empty or invalid" % marker)
        return directory, name
    for suffix in [MANIFEST_SUFFIX] + list(DATA_SUFFIX.values()):
        if backup.endswith(suffix):
            backup = backup[: -len(suffix)]
            break
    return directory, backup


def verify(params):
    """Run the checks; returns the result dict (ok, checks, ...) or raises Refused at the first failure."""
    checks = []

    def passed(name, detail):
        checks.append({"name": name, "ok": True, "detail": detail})

    result = {"changed": False, "ok": False, "checks": checks}
    kind = params.get("kind") or "postgres"
    try:
        if params.get("path"):
            return _verify_raw(params, kind, result, passed)
        directory, name = locate(params.get("dir") or "", params.get("backup") or "latest")
        manifest_path = os.path.join(directory, name + MANIFEST_SUFFIX)
        result.update(name=name, dir=directory, manifest_path=manifest_path)
        if not os.path.exists(manifest_path):
            leftovers = [p for p in (os.path.join(directory, name + s) for s in DATA_SUFFIX.values())
                         if os.path.lexists(p) or os.path.lexists(p + PARTIAL_SUFFIX)]
            if leftovers:
                raise Refused("manifest", "backup %s has no manifest: it is incomplete (interrupted before it "
                              "was finalized)" % name)
            raise Refused("found", "backup %s not found in %s" % (name, directory))
        passed("found", "backup %s in %s" % (name, directory))
        manifest = _load_manifest(manifest_path)
        result["manifest"] = manifest
        passed("manifest", "%s (%d file%s)" % (manifest_path, len(manifest["files"]),
                                                "" if len(manifest["files"]) == 1 else "s"))
        if manifest["kind"] != kind:
            raise Refused("kind", "backup %s is a %s backup, not %s" % (name, manifest["kind"], kind))
        passed("kind", kind)
        expected_db = params.get("database") or ""
        if expected_db and manifest["database"] != expected_db:
            raise Refused("database", "backup %s is of database %r, not %r" % (name, manifest["database"], expected_db))
        passed("database", manifest["database"])
        data_path = os.path.join(directory, manifest["data"])
        result["path"] = data_path
        result["format"] = manifest["format"]
        _file_checks(directory, manifest, passed)
        if params.get("decode", True):
            _decode_checks(params, kind, manifest, data_path, result, passed)
        if kind == "postgres":
            _table_check(params.get("tables") or [], manifest, name, passed)
        result["ok"] = True
        result["msg"] = "backup %s verified (%s)" % (name, ", ".join(c["name"] for c in checks))
        return result
    except Refused as exc:
        checks.append({"name": exc.check, "ok": False, "detail": exc.detail})
        exc.result = result
        raise


def _file_checks(directory, manifest, passed):
    """files, size and sha256: every file of the manifest is there, whole and unchanged."""
    for entry in manifest["files"]:
        if not os.path.isfile(os.path.join(directory, entry["path"])):
            raise Refused("files", "%s is missing" % os.path.join(directory, entry["path"]))
    passed("files", "%d present" % len(manifest["files"]))
    for entry in manifest["files"]:
        full = os.path.join(directory, entry["path"])
        size = os.path.getsize(full)
        want = int(entry["size"])
        if size != want:
            if size == 0:
                why = "is empty (0 bytes; the manifest says %d)" % want
            elif size < want:
                why = "is truncated (%d of %d bytes, %.0f%%)" % (size, want, 100.0 * size / want)
            else:
                why = "has %d bytes; the manifest says %d" % (size, want)
            raise Refused("size", "%s %s" % (full, why))
    passed("size", "%d bytes as recorded" % sum(int(e["size"]) for e in manifest["files"]))
    for entry in manifest["files"]:
        full = os.path.join(directory, entry["path"])
        if sha256_file(full) != entry["sha256"]:
            raise Refused("sha256", "%s does not match its recorded sha256 (corrupted)" % full)
    passed("sha256", manifest.get("sha256", ""))


def _table_check(wanted, manifest, name, passed):
    """tables: the tables asked for are in the backup."""
    if not wanted:
        return
    have = set(manifest.get("tables") or {})
    missing = []
    for table in wanted:
        try:
            key = display_name(*parse_qualified(table))
        except ValueError as exc:
            raise Refused("tables", str(exc))
        if key not in have:
            missing.append(table)
    if missing:
        raise Refused("tables", "backup %s has no table %s" % (name, ", ".join(missing)))
    passed("tables", ", ".join(wanted))


def _decoded(path, bin_dir):
    try:
        return decode_postgres(path, bin_dir)
    except DecodeError as exc:
        raise Refused("decode", str(exc))


@contextlib.contextmanager
def plain_copy(data_path, manifest, passed):
    """The backup's data as written by the dump: the file itself, or (a backup compressed by backup_retention) a
    scratch copy decoded from it and proved equal to the original's recorded sha256."""
    try:
        with plain_data(data_path, manifest, tempfile.gettempdir()) as plain:
            if plain != data_path:
                passed("decompress", "%s decodes to the original (sha256 %s)"
                       % (manifest["compression"], manifest["original"]["sha256"][:16]))
            yield plain
    except NotReadable as exc:
        raise Refused(exc.check, exc.detail)


def _decode_checks(params, kind, manifest, data_path, result, passed):
    with plain_copy(data_path, manifest, passed) as plain:
        _decode_plain(params, kind, manifest, plain, result, passed)


def _decode_plain(params, kind, manifest, data_path, result, passed):
    if kind == "postgres":
        tables = _decoded(data_path, params.get("bin_dir") or "")
        result["tables"] = tables
        passed("decode", "pg_restore read all of it (%d tables)" % len(tables))
        recorded = manifest.get("tables")
        if isinstance(recorded, dict):
            diff = ["%s: %s rows, manifest says %s" % (t, tables.get(t), recorded.get(t))
                    for t in sorted(set(tables) | set(recorded)) if tables.get(t) != recorded.get(t)]
            if diff:
                raise Refused("rows", "; ".join(diff[:5]))
            passed("rows", "%d rows in %d tables as recorded" % (sum(tables.values()), len(tables)))
    else:
        size = decode_mongo_archive(data_path)
        passed("decode", "gzip stream read to the end (%d bytes of archive)" % size)


def _verify_raw(params, kind, result, passed):
    path = params["path"]
    result["path"] = path
    if not os.path.lexists(path):
        raise Refused("found", "%s does not exist" % path)
    files = data_files(path)
    if not files or all(os.path.getsize(f) == 0 for f in files):
        raise Refused("size", "%s is empty" % path)
    passed("found", path)
    if kind == "postgres":
        result["tables"] = _decoded(path, params.get("bin_dir") or "")
        passed("decode", "pg_restore read all of it (%d tables)" % len(result["tables"]))
    else:
        decode_mongo_archive(path)
        passed("decode", "gzip stream read to the end")
    result["ok"] = True
    result["msg"] = "%s decodes" % path
    return result
