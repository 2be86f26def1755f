#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook-runner maintainers
# License: Apache-2.0
"""Read-only look at a PostgreSQL database: does it exist, its properties, exact row counts per table."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pg_inspect
short_description: Probe a PostgreSQL database - existence, properties, exact row counts per table
description:
  - Connects with C(psql) (no psycopg2 needed on the host) and reports whether the database exists, its
    encoding, collation and owner, the number of sessions connected, and exact row counts (C(count(*)), one
    repeatable-read snapshot) of every table holding rows (ordinary tables and partitions, as pg_dump
    dumps them) outside the system schemas.
  - Reads only; runs the same in check mode.
version_added: "0.1.0"
author: runbook-runner maintainers
options:
  database: {description: Database to inspect., type: str, required: true}
  row_counts: {description: Count the rows of every table., type: bool, default: true}
  maintenance_db: {description: Database to connect to when checking that O(database) exists., type: str, default: postgres}
  login_host: {description: Server host or socket directory (empty - libpq default)., type: str, default: ""}
  login_port: {description: Server port., type: int, default: 5432}
  login_user: {description: Role to connect as (empty - libpq default)., type: str, default: ""}
  login_password: {description: Password of that role., type: str, default: "", no_log: true}
  bin_dir: {description: Directory of the PostgreSQL client tools (empty - PATH)., type: str, default: ""}
"""

EXAMPLES = r"""
- name: Count the rows of shop
  runbook.ops.pg_inspect:
    database: shop
    login_host: 127.0.10.21
    login_user: lab
    login_password: "{{ db_password }}"
  no_log: true
"""

RETURN = r"""
exists: {description: Whether the database exists., returned: always, type: bool}
server_version: {description: Server version., returned: always, type: str}
database_properties: {description: Encoding, collate, ctype and owner., returned: when it exists, type: dict}
connections: {description: Sessions connected to the database (other than this probe)., returned: when it exists, type: int}
tables: {description: "Table (schema.table) -> exact row count.", returned: when it exists, type: dict}
"""

import datetime
import json
import os
import re
import shutil
import subprocess
import tempfile

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

EXISTS_SQL = """SELECT json_build_object(
  'server_version', current_setting('server_version'),
  'server_version_num', current_setting('server_version_num')::int,
  'database', (SELECT json_build_object('encoding', pg_encoding_to_char(d.encoding), 'collate', d.datcollate,
                 'ctype', d.datctype, 'owner', pg_get_userbyid(d.datdba))
               FROM pg_database d WHERE d.datname = %(db)s),
  'connections', (SELECT count(*) FROM pg_stat_activity a WHERE a.datname = %(db)s AND a.pid <> pg_backend_pid()));
"""


def inspect(params):
    client = PgClient(
        params.get("login_host"), params.get("login_port"), params.get("login_user"),
        params.get("login_password"), params.get("bin_dir"),
    )
    database = params["database"]
    info = client.query_json(params.get("maintenance_db") or "postgres",
                             EXISTS_SQL % {"db": quote_literal(database)}, what="probe of the server")
    result = {"changed": False, "database": database, "exists": info["database"] is not None,
              "server_version": info["server_version"], "server_version_num": info["server_version_num"]}
    if result["exists"]:
        result["database_properties"] = info["database"]
        result["connections"] = info["connections"]
        if params.get("row_counts", True):
            result["tables"] = count_rows(client, database)
    result["msg"] = ("%s: %d tables, %d rows" % (database, len(result.get("tables", {})),
                                                   sum(result.get("tables", {}).values()))
                     if result["exists"] else "database %s does not exist" % database)
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            database=dict(type="str", required=True),
            row_counts=dict(type="bool", default=True),
            maintenance_db=dict(type="str", default="postgres"),
            login_host=dict(type="str", default=""),
            login_port=dict(type="int", default=5432),
            login_user=dict(type="str", default=""),
            login_password=dict(type="str", default="", no_log=True),
            bin_dir=dict(type="str", default=""),
        ),
        supports_check_mode=True,
    )
    try:
        result = inspect(module.params)
    except (PgError, ValueError, OSError) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
