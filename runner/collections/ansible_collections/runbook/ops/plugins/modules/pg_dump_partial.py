#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook-runner maintainers
# License: Apache-2.0
"""First half of a PostgreSQL backup: pg_dump into <name>.dump.partial (or .dir.partial), fsynced."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pg_dump_partial
short_description: Dump a PostgreSQL database into a .partial file or directory, fsynced
description:
  - Runs C(pg_dump) in custom (C(-Fc)) or directory (C(-Fd -j N)) format into C(<dir>/<name>.dump.partial)
    (or C(<name>.dir.partial)), then fsyncs it. Nothing is called a backup yet; M(runbook.ops.backup_verify)
    decodes it and M(runbook.ops.backup_finalize) renames it, writes the manifest and moves C(.latest).
  - Probes first (tool and server versions, database properties); in check mode it only probes and says what
    it would run.
  - The password reaches libpq through an in-memory password file (memfd), never argv or the environment.
  - Stale C(.partial) leftovers of earlier interrupted backups of the same database are removed first.
version_added: "0.1.0"
author: runbook-runner maintainers
options:
  database: {description: Database to dump., type: str, required: true}
  dir: {description: Backup directory (created by the role)., type: path, required: true}
  name: {description: "Backup name; empty: C(<database>[-<tag>]-<UTC yyyymmddTHHMMSSZ>).", type: str, default: ""}
  tag: {description: Word put between the database name and the time in a generated name., type: str, default: ""}
  format: {description: pg_dump archive format., type: str, choices: [custom, directory], default: custom}
  jobs: {description: Parallel dump jobs (directory format only)., type: int, default: 2}
  compression:
    description:
      - C(auto) (zstd where pg_dump supports it, 16 and newer; else gzip), C(gzip), C(zstd), C(lz4) or C(none),
        optionally with a level (C(gzip:9), C(zstd:3)).
    type: str
    default: auto
  lock_wait_timeout: {description: pg_dump --lock-wait-timeout (empty waits forever)., type: str, default: ""}
  remove_stale_partials: {description: Remove leftovers of interrupted backups of this database first., type: bool, default: true}
  login_host: {description: Server host or socket directory (empty - libpq default)., type: str, default: ""}
  login_port: {description: Server port., type: int, default: 5432}
  login_user: {description: Role to connect as (empty - libpq default)., type: str, default: ""}
  login_password: {description: Password of that role., type: str, default: "", no_log: true}
  bin_dir: {description: Directory of the PostgreSQL client tools (empty - PATH)., type: str, default: ""}
"""

EXAMPLES = r"""
- name: Dump shop into a .partial file
  runbook.ops.pg_dump_partial:
    database: shop
    dir: /var/backups/runbook/postgres/shop
    login_host: 127.0.10.21
    login_user: lab
    login_password: "{{ db_password }}"
  no_log: true
"""

RETURN = r"""
name: {description: Backup name., returned: always, type: str}
partial: {description: Path of the .partial file or directory written., returned: always, type: str}
data: {description: Path the data gets once finalized., returned: always, type: str}
manifest: {description: Path the manifest gets once finalized., returned: always, type: str}
format: {description: custom or directory., returned: always, type: str}
compression: {description: "Compression used (method[:level]).", returned: always, type: str}
server_version: {description: Server version string., returned: always, type: str}
tools: {description: Client tool versions (pg_dump, pg_restore)., returned: always, type: dict}
database_properties: {description: Encoding, collation, ctype and owner of the database., returned: always, type: dict}
started: {description: UTC start time (ISO 8601)., returned: always, type: str}
dump_s: {description: Seconds pg_dump took., returned: success, type: float}
removed_partials: {description: Leftovers of interrupted backups that were removed., returned: always, type: list}
command: {description: The pg_dump argv (no secrets in it)., returned: always, type: list}
"""

import datetime
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time

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

COMPRESSION = re.compile(r"^(auto|gzip|zstd|lz4|none)(?::(\d+))?$")


def compression_args(spec, pg_dump_major):
    """pg_dump arguments for a compression spec, and the effective spec for the manifest."""
    m = COMPRESSION.match(spec or "auto")
    if not m:
        raise ValueError("compression must be auto, gzip, zstd, lz4 or none, optionally with :LEVEL (got %r)" % spec)
    method, level = m.group(1), m.group(2)
    if method == "auto":
        method = "zstd" if pg_dump_major >= 16 else "gzip"
    if pg_dump_major >= 16:
        detail = method + (":" + level if level and method != "none" else "")
        return ["--compress=" + detail], detail
    if method in ("zstd", "lz4"):
        raise ValueError(
            "pg_dump %d compresses with gzip only (%s needs pg_dump 16 or newer); use compression auto or gzip"
            % (pg_dump_major, method)
        )
    if method == "none":
        return ["-Z", "0"], "none"
    if level is not None:
        if not 1 <= int(level) <= 9:
            raise ValueError("gzip level must be 1..9 (got %s)" % level)
        return ["-Z", level], "gzip:" + level
    return [], "gzip"


def backup_name(database, tag, directory, fmt, now=None):
    """<database>[-<tag>]-<UTC stamp>, with -2, -3... when a backup of that second already exists."""
    base = "%s-%s%s" % (safe_file_part(database), (safe_file_part(tag) + "-") if tag else "", utc_stamp(now))
    name, n = base, 1
    while True:
        paths = backup_paths(directory, name, fmt)
        if not any(os.path.lexists(p) for p in paths.values()):
            return name
        n += 1
        name = "%s-%d" % (base, n)


def stale_partials(directory, database):
    """Leftovers of interrupted backups of this database: *.partial data and *.tmp manifests/markers."""
    prefix = os.path.join(glob.escape(directory), glob.escape(safe_file_part(database)) + "-")
    found = glob.glob(prefix + "*" + PARTIAL_SUFFIX) + glob.glob(prefix + "*" + MANIFEST_SUFFIX + ".tmp")
    return sorted(set(found))


def remove_path(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def dump_argv(client, database, partial, fmt, jobs, compression, lock_wait_timeout):
    argv = [client.tool("pg_dump"), "-F", "c" if fmt == "custom" else "d", "-f", partial]
    if fmt == "directory":
        argv += ["-j", str(max(1, int(jobs)))]
    argv += compression
    if lock_wait_timeout:
        argv += ["--lock-wait-timeout=" + lock_wait_timeout]
    argv += ["-d", client.conninfo(database)]
    return argv


PROBE_SQL = """SELECT json_build_object(
  'server_version', current_setting('server_version'),
  'server_version_num', current_setting('server_version_num')::int,
  'encoding', pg_encoding_to_char(d.encoding),
  'collate', d.datcollate, 'ctype', d.datctype,
  'owner', pg_get_userbyid(d.datdba))
FROM pg_database d WHERE d.datname = current_database();
"""


def probe(client, database):
    tools = {"pg_dump": client.version("pg_dump"), "pg_restore": client.version("pg_restore")}
    info = client.query_json(database, PROBE_SQL, what="probe of database %s" % database)
    props = {k: info[k] for k in ("encoding", "collate", "ctype", "owner")}
    return tools, info, props


def run(params, check_mode=False):
    """Everything the module does, callable without Ansible. Returns the result dict; raises PgError/ValueError."""
    database = params["database"]
    directory = os.path.abspath(params["dir"])
    fmt = params.get("format") or "custom"
    client = PgClient(
        params.get("login_host"), params.get("login_port"), params.get("login_user"),
        params.get("login_password"), params.get("bin_dir"),
    )
    tools, info, props = probe(client, database)
    compression, effective = compression_args(params.get("compression") or "auto", tool_major(tools["pg_dump"]))
    name = params.get("name") or backup_name(database, params.get("tag") or "", directory, fmt)
    paths = backup_paths(directory, name, fmt)
    argv = dump_argv(
        client, database, paths["partial"], fmt, params.get("jobs") or 2, compression,
        params.get("lock_wait_timeout") or "",
    )
    result = {
        "changed": True, "name": name, "dir": directory, "database": database, "format": fmt,
        "partial": paths["partial"], "data": paths["data"], "manifest": paths["manifest"],
        "compression": effective, "server_version": info["server_version"],
        "server_version_num": info["server_version_num"], "tools": tools, "database_properties": props,
        "started": utc_iso(), "removed_partials": [], "command": argv,
    }
    if params.get("remove_stale_partials", True):
        result["removed_partials"] = stale_partials(directory, database)
    if check_mode:
        result["msg"] = "would dump %s into %s (%s, %s)" % (database, paths["partial"], fmt, effective)
        return result
    if not os.path.isdir(directory):
        raise ValueError("backup directory %s does not exist" % directory)
    for path in result["removed_partials"]:
        remove_path(path)
    if any(os.path.lexists(p) for p in paths.values()):
        raise ValueError("backup %s already exists in %s" % (name, directory))
    t0 = time.time()
    proc = client.popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate()
    finally:
        client.close_secret(proc)
    if proc.returncode != 0:
        if os.path.lexists(paths["partial"]):
            remove_path(paths["partial"])
        raise PgError("pg_dump of %s failed (exit %d): %s" % (database, proc.returncode, tail(err.decode("utf-8", "replace"))))
    fsync_tree(paths["partial"])
    fsync_path(directory)
    result["dump_s"] = round(time.time() - t0, 3)
    result["msg"] = "dumped %s into %s in %.1fs" % (database, paths["partial"], result["dump_s"])
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            database=dict(type="str", required=True),
            dir=dict(type="path", required=True),
            name=dict(type="str", default=""),
            tag=dict(type="str", default=""),
            format=dict(type="str", default="custom", choices=["custom", "directory"]),
            jobs=dict(type="int", default=2),
            compression=dict(type="str", default="auto"),
            lock_wait_timeout=dict(type="str", default=""),
            remove_stale_partials=dict(type="bool", default=True),
            login_host=dict(type="str", default=""),
            login_port=dict(type="int", default=5432),
            login_user=dict(type="str", default=""),
            login_password=dict(type="str", default="", no_log=True),
            bin_dir=dict(type="str", default=""),
        ),
        supports_check_mode=True,
    )
    try:
        result = run(module.params, check_mode=module.check_mode)
    except (PgError, ValueError, OSError) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
