#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook-runner maintainers
# License: Apache-2.0
"""Restore a verified pg_dump archive: swap (temp database + rename), in_place, or selected tables."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pg_restore_backup
short_description: Restore a PostgreSQL backup by rename swap, in place, or table by table in one transaction
description:
  - C(swap) - restores into a new database C(<db>__restore_<stamp>), checks its row counts against the
    manifest, then in one short transaction terminates the sessions of the live database and renames it to
    C(<db>__pre_<stamp>) and the restored one to the live name. Until that commit the live database is not
    touched; a failure (or a kill) before it leaves it as it was and the temporary database is dropped (or
    dropped by the next run / C(cleanup)).
  - C(in_place) - drops the live database, creates it again and restores into it (seed 004); the role keeps
    a safety backup to put back if this fails.
  - C(tables) - restores only the listed tables into the live database in one transaction - TRUNCATE, the
    data of each table (streamed from C(pg_restore --data-only)), a row count check, then COMMIT, sent only
    after pg_restore succeeded (ON_ERROR_STOP; an interruption rolls everything back). Other tables are
    untouched.
  - C(revert) - swaps a C(<db>__pre_<stamp>) database kept by an earlier swap back in place.
  - C(cleanup) - drops temporary C(<db>__restore_*) databases that interrupted swaps left behind.
  - In check mode, says what it would do.
version_added: "0.1.0"
author: runbook-runner maintainers
extends_documentation_fragment: [runbook.ops.postgres]
options:
  database: {description: Live database name., type: str, required: true}
  mode: {description: How to restore., type: str, choices: [swap, in_place, tables, revert, cleanup], default: swap}
  path: {description: Data path of the verified backup (file or directory)., type: path, default: ""}
  manifest:
    description:
      - The backup's manifest. A backup backup_retention compressed is decoded beside it into a scratch file
        proved equal to the original's sha256, and that is what pg_restore reads.
      - While the restore reads the backup, C(.reading-<name>@<pid>) in its directory holds it, and backup_retention
        neither deletes nor compresses it.
    type: path
    default: ""
  expected_rows: {description: "Table -> row count from the backup's manifest; checked after the restore.", type: dict, default: {}}
  database_properties: {description: Encoding, collate, ctype and owner for the new database (from the manifest)., type: dict, default: {}}
  tables: {description: Tables to restore in mode C(tables) (C(orders) or C(schema.orders))., type: list, elements: str, default: []}
  jobs: {description: Parallel pg_restore jobs (swap and in_place)., type: int, default: 2}
  keep_previous: {description: Keep the replaced database as C(<db>__pre_<stamp>) after a swap., type: bool, default: true}
  count_before:
    description:
      - Count the rows of every table of the live database before it is replaced (returned as C(rows_before)).
        In mode C(swap) the count runs while pg_restore fills the temporary database, in one snapshot.
    type: bool
    default: false
  terminate_connections: {description: Terminate sessions on the live database for the swap., type: bool, default: true}
  swap_attempts: {description: Times the swap is tried when new sessions race it., type: int, default: 5}
  lock_timeout: {description: lock_timeout for the swap and the table restore transaction., type: str, default: 10s}
  disable_triggers: {description: Disable triggers while loading table data (mode C(tables); superuser)., type: bool, default: false}
  no_owner: {description: Do not restore object ownership (pg_restore --no-owner)., type: bool, default: false}
  previous_database: {description: The C(<db>__pre_<stamp>) database to put back (mode C(revert))., type: str, default: ""}
  stamp: {description: Suffix for temporary names (empty - UTC now)., type: str, default: ""}
  maintenance_db: {description: Database to connect to for CREATE, DROP and RENAME., type: str, default: postgres}
  runbook_timeout:
    description:
      - Seconds the restore may take (0 - no limit; the rendered step sets it from its C(timeout)). At the limit,
        or when the run that started the module is gone, pg_restore and psql are ended, a swap drops its temporary
        database, and the module fails saying what it left (C(live_database)); what it leaves is also kept in the
        run's state file on the host (see M(runbook.ops.work_state)).
    type: float
    default: 0.0
"""

EXAMPLES = r"""
- name: Restore shop by rename swap
  runbook.ops.pg_restore_backup:
    database: shop
    mode: swap
    path: /var/backups/runbook/postgres/shop/shop-20250101T000000Z.dump
    expected_rows: {public.orders: 1000, public.wallet: 100}
    login_host: 127.0.10.21
    login_user: lab
    login_password: "{{ db_password }}"
  no_log: true
"""

RETURN = r"""
restored: {description: What was restored, in one sentence., returned: success, type: str}
live_touched: {description: Whether the live database was changed (also on failure)., returned: always, type: bool}
live_database: {description: "What the restore left of the live database - untouched, dropping, dropped, restoring, restored, swapped (also on failure).", returned: always, type: str}
stopped: {description: "Why the work was stopped - timeout, orphaned, signal (null when it was not).", returned: failure, type: str}
rows_after: {description: Table -> rows in the live database after the restore., returned: success, type: dict}
rows_before: {description: Table -> rows in the live database before the restore., returned: with count_before, type: dict}
row_check: {description: "List of {table, expected, actual, ok}.", returned: when checked, type: list}
checks: {description: "The row checks as {name, ok, detail} (the report's verification form).", returned: when checked, type: list}
temp_database: {description: Temporary database used by a swap., returned: swap, type: str}
previous_database: {description: Name the replaced database was kept under., returned: swap and revert, type: str}
dropped: {description: Databases dropped (cleanup, or the replaced one when keep_previous is false)., returned: always, type: list}
"""

import contextlib
import datetime
import hashlib
import os
import queue
import re
import subprocess
import tempfile
import threading
import time

try:
    from ansible.module_utils.basic import AnsibleModule
except ImportError:  # imported as a plain library on a host (drills, tests): stdlib only
    AnsibleModule = None

from ansible_collections.runbook.ops.plugins.module_utils.pg_common import (
    ALL_ROWS, COUNT_OWN_ROWS, LOGIN_ARGUMENT_SPEC, TABLES_SQL, PgClient, PgError, count_rows, display_name,
    end_lost_sessions, parse_qualified, quote_ident, quote_literal, sql_name, tail,
)
from ansible_collections.runbook.ops.plugins.module_utils.backup_reading import NotReadable, reading
from ansible_collections.runbook.ops.plugins.module_utils.pg_decode import DecodeError, toc_table_data
from ansible_collections.runbook.ops.plugins.module_utils.host_work import (
    current_work, tracked_popen, start_work,
)


# What an in-place restore stopped midway left of the live database, by the last step it had reached.
LIVE_LEFT = {
    "dropping": "may have been dropped (the stop came during DROP DATABASE)",
    "dropped": "had been dropped and was not created again",
    "restoring": "had been dropped and holds a partial restore",
}


class RestoreFailed(Exception):
    def __init__(self, message, live_touched=False, **extra):
        Exception.__init__(self, message)
        self.live_touched = live_touched
        self.extra = extra


SERVER_SQL = """SELECT json_build_object(
  'server_version_num', current_setting('server_version_num')::int,
  'databases', (SELECT coalesce(json_agg(datname), '[]') FROM pg_database WHERE datname = %(live)s
                   OR datname = %(previous)s OR datname LIKE %(temp_like)s ESCAPE '\\'),
  'live', (SELECT json_build_object('encoding', pg_encoding_to_char(d.encoding), 'collate', d.datcollate,
             'ctype', d.datctype, 'owner', pg_get_userbyid(d.datdba)) FROM pg_database d WHERE d.datname = %(live)s),
  'roles', (SELECT coalesce(json_agg(rolname), '[]') FROM pg_roles WHERE rolname = %(owner)s));
"""

NAME_LIMIT = 63
BASE_LIMIT = 36  # so <base>__reverted_<yyyymmdd_hhmmss> fits in 63 bytes


def name_base(database):
    raw = database.encode("utf-8")
    if len(raw) <= BASE_LIMIT:
        return database
    digest = hashlib.sha1(raw).hexdigest()[:8]
    return raw[: BASE_LIMIT - 9].decode("utf-8", "ignore") + "_" + digest


def derived(database, kind, stamp):
    """<db>__restore_<stamp>, <db>__pre_<stamp>, <db>__reverted_<stamp> (database part shortened if long)."""
    return "%s__%s_%s" % (name_base(database), kind, stamp)


def like_prefix(text):
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def create_sql(name, props, owner_ok):
    sql = "CREATE DATABASE %s TEMPLATE template0" % quote_ident(name)
    if props.get("encoding"):
        sql += " ENCODING %s" % quote_literal(props["encoding"])
    if props.get("collate"):
        sql += " LC_COLLATE %s" % quote_literal(props["collate"])
    if props.get("ctype"):
        sql += " LC_CTYPE %s" % quote_literal(props["ctype"])
    if props.get("owner") and owner_ok:
        sql += " OWNER %s" % quote_ident(props["owner"])
    return sql + ";\n"


def drop_sql(name, server_num):
    if server_num >= 130000:
        return "DROP DATABASE IF EXISTS %s WITH (FORCE);\n" % quote_ident(name)
    return ("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s;\n"
            "DROP DATABASE IF EXISTS %s;\n" % (quote_literal(name), quote_ident(name)))


def terminate_sql(name, server_num):
    fn = "pg_terminate_backend(pid, 5000)" if server_num >= 140000 else "pg_terminate_backend(pid)"
    return ("SELECT count(%s) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid();\n"
            % (fn, quote_literal(name)))


def swap_sql(live, incoming, outgoing, live_exists, terminate, server_num, lock_timeout):
    """One transaction: sessions out, live -> outgoing, incoming -> live. Both renames or neither."""
    sql = "SET lock_timeout = %s;\nBEGIN;\n" % quote_literal(lock_timeout)
    if live_exists:
        if terminate:
            sql += terminate_sql(live, server_num)
        sql += "ALTER DATABASE %s RENAME TO %s;\n" % (quote_ident(live), quote_ident(outgoing))
    sql += "ALTER DATABASE %s RENAME TO %s;\nCOMMIT;\n" % (quote_ident(incoming), quote_ident(live))
    return sql


def row_check(expected, actual):
    checks = []
    for table in sorted(set(expected) | set(actual)):
        want, got = expected.get(table), actual.get(table)
        checks.append({"table": table, "expected": want, "actual": got, "ok": want == got})
    return checks


def as_checks(row_checks):
    """Row checks in the report's {name, ok, detail} form."""
    return [{"name": "rows %s" % c["table"], "ok": c["ok"],
             "detail": "%s rows, the backup has %s" % (c["actual"], c["expected"])} for c in row_checks]


def check_message(checks):
    bad = [c for c in checks if not c["ok"]]
    return "; ".join("%s: %s rows, the backup has %s" % (c["table"], c["actual"], c["expected"]) for c in bad[:5])


def restore_argv(client, database, path, jobs, no_owner, single_transaction):
    argv = [client.tool("pg_restore"), "-w", "-d", client.conninfo(database), "--exit-on-error"]
    if single_transaction:
        argv.append("--single-transaction")
    elif int(jobs) > 1:
        argv += ["-j", str(int(jobs))]
    if no_owner:
        argv.append("--no-owner")
    return argv + [path]


def table_load_sql(tables, expected, lock_timeout):
    """Head and tail of the selective restore transaction; the data of each table streams in between."""
    head = "SET lock_timeout = %s;\n%sBEGIN;\nTRUNCATE ONLY %s;\n" % (
        quote_literal(lock_timeout), ALL_ROWS, ", ".join(sql_name(t) for t in tables))
    checks = []
    for table in tables:
        key = display_name(*parse_qualified(table))
        checks.append(
            "  %s INTO n;\n"
            "  IF n <> %d THEN RAISE EXCEPTION USING MESSAGE = format("
            "'row count check failed for %%s: %%s rows, the backup has %%s', %s, n, %d); END IF;\n"
            % (COUNT_OWN_ROWS % sql_name(table), int(expected[key]), quote_literal(key), int(expected[key])))
    tail_sql = "DO $runbook$\nDECLARE n bigint;\nBEGIN\n%sEND\n$runbook$;\nCOMMIT;\n" % "".join(checks)
    return head, tail_sql


# Counts taken while pg_restore runs stay on one core: the restore keeps the rest.
ONE_CORE = "SET max_parallel_workers_per_gather = 0;\n"
COUNT_ONE_SQL = ONE_CORE + ALL_ROWS + COUNT_OWN_ROWS + ";\n"
LIST_TABLES_SQL = "SELECT coalesce(json_agg(json_build_array(t.nspname, t.relname)), '[]') FROM (%s) t;\n" % TABLES_SQL
FINISHED_ITEM = re.compile(r"finished item (\d+) TABLE DATA ")


class LoadedTableCounter(object):
    """Counts the rows of each table of the restored copy as soon as pg_restore says its data is loaded
    (C(pg_restore -v -j N) prints "finished item <id> TABLE DATA ..."), in a thread, while pg_restore goes on
    building the indexes and constraints of the others. Nothing writes to the temporary database but pg_restore,
    and a table's data is committed when its item finishes, so the count is the table's final count: its own rows
    (COUNT_OWN_ROWS), as the manifest counts them, not those of its inheritance children (other items)."""

    def __init__(self, client, database, entries):
        self.client = client
        self.database = database
        self.by_id = dict((dump_id, (schema, name)) for dump_id, schema, name in entries)
        self.counts = {}
        self._queue = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="count-loaded")
        self._thread.daemon = True
        self._thread.start()

    def line(self, text):
        match = FINISHED_ITEM.search(text)
        if match and int(match.group(1)) in self.by_id:
            self._queue.put(self.by_id[int(match.group(1))])

    def _loop(self):
        while True:
            item = self._queue.get()
            if item is None:
                return
            schema, name = item
            try:
                out = self.client.psql(self.database, COUNT_ONE_SQL % (quote_ident(schema) + "." + quote_ident(name)))
                self.counts[display_name(schema, name)] = int(out.strip().splitlines()[-1])
            except (PgError, ValueError, IndexError):
                pass  # counted again once pg_restore is done

    def finish(self):
        self._queue.put(None)
        self._thread.join()
        return dict(self.counts)


class LiveRowCount(object):
    """The rows of every table of the live database, counted in a thread on one core while pg_restore fills
    the temporary database."""

    def __init__(self, client, database):
        self.database = database
        self.rows, self.error = None, None
        self._thread = threading.Thread(target=self._count, args=(client,), name="count-live")
        self._thread.daemon = True
        self._thread.start()

    def _count(self, client):
        try:
            self.rows = count_rows(client, self.database, ONE_CORE)
        except PgError as exc:
            self.error = str(exc)

    def wait(self):
        self._thread.join()
        if self.error is not None:
            raise RestoreFailed("row count of the live database %s failed: %s" % (self.database, self.error))
        return self.rows


class RestoreTarget(object):
    """The live database and its server as probed, the result so far, and the steps the restore modes are
    made of."""

    def __init__(self, params, check_mode=False):
        self.p = params
        self.source = params.get("source_path") or params.get("path") or ""  # the backup named in messages
        self.check_mode = check_mode
        self.db = params["database"]
        self.client = PgClient.from_params(params)
        self.maint = params.get("maintenance_db") or "postgres"
        self.stamp = params.get("stamp") or datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d_%H%M%S")
        self.lock_timeout = params.get("lock_timeout") or "10s"
        self.expected = dict((display_name(*parse_qualified(k)), int(v))
                             for k, v in (params.get("expected_rows") or {}).items())
        props = params.get("database_properties") or {}
        self.server = self.client.query_json(self.maint, SERVER_SQL % {
            "live": quote_literal(self.db),
            "previous": quote_literal(params.get("previous_database") or ""),
            "temp_like": quote_literal(like_prefix(name_base(self.db) + "__restore_") + "%"),
            "owner": quote_literal(props.get("owner") or ""),
        }, what="probe of the server")
        self.server_num = int(self.server["server_version_num"])
        self.databases = set(self.server["databases"])
        self.live_exists = self.db in self.databases
        self.props = dict(self.server.get("live") or {})
        self.props.update(dict((k, v) for k, v in props.items() if v))
        self.owner_ok = bool(self.server["roles"]) or (self.props.get("owner") == (self.server.get("live") or {}).get("owner"))
        self.result = {"changed": False, "mode": params.get("mode") or "swap", "database": self.db,
                       "live_touched": False, "live_database": "untouched", "dropped": []}
        self.work = current_work()

    def leave(self, live_database):
        """What the restore leaves of the live database from now on (in the result and, at once, on the host)."""
        self.result["live_database"] = live_database
        self.result["live_touched"] = live_database != "untouched"
        self.work.note(live_database=live_database, live_touched=self.result["live_touched"], database=self.db)

    def admin(self, sql, what):
        return self.client.psql(self.maint, sql, what=what)

    def stale_temps(self):
        prefix = name_base(self.db) + "__restore_"
        return sorted(d for d in self.databases if d.startswith(prefix))

    def pg_restore(self, database, single_transaction):
        argv = restore_argv(self.client, database, self.p["path"], self.p.get("jobs") or 2,
                            self.p.get("no_owner"), single_transaction)
        self.result.setdefault("commands", []).append(argv)
        self.client.run(argv, what="pg_restore into %s" % database)

    def count_live_in_background(self):
        """With count_before, count the live database's rows in a thread (the restore does not touch it)."""
        if not (self.p.get("count_before") and self.live_exists):
            return None
        return LiveRowCount(self.client, self.db)

    def collect_before(self, live_count):
        if live_count is None:
            if self.p.get("count_before"):
                self.result["rows_before"] = {}
            return
        self.result["rows_before"] = live_count.wait()

    def pg_restore_counting(self, database):
        """pg_restore -j N into `database`, counting each table as soon as its data is loaded (see
        LoadedTableCounter); returns those counts. Raises PgError when pg_restore fails."""
        jobs = int(self.p.get("jobs") or 2)
        entries = None
        if jobs > 1:
            try:
                entries = toc_table_data(self.p["path"], self.p.get("bin_dir") or "", known=set(self.expected))
            except DecodeError as exc:
                raise PgError(str(exc))
        if not entries:
            self.pg_restore(database, single_transaction=False)
            return {}
        argv = restore_argv(self.client, database, self.p["path"], jobs, self.p.get("no_owner"), False)
        argv.insert(-1, "--verbose")
        self.result.setdefault("commands", []).append(argv)
        counter = LoadedTableCounter(self.client, database, entries)
        last = []
        proc = self.client.popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            for raw in proc.stderr:
                text = raw.decode("utf-8", "replace").rstrip("\n")
                counter.line(text)
                if not text.startswith("pg_restore: ") or "error" in text.lower() or "warning" in text.lower():
                    last = (last + [text])[-6:]
            rc = proc.wait()
        finally:
            proc.stderr.close()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            self.client.close_secret(proc)
            counted = counter.finish()
        if rc != 0:
            raise PgError("pg_restore into %s failed (exit %d): %s" % (database, rc, " / ".join(last)))
        return counted

    def restored_counts(self, database, loaded):
        """Rows of every table of the restored copy: the counts taken while pg_restore ran, the rest now."""
        tables = [display_name(schema, name) for schema, name in
                  (self.client.query_json(database, LIST_TABLES_SQL, what="tables of %s" % database) or [])]
        if tables and all(t in loaded for t in tables):
            return dict((t, loaded[t]) for t in tables)
        return count_rows(self.client, database)

    def restore_checked(self, temp):
        """pg_restore into the temporary database, then check its row counts against the manifest (with
        count_before, the live database is counted meanwhile); the restored counts."""
        timings = self.result.setdefault("timings", {})
        before = self.count_live_in_background()
        started = time.time()
        try:
            loaded = self.pg_restore_counting(temp)
        except PgError as exc:
            if self.work.stopped:
                raise RestoreFailed("restore of %s %s while pg_restore filled the temporary database %s; the live "
                                    "database %s was not touched" % (self.db, self.work.describe(), temp, self.db))
            raise RestoreFailed("decode check failed: the backup does not restore into the temporary database "
                                "(%s); the live database %s was not touched" % (exc, self.db))
        timings["pg_restore_s"] = round(time.time() - started, 3)
        started = time.time()
        self.collect_before(before)
        timings["wait_live_count_s"] = round(time.time() - started, 3)
        started = time.time()
        actual = self.restored_counts(temp, loaded)
        timings["count_restored_s"] = round(time.time() - started, 3)
        checks = row_check(self.expected, actual) if self.expected else []
        self.result["row_check"] = checks
        decoded = {"name": "decode", "ok": True,
                   "detail": "pg_restore read all of %s into %s" % (os.path.basename(self.source), temp)}
        self.result["checks"] = [decoded] + as_checks(checks)
        if any(not c["ok"] for c in checks):
            raise RestoreFailed("row count check failed in %s: %s" % (temp, check_message(checks)))
        return actual

    def need_path(self):
        if not self.p.get("path"):
            raise RestoreFailed("no backup path given")
        if not os.path.exists(self.p["path"]):
            raise RestoreFailed("backup data %s does not exist" % self.p["path"])

    def load_tables(self, keys, head, tail_sql):
        """psql reads BEGIN; TRUNCATE; <data>; <check>; COMMIT from us. COMMIT is written only after every
        pg_restore succeeded; on any failure psql is killed with the transaction open, so it rolls back."""
        argv = [self.client.tool("psql"), "-X", "-q", "-w", "-v", "ON_ERROR_STOP=1",
                "-d", self.client.conninfo(self.db), "-f", "-"]
        errlog = tempfile.TemporaryFile()
        psql = self.client.popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errlog)
        ok, reader = False, None
        try:
            psql.stdin.write(head.encode("utf-8"))
            for key in keys:
                schema, name = parse_qualified(key)
                argv_r = [self.client.tool("pg_restore"), "--data-only", "-n", schema, "-t", name, "-f", "-"]
                if self.p.get("disable_triggers"):
                    argv_r.append("--disable-triggers")
                argv_r.append(self.p["path"])
                self.result.setdefault("commands", []).append(argv_r)
                with tempfile.TemporaryFile() as rerr:
                    reader = tracked_popen(argv_r, stdout=subprocess.PIPE, stderr=rerr, stdin=subprocess.DEVNULL)
                    seen = False
                    for line in reader.stdout:
                        if line.startswith(b"COPY "):
                            seen = True
                        psql.stdin.write(line)
                    rc = reader.wait()
                    reader.stdout.close()
                    if rc != 0:
                        rerr.seek(0)
                        raise RestoreFailed("pg_restore of %s failed (exit %d): %s; nothing was committed" % (
                            key, rc, tail(rerr.read().decode("utf-8", "replace"), 4)))
                if not seen:
                    raise RestoreFailed("the backup holds no data for %s; nothing was committed" % key)
            psql.stdin.write(tail_sql.encode("utf-8"))
            psql.stdin.close()
            rc = psql.wait()
            errlog.seek(0)
            err = errlog.read().decode("utf-8", "replace")
            if rc != 0:
                raise RestoreFailed("restore of %s rolled back: %s" % (", ".join(keys), tail(err, 6)))
            ok = True
        except (IOError, OSError) as exc:  # psql exited early (an error stopped it): report its message
            errlog.seek(0)
            raise RestoreFailed("restore of %s rolled back: %s" % (
                ", ".join(keys), tail(errlog.read().decode("utf-8", "replace"), 6) or exc))
        finally:
            for proc in (reader, psql):
                if not ok and proc is not None and proc.poll() is None:
                    proc.kill()
                    proc.wait()
            if reader is not None:
                reader.stdout.close()
            self.client.close_secret(psql)
            errlog.close()


class Restorer(RestoreTarget):
    """The restore modes: swap, in_place, tables, revert, cleanup."""

    def cleanup(self):
        """Drop temporary databases of interrupted swaps, then check that the live database answers."""
        stale = self.stale_temps()
        self.result["dropped"] = stale
        if stale:
            self.result["changed"] = True
            if not self.check_mode:
                self.admin("".join(drop_sql(d, self.server_num) for d in stale), "drop of temporary databases")
        checks = [{"name": "no temporary databases", "ok": True,
                   "detail": ("%s %s" % ("would drop" if self.check_mode else "dropped", ", ".join(stale)))
                   if stale else "none left behind"}]
        if self.live_exists:
            try:
                rows = count_rows(self.client, self.db)
                checks.append({"name": "live database answers", "ok": True,
                               "detail": "%s: %d tables, %d rows" % (self.db, len(rows), sum(rows.values()))})
                self.result["rows_after"] = rows
            except PgError as exc:
                checks.append({"name": "live database answers", "ok": False, "detail": str(exc)})
        else:
            checks.append({"name": "live database answers", "ok": False, "detail": "%s does not exist" % self.db})
        self.result["checks"] = checks
        self.result["restored"] = "%s; live database %s %s" % (
            checks[0]["detail"], self.db,
            "answers (%s)" % checks[1]["detail"].split(": ", 1)[-1] if checks[1]["ok"] else "is NOT available")
        return self.result

    def swap(self):
        self.need_path()
        temp = derived(self.db, "restore", self.stamp)
        previous = derived(self.db, "pre", self.stamp)
        self.result.update(changed=True, temp_database=temp,
                           previous_database=previous if self.live_exists else "")
        stale = [d for d in self.stale_temps() if d != temp]
        if self.check_mode:
            self.result["restored"] = "would restore %s into %s, check row counts, then swap it in (%s kept as %s)" % (
                self.p["path"], temp, self.db, previous)
            self.result["dropped"] = stale
            return self.result
        if stale:
            self.admin("".join(drop_sql(d, self.server_num) for d in stale), "drop of stale temporary databases")
            self.result["dropped"] = stale
        self.admin(create_sql(temp, self.props, self.owner_ok), "CREATE DATABASE %s" % temp)
        try:
            actual = self.restore_checked(temp)
            started = time.time()
            self.do_swap(temp, previous)
            self.result["timings"]["swap_s"] = round(time.time() - started, 3)
        except (PgError, RestoreFailed) as exc:
            if not self.result["live_touched"]:
                try:
                    self.admin(drop_sql(temp, self.server_num), "drop of %s" % temp)
                except PgError:
                    pass
            if isinstance(exc, RestoreFailed):
                raise
            raise RestoreFailed("%s; the live database %s was not touched" % (exc, self.db))
        self.result["rows_after"] = actual
        if self.live_exists and not self.p.get("keep_previous", True):
            self.admin(drop_sql(previous, self.server_num), "drop of %s" % previous)
            self.result["dropped"].append(previous)
            self.result["previous_database"] = ""
        kept = (" (previous kept as %s)" % previous) if self.result["previous_database"] else ""
        self.result["restored"] = "%s restored from %s by swap: %d tables, %d rows%s" % (
            self.db, os.path.basename(self.source), len(actual), sum(actual.values()), kept)
        return self.result

    def do_swap(self, incoming, outgoing):
        sql = swap_sql(self.db, incoming, outgoing, self.live_exists,
                       self.p.get("terminate_connections", True), self.server_num, self.lock_timeout)
        attempts = max(1, int(self.p.get("swap_attempts") or 5))
        for attempt in range(1, attempts + 1):
            try:
                self.admin(sql, "swap of %s and %s" % (self.db, incoming))
                self.leave("swapped")
                self.result["swap_attempts"] = attempt
                return
            except PgError as exc:
                if self.work.stopped:
                    self.stopped_in_swap(incoming)
                if "being accessed by other users" not in str(exc) or attempt == attempts:
                    hint = "" if self.p.get("terminate_connections", True) else " (terminate_connections is false)"
                    raise RestoreFailed("swap failed after %d attempt(s)%s: %s" % (attempt, hint, exc))
                time.sleep(min(2.0, 0.25 * attempt))

    def stopped_in_swap(self, incoming):
        """The stop came during the swap transaction: whether it committed is read back from the server."""
        try:
            found = self.client.query_json(self.maint, "SELECT json_agg(datname) FROM pg_database WHERE datname = %s;"
                                           % quote_literal(incoming), what="probe after the stop")
        except PgError as exc:
            self.leave("unknown")
            raise RestoreFailed("restore of %s %s during the swap; whether the swap committed is not known (%s)"
                                % (self.db, self.work.describe(), exc))
        if found:
            raise RestoreFailed("restore of %s %s before the swap committed; the live database %s was not touched"
                                % (self.db, self.work.describe(), self.db))
        self.leave("swapped")
        raise RestoreFailed("restore of %s %s just after the swap committed: %s now holds the restored copy"
                            % (self.db, self.work.describe(), self.db))

    def in_place(self):
        self.need_path()
        self.result["changed"] = True
        if self.check_mode:
            self.result["restored"] = "would drop %s, create it again and restore %s into it" % (
                self.db, self.source)
            return self.result
        jobs = int(self.p.get("jobs") or 2)
        try:
            if self.live_exists:
                self.leave("dropping")
                self.admin(drop_sql(self.db, self.server_num), "DROP DATABASE %s" % self.db)
            self.leave("dropped")
            self.admin(create_sql(self.db, self.props, self.owner_ok), "CREATE DATABASE %s" % self.db)
            self.leave("restoring")
            self.pg_restore(self.db, single_transaction=jobs <= 1)
            actual = count_rows(self.client, self.db)
        except PgError as exc:
            if self.work.stopped:
                raise RestoreFailed("in-place restore of %s %s: the live database %s" % (
                    self.db, self.work.describe(), LIVE_LEFT[self.result["live_database"]]), live_touched=True)
            raise RestoreFailed("in-place restore of %s failed: %s" % (self.db, exc), live_touched=True)
        self.leave("restored")
        checks = row_check(self.expected, actual) if self.expected else []
        self.result["row_check"] = checks
        self.result["checks"] = as_checks(checks)
        if any(not c["ok"] for c in checks):
            raise RestoreFailed("row count check failed in %s: %s" % (self.db, check_message(checks)),
                                live_touched=True)
        self.result["rows_after"] = actual
        self.result["restored"] = "%s restored in place from %s: %d tables, %d rows" % (
            self.db, os.path.basename(self.source), len(actual), sum(actual.values()))
        return self.result

    def tables(self):
        self.need_path()
        wanted = self.p.get("tables") or []
        if not wanted:
            raise RestoreFailed("mode tables needs a list of tables")
        if not self.live_exists:
            raise RestoreFailed("database %s does not exist; a selective restore needs it (use swap)" % self.db)
        keys = []
        for table in wanted:
            try:
                key = display_name(*parse_qualified(table))
            except ValueError as exc:
                raise RestoreFailed(str(exc))
            if key not in self.expected:
                raise RestoreFailed("table %s is not in the backup" % key)
            keys.append(key)
        self.result["changed"] = True
        if self.check_mode:
            self.result["restored"] = "would restore %s of %s from %s in one transaction" % (
                ", ".join(keys), self.db, self.source)
            return self.result
        head, tail_sql = table_load_sql(keys, self.expected, self.lock_timeout)
        self.load_tables(keys, head, tail_sql)
        self.leave("restored")
        actual = count_rows(self.client, self.db)
        self.result["row_check"] = row_check(dict((k, self.expected[k]) for k in keys),
                                             dict((k, actual.get(k)) for k in keys))
        self.result["checks"] = as_checks(self.result["row_check"])
        self.result["rows_after"] = actual
        self.result["restored"] = "%s of %s restored from %s in one transaction (%d rows); other tables untouched" % (
            ", ".join(keys), self.db, os.path.basename(self.source), sum(actual.get(k, 0) for k in keys))
        return self.result

    def revert(self):
        previous = self.p.get("previous_database") or ""
        if not previous:
            raise RestoreFailed("mode revert needs previous_database")
        if previous not in self.databases:
            raise RestoreFailed("database %s does not exist; nothing to put back" % previous)
        reverted = derived(self.db, "reverted", self.stamp)
        self.result.update(changed=True, previous_database=reverted if self.live_exists else "")
        if self.check_mode:
            self.result["restored"] = "would put %s back as %s (current kept as %s)" % (previous, self.db, reverted)
            return self.result
        self.do_swap(previous, reverted)
        self.result["rows_after"] = count_rows(self.client, self.db)
        self.result["restored"] = "%s put back as %s%s" % (
            previous, self.db, (" (the replaced one kept as %s)" % reverted) if self.live_exists else "")
        return self.result

    def run(self):
        mode = self.result["mode"]
        return {"swap": self.swap, "in_place": self.in_place, "tables": self.tables,
                "revert": self.revert, "cleanup": self.cleanup}[mode]()


@contextlib.contextmanager
def restore_source(params, check_mode):
    """The params with path the plain data to read (decoded from a compressed backup), held while it is read."""
    if check_mode or not params.get("path") or params["mode"] in ("revert", "cleanup"):
        yield params
        return
    with reading(params["path"], params.get("manifest")) as plain:
        yield dict(params, path=plain, source_path=params["path"])


def run(params, check_mode=False):
    with restore_source(params, check_mode) as readable:
        return Restorer(readable, check_mode).run()


def main():
    module = AnsibleModule(
        argument_spec=dict(
            LOGIN_ARGUMENT_SPEC,
            database=dict(type="str", required=True),
            mode=dict(type="str", default="swap", choices=["swap", "in_place", "tables", "revert", "cleanup"]),
            path=dict(type="path", default=""),
            manifest=dict(type="path", default=""),
            expected_rows=dict(type="dict", default={}),
            database_properties=dict(type="dict", default={}),
            tables=dict(type="list", elements="str", default=[]),
            jobs=dict(type="int", default=2),
            keep_previous=dict(type="bool", default=True),
            count_before=dict(type="bool", default=False),
            terminate_connections=dict(type="bool", default=True),
            swap_attempts=dict(type="int", default=5),
            lock_timeout=dict(type="str", default="10s"),
            disable_triggers=dict(type="bool", default=False),
            no_owner=dict(type="bool", default=False),
            previous_database=dict(type="str", default=""),
            stamp=dict(type="str", default=""),
            maintenance_db=dict(type="str", default="postgres"),
            runbook_timeout=dict(type="float", default=0.0),
        ),
        supports_check_mode=True,
    )
    work = start_work("pg_restore_backup", module.params)
    restorer = None
    try:
        with restore_source(module.params, module.check_mode) as params:
            restorer = Restorer(params, module.check_mode)
            result = restorer.run()
    except NotReadable as exc:
        msg = "%s check failed: %s" % (exc.check, exc.detail)
        work.finish(True, msg)
        module.fail_json(msg=msg, stopped=work.reason, live_touched=False)
    except (RestoreFailed, PgError, ValueError, OSError) as exc:
        extra = dict(restorer.result) if restorer else {}
        if isinstance(exc, RestoreFailed):
            extra.update(exc.extra)
            extra["live_touched"] = bool(exc.live_touched or extra.get("live_touched"))
        msg = work.explain(str(exc))
        if work.stopped:
            end_lost_sessions(PgClient.from_params(module.params), work.started, module.params["maintenance_db"])
        work.finish(True, msg)
        module.fail_json(msg=msg, stopped=work.reason, **extra)
    work.finish(False, result.get("restored", ""))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
