#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook-runner maintainers
# License: Apache-2.0
"""Prove a backup is whole before anyone relies on it: manifest, sizes, sha256, full decode, row counts."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: backup_verify
short_description: Verify a backup against its manifest and by decoding all of it
description:
  - With O(backup), finds a finished backup in O(dir) (C(latest) follows the C(.latest) marker) and runs the
    checks in order, stopping at the first that fails - C(found), C(manifest), C(kind), C(database),
    C(files), C(size) (missing, empty or truncated files), C(sha256) (any flipped bit), C(decode) (a full
    decode - C(pg_restore -f -) for PostgreSQL, reading the whole gzip stream for MongoDB archives), C(rows)
    (row counts in the decoded data against the manifest) and C(tables) (the tables asked for are in it).
  - The failure message names the check that failed and why; every check run is returned as C(checks).
  - With O(path) instead, decodes a raw data path that has no manifest yet (a C(.partial) before it is
    finalized) and returns what it holds (PostgreSQL - row counts per table).
  - Reads only; runs the same in check mode.
version_added: "0.1.0"
author: runbook-runner maintainers
options:
  dir: {description: Backup directory., type: path, default: ""}
  backup: {description: "C(latest) (the C(.latest) marker), another marker (C(.pre-migration-<run>)), a backup name, or the path of its data or manifest file.", type: str, default: ""}
  path: {description: Raw data path to decode (no manifest checks)., type: path, default: ""}
  kind: {description: What the backup is of., type: str, choices: [postgres, mongodb], default: postgres}
  format: {description: Data format when O(path) is given., type: str, choices: [custom, directory, archive], default: custom}
  database: {description: Database the backup must be of (empty - any)., type: str, default: ""}
  tables: {description: Tables (PostgreSQL) or collections (MongoDB) that must be in the backup., type: list, elements: str, default: []}
  decode: {description: Run the full decode check., type: bool, default: true}
  bin_dir: {description: Directory of pg_restore (empty - PATH)., type: str, default: ""}
"""

EXAMPLES = r"""
- name: Refuse a bad backup before touching the live database
  runbook.ops.backup_verify:
    dir: /var/backups/runbook/postgres/shop
    backup: latest
    database: shop
"""

RETURN = r"""
ok: {description: Every check passed., returned: always, type: bool}
checks: {description: "Checks run, in order: list of {name, ok, detail}.", returned: always, type: list}
name: {description: Backup name., returned: when found, type: str}
path: {description: Data path (file or directory)., returned: when found, type: str}
manifest_path: {description: Manifest path., returned: when found, type: str}
manifest: {description: The manifest., returned: when found, type: dict}
tables: {description: Row counts per table found by decoding (PostgreSQL)., returned: when decoded, type: dict}
"""

import datetime
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import zlib

try:
    from ansible.module_utils.basic import AnsibleModule
except ImportError:  # imported as a plain library on a host (drills, tests): stdlib only
    AnsibleModule = None

# ==== runbook.ops shared block: pgcli (identical in every module that has it; tests/unit checks) ====
class PgError(Exception):
    """A PostgreSQL client tool failed; the message says which one and why."""


def quote_ident(name):
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value):
    return "'" + value.replace("'", "''") + "'"


def quote_conninfo(value):
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


_PLAIN_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")


def display_name(schema, name):
    """schema.table as shown in manifests and reports: parts quoted only when they need it."""
    parts = [p if _PLAIN_IDENT.match(p) else quote_ident(p) for p in (schema, name)]
    return ".".join(parts)


def parse_qualified(text, default_schema="public"):
    """'orders', 'public.orders', '"My Schema"."Orders"' -> (schema, name); unquoted parts fold to lower case."""
    parts, i, n = [], 0, len(text)
    while i < n:
        if text[i] == '"':
            j, buf = i + 1, []
            while True:
                if j >= n:
                    raise ValueError("unterminated quoted identifier in %r" % text)
                if text[j] == '"':
                    if j + 1 < n and text[j + 1] == '"':
                        buf.append('"')
                        j += 2
                        continue
                    break
                buf.append(text[j])
                j += 1
            parts.append("".join(buf))
            i = j + 1
        else:
            j = i
            while j < n and text[j] not in '."':
                j += 1
            part = text[i:j].strip()
            if not part:
                raise ValueError("empty name part in %r" % text)
            parts.append(part.lower())
            i = j
        if i < n:
            if text[i] != ".":
                raise ValueError("unexpected %r in %r" % (text[i], text))
            i += 1
            if i == n:
                raise ValueError("trailing dot in %r" % text)
    if len(parts) == 1:
        return default_schema, parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    raise ValueError("expected table or schema.table, got %r" % text)


def sql_name(qualified):
    schema, name = parse_qualified(qualified)
    return quote_ident(schema) + "." + quote_ident(name)


class PgClient(object):
    """Runs psql, pg_dump and pg_restore. The password reaches libpq through a password file that exists
    only in memory (memfd, passed as PGPASSFILE=/proc/self/fd/N): never in argv, never in the environment,
    never on disk."""

    def __init__(self, host="", port=5432, user="", password="", bin_dir="", connect_timeout=10):
        self.host = host or ""
        self.port = int(port or 5432)
        self.user = user or ""
        self.password = password or ""
        self.bin_dir = bin_dir or ""
        self.connect_timeout = int(connect_timeout or 10)

    def tool(self, name):
        return os.path.join(self.bin_dir, name) if self.bin_dir else name

    def conninfo(self, database):
        return "dbname=" + quote_conninfo(database)

    def _env(self):
        env = dict(os.environ)
        env.pop("PGDATABASE", None)
        if self.password:
            env.pop("PGPASSWORD", None)
            env.pop("PGPASSFILE", None)
        if self.host:
            env["PGHOST"] = self.host
        env["PGPORT"] = str(self.port)
        if self.user:
            env["PGUSER"] = self.user
        env["PGCONNECT_TIMEOUT"] = str(self.connect_timeout)
        env["PGAPPNAME"] = "runbook"
        env["LC_ALL"] = "C"
        return env

    def _passfile(self):
        def esc(v):
            return v.replace("\\", "\\\\").replace(":", "\\:")

        data = ("*:*:*:%s:%s\n" % (esc(self.user) if self.user else "*", esc(self.password))).encode("utf-8")
        memfd = getattr(os, "memfd_create", None)
        if memfd is not None:
            fd = memfd("runbook-pgpass", 0)
            os.write(fd, data)
            os.fchmod(fd, 0o600)
            return fd, "/proc/self/fd/%d" % fd, None
        tmpdir = tempfile.mkdtemp(prefix="runbook-pg-")
        path = os.path.join(tmpdir, "pgpass")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, data)
        os.close(fd)
        return None, path, tmpdir

    def popen(self, argv, **kwargs):
        """subprocess.Popen with the connection environment; the caller must call .close_secret(proc)."""
        env = self._env()
        fd, path, tmpdir = (None, None, None)
        if self.password:
            fd, path, tmpdir = self._passfile()
            env["PGPASSFILE"] = path
        try:
            proc = subprocess.Popen(argv, env=env, pass_fds=(fd,) if fd is not None else (), **kwargs)
        except OSError as exc:
            self._drop_secret(fd, tmpdir)
            raise PgError("cannot run %s: %s" % (argv[0], exc))
        proc._runbook_secret = (fd, tmpdir)
        return proc

    @staticmethod
    def _drop_secret(fd, tmpdir):
        if fd is not None:
            os.close(fd)
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)

    def close_secret(self, proc):
        self._drop_secret(*getattr(proc, "_runbook_secret", (None, None)))
        proc._runbook_secret = (None, None)

    def run(self, argv, input_text=None, timeout=None, check=True, what=None):
        proc = self.popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = proc.communicate(input_text.encode("utf-8") if input_text is not None else None, timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise PgError("%s timed out after %ss" % (what or os.path.basename(argv[0]), timeout))
        finally:
            self.close_secret(proc)
        out, err = out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
        if check and proc.returncode != 0:
            raise PgError("%s failed (exit %d): %s" % (what or os.path.basename(argv[0]), proc.returncode, tail(err)))
        return proc.returncode, out, err

    def psql(self, database, sql, what=None, timeout=None, single_transaction=False):
        """Run SQL (fed on stdin) with ON_ERROR_STOP; returns unaligned, tuples-only output."""
        argv = [self.tool("psql"), "-X", "-q", "-w", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", self.conninfo(database)]
        if single_transaction:
            argv.append("--single-transaction")
        argv += ["-f", "-"]
        return self.run(argv, input_text=sql, timeout=timeout, what=what or "psql")[1]

    def query_json(self, database, sql, what=None):
        out = self.psql(database, sql, what=what).strip()
        return json.loads(out) if out else None

    def version(self, tool):
        rc, out, err = self.run([self.tool(tool), "--version"], what="%s --version" % tool)
        return out.strip()


def tool_major(version_text):
    m = re.search(r"(\d+)(?:\.(\d+))?", version_text or "")
    return int(m.group(1)) if m else 0


def tail(text, lines=12):
    rows = [r for r in (text or "").strip().splitlines() if r.strip()]
    return "\n".join(rows[-lines:]) if rows else "(no output)"


def utc_stamp(now=None):
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("%Y%m%dT%H%M%SZ")


def utc_iso(now=None):
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


TABLES_SQL = """SELECT n.nspname, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname !~ '^pg_toast' AND n.nspname !~ '^pg_temp'"""

COUNTS_SQL = """BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;
SELECT coalesce(json_agg(json_build_array(t.nspname, t.relname,
  (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %%I.%%I', t.nspname, t.relname),
                                       false, true, '')))[1]::text::bigint) ORDER BY t.nspname, t.relname), '[]')
FROM (%s) t;
COMMIT;
""" % TABLES_SQL


def count_rows(client, database):
    """Exact row count of every table holding rows (as pg_dump dumps them), in one snapshot."""
    rows = client.query_json(database, COUNTS_SQL, what="row counts of %s" % database) or []
    return dict((display_name(schema, name), int(count)) for schema, name, count in rows)


# ==== end of shared block: pgcli ====

# ==== runbook.ops shared block: files (identical in every module that has it; tests/unit checks) ====
CHUNK = 1024 * 1024


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while True:
            block = handle.read(CHUNK)
            if not block:
                break
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
    """Write bytes to path through path.tmp: fsync, rename, fsync the directory."""
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)
    fsync_path(os.path.dirname(path) or ".")


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


# ==== end of shared block: files ====

MONGO_ARCHIVE_MAGIC = b"\x6d\xe2\x99\x81"  # 0x8199e26d little-endian, first bytes of a mongodump archive


class Refused(Exception):
    def __init__(self, check, detail):
        Exception.__init__(self, "%s check failed: %s" % (check, detail))
        self.check = check
        self.detail = detail


def _data_header(line):
    """TOC comment before each section of pg_restore's script: '-- Data for Name: ...; Type: TABLE DATA; ...'."""
    return line.startswith(b"-- Data for Name: ") and b"; Type: TABLE DATA;" in line


def copy_table(line):
    """'COPY public.orders (id, x) FROM stdin;' -> 'public.orders' (display form)."""
    text = line.decode("utf-8", "replace").rstrip("\n")
    if not (text.startswith("COPY ") and text.endswith(" FROM stdin;")):
        return None
    body = text[5:-len(" FROM stdin;")]
    # the qualified name ends at the column list ' (' that is outside quotes, or at the end
    i, in_quote = 0, False
    while i < len(body):
        ch = body[i]
        if ch == '"':
            in_quote = not in_quote
        elif ch == " " and not in_quote:
            break
        i += 1
    schema, name = parse_qualified(body[:i])
    return display_name(schema, name)


def count_copy_rows(stream):
    """Row counts per table from a pg_restore plain-text stream (one COPY line per row).

    Only a COPY right after a 'TABLE DATA' section header counts, so SQL text that merely looks like
    COPY (in a function body) is not mistaken for data."""
    tables, current, armed = {}, None, False
    for line in stream:
        if current is not None:
            if line in (b"\\.\n", b"\\."):
                current = None
            else:
                tables[current] += 1
        elif line.startswith(b"-- "):
            if _data_header(line):
                armed = True
            elif line.startswith(b"-- Name: "):
                armed = False
        elif armed and line.startswith(b"COPY "):
            table = copy_table(line)
            if table is not None:
                tables.setdefault(table, 0)
                current, armed = table, False
    if current is not None:
        raise Refused("decode", "the data of %s ends in the middle of its rows" % current)
    return tables


def decode_postgres(path, bin_dir=""):
    """Decode every byte of a pg_dump archive (pg_restore to a script, read to the end); row counts per table."""
    tool = os.path.join(bin_dir, "pg_restore") if bin_dir else "pg_restore"
    env = dict(os.environ, LC_ALL="C")
    with tempfile.TemporaryFile() as errfile:
        try:
            proc = subprocess.Popen([tool, "-f", "-", path], stdout=subprocess.PIPE, stderr=errfile,
                                    stdin=subprocess.DEVNULL, env=env)
        except OSError as exc:
            raise Refused("decode", "cannot run pg_restore: %s" % exc)
        try:
            tables = count_copy_rows(proc.stdout)
        except Refused:
            proc.kill()
            proc.wait()
            raise
        finally:
            proc.stdout.close()
        rc = proc.wait()
        errfile.seek(0)
        err = errfile.read().decode("utf-8", "replace")
    if rc != 0:
        raise Refused("decode", "pg_restore cannot read %s (exit %d): %s" % (path, rc, tail(err, 4)))
    return tables


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
        if params.get("decode", True):
            _decode_checks(params, kind, manifest, data_path, result, passed)
        wanted = params.get("tables") or []
        if wanted and kind == "postgres":
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
        result["ok"] = True
        result["msg"] = "backup %s verified (%s)" % (name, ", ".join(c["name"] for c in checks))
        return result
    except Refused as exc:
        checks.append({"name": exc.check, "ok": False, "detail": exc.detail})
        exc.result = result
        raise


def _decode_checks(params, kind, manifest, data_path, result, passed):
    if kind == "postgres":
        tables = decode_postgres(data_path, params.get("bin_dir") or "")
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
        result["tables"] = decode_postgres(path, params.get("bin_dir") or "")
        passed("decode", "pg_restore read all of it (%d tables)" % len(result["tables"]))
    else:
        decode_mongo_archive(path)
        passed("decode", "gzip stream read to the end")
    result["ok"] = True
    result["msg"] = "%s decodes" % path
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            dir=dict(type="path", default=""),
            backup=dict(type="str", default=""),
            path=dict(type="path", default=""),
            kind=dict(type="str", default="postgres", choices=["postgres", "mongodb"]),
            format=dict(type="str", default="custom", choices=["custom", "directory", "archive"]),
            database=dict(type="str", default=""),
            tables=dict(type="list", elements="str", default=[]),
            decode=dict(type="bool", default=True),
            bin_dir=dict(type="str", default=""),
        ),
        required_one_of=[("backup", "path")],
        mutually_exclusive=[("backup", "path")],
        supports_check_mode=True,
    )
    try:
        result = verify(module.params)
    except Refused as exc:
        result = getattr(exc, "result", {"checks": []})
        result.update(changed=False, ok=False, failed_check=exc.check)
        module.fail_json(msg="backup refused: %s" % exc, **result)
    except (OSError, ValueError) as exc:
        module.fail_json(msg="backup refused: %s" % exc, changed=False, ok=False)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
