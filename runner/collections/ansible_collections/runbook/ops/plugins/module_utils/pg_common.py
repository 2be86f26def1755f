# -*- coding: utf-8 -*-
# Copyright: runbook-runner maintainers
# License: Apache-2.0
"""PostgreSQL client helpers shared by the runbook.ops database modules, on the Python standard library.

The managed hosts have no psycopg2, so everything goes through the client tools (psql, pg_dump, pg_restore) run
by PgClient. The password reaches libpq through a password file that exists only in memory (memfd, passed as
PGPASSFILE=/proc/self/fd/N): never in argv, never in the environment, never on disk. Also here: identifier and
literal quoting, schema.table parsing and display, tool versions, UTC stamps and exact per-table row counts, and
the connection options every PostgreSQL module takes (LOGIN_ARGUMENT_SPEC, documented once in
doc_fragments/postgres.py) with the way a module exits.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import os
import re
import shutil
import subprocess
import tempfile

from ansible_collections.runbook.ops.plugins.module_utils.host_work import tracked_popen, start_work


class PgError(Exception):
    """A PostgreSQL client tool failed; the message says which one and why."""


class ModuleFailure(Exception):
    """The module fails with this message and these fields of its result."""

    def __init__(self, message, **extra):
        Exception.__init__(self, message)
        self.extra = extra


LOGIN_ARGUMENT_SPEC = dict(
    login_host=dict(type="str", default=""),
    login_port=dict(type="int", default=5432),
    login_user=dict(type="str", default=""),
    login_password=dict(type="str", default="", no_log=True),
    bin_dir=dict(type="str", default=""),
)


def exit_module(ansible_module, action, argument_spec, name="runbook.ops"):
    """Run action(params, check_mode) as an Ansible module (check mode supported) with these options, and exit
    with its result, or fail with the error's message. The module passes its AnsibleModule class: these helpers
    stay importable without Ansible. Its work on the host (module_utils/host_work) ends with it, at its
    runbook_timeout or when the run that started it is gone; a failure then says so (and `stopped` why)."""
    module = ansible_module(argument_spec=argument_spec, supports_check_mode=True)
    work = start_work(name, module.params)

    def fail(message, extra):
        message = work.explain(message)
        if work.stopped:
            end_lost_sessions(PgClient.from_params(module.params), work.started)
        work.finish(True, message)
        module.fail_json(msg=message, **(dict(extra, stopped=work.reason) if work.stopped else extra))

    try:
        result = action(module.params, check_mode=module.check_mode)
    except ModuleFailure as exc:
        fail(str(exc), exc.extra)
    except (PgError, ValueError, OSError) as exc:
        fail(str(exc), {})
    work.finish(False, str(result.get("msg") or ""))
    module.exit_json(**result)


# The server sessions of this host's `runbook` clients, started since a moment (epoch seconds).
SESSIONS_SQL = """SELECT coalesce(json_agg(json_build_array(pid, client_port)), '[]') FROM pg_stat_activity
WHERE application_name = 'runbook' AND client_addr = inet_client_addr() AND pid <> pg_backend_pid()
  AND backend_start >= to_timestamp(%d);
"""


def established_ports(tables=("/proc/net/tcp", "/proc/net/tcp6")):
    """Local ports of this host's established TCP connections."""
    ports = set()
    for table in tables:
        try:
            with open(table) as handle:
                lines = handle.read().splitlines()[1:]
        except OSError:
            continue
        for fields in (line.split() for line in lines):
            if len(fields) > 3 and fields[3] == "01":
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def end_lost_sessions(client, since, database="postgres"):
    """After a module's work was stopped, end the server sessions its ended clients left behind (a pg_dump waiting
    on a lock, an index build): sessions from this host's address, started since the module did, whose client
    port no connection on this host has any more. Clients on a unix socket cannot be told apart: left alone.
    Best effort; the pids ended."""
    try:
        rows = client.query_json(database, SESSIONS_SQL % int(since), what="sessions left by the stopped work") or []
        alive = established_ports()
        lost = sorted(int(pid) for pid, port in rows if port is not None and int(port) not in alive)
        if lost:
            client.psql(database, "SELECT pg_terminate_backend(pid) FROM unnest(ARRAY[%s]) pid;"
                        % ", ".join(str(pid) for pid in lost), what="end of the sessions left")
    except (PgError, ValueError, TypeError):
        return []
    return lost


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

    @classmethod
    def from_params(cls, params):
        """The client for a module's LOGIN_ARGUMENT_SPEC options."""
        return cls(params.get("login_host"), params.get("login_port"), params.get("login_user"),
                   params.get("login_password"), params.get("bin_dir"))

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
            proc = tracked_popen(argv, env=env, pass_fds=(fd,) if fd is not None else (), **kwargs)
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

# A table's rows counted as pg_dump's COPY of it holds them (and so as a backup's manifest counts them): its own
# rows only (ONLY - not those of its inheritance children), and all of them (row_security off, as pg_dump sets
# it: where a policy would hide rows, the count fails instead of coming out short).
ALL_ROWS = "SET row_security = off;\n"
COUNT_OWN_ROWS = "SELECT count(*) FROM ONLY %s"

COUNTS_SQL = ALL_ROWS + """BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;
SELECT coalesce(json_agg(json_build_array(t.nspname, t.relname,
  (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM ONLY %%I.%%I', t.nspname, t.relname),
                                       false, true, '')))[1]::text::bigint) ORDER BY t.nspname, t.relname), '[]')
FROM (%s) t;
COMMIT;
""" % TABLES_SQL


def count_rows(client, database, settings=""):
    """Exact row count of every table holding rows, each as its data in a pg_dump (ALL_ROWS, COUNT_OWN_ROWS), in
    one snapshot. `settings`: SQL run first in the session (SET ...)."""
    rows = client.query_json(database, settings + COUNTS_SQL, what="row counts of %s" % database) or []
    return dict((display_name(schema, name), int(count)) for schema, name, count in rows)
