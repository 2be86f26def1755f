# -*- coding: utf-8 -*-
# Copyright: runbook-runner maintainers
# License: Apache-2.0
"""What a PostgreSQL restore (modules/pg_restore_backup) works on: the live database and its server as
probed, the result so far, and the steps its modes are made of (pg_restore into a database with
the row counts checked, the selective load of tables in one transaction)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import os
import subprocess
import tempfile
import time

from ansible_collections.runbook.ops.plugins.module_utils.host_work import current_work, tracked_popen
from ansible_collections.runbook.ops.plugins.module_utils.pg_common import (
    PgClient, PgError, count_rows, display_name, parse_qualified, quote_literal, tail,
)
from ansible_collections.runbook.ops.plugins.module_utils.pg_decode import DecodeError, toc_table_data
from ansible_collections.runbook.ops.plugins.module_utils.pg_restore_counts import (
    LoadedTableCounter, LiveRowCount, as_checks, check_message, row_check,
)
from ansible_collections.runbook.ops.plugins.module_utils.pg_restore_sql import (
    LIST_TABLES_SQL, SERVER_SQL, like_prefix, name_base, pg_restore_argv,
)


# What an in-place restore stopped midway left of the live database, by the last step it had reached.
LIVE_LEFT = {
    "dropping": "may have been dropped (the stop came during DROP DATABASE)",
    "dropped": "had been dropped and was not created again",
    "restoring": "had been dropped and holds a partial restore",
}


class RestoreFailed(Exception):
    """The restore fails with this message; live_touched: whether the live database was changed by then;
    extra: fields for the module's result."""

    def __init__(self, message, live_touched=False, **extra):
        Exception.__init__(self, message)
        self.live_touched = live_touched
        self.extra = extra


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

    def record_command(self, argv):
        """A command run on the host, in the result's commands."""
        self.result.setdefault("commands", []).append(argv)

    def admin(self, sql, what):
        return self.client.psql(self.maint, sql, what=what)

    def stale_temps(self):
        prefix = name_base(self.db) + "__restore_"
        return sorted(d for d in self.databases if d.startswith(prefix))

    def pg_restore(self, database, single_transaction):
        argv = pg_restore_argv(self.client, database, self.p["path"], self.p.get("jobs") or 2,
                            self.p.get("no_owner"), single_transaction)
        self.record_command(argv)
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
        try:
            self.result["rows_before"] = live_count.wait()
        except PgError as exc:
            raise RestoreFailed(str(exc))

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
        argv = pg_restore_argv(self.client, database, self.p["path"], jobs, self.p.get("no_owner"), False)
        argv.insert(-1, "--verbose")
        self.record_command(argv)
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


def load_tables(client, database, path, keys, head, tail_sql, disable_triggers=False, record=None):
    """The selective restore of keys (tables) of the backup at path into database: psql reads BEGIN; TRUNCATE;
    <data>; <check>; COMMIT from us. COMMIT is written only after every pg_restore succeeded; on any failure psql
    is killed with the transaction open, so it rolls back. record(argv): each pg_restore's command, before it runs."""
    argv = [client.tool("psql"), "-X", "-q", "-w", "-v", "ON_ERROR_STOP=1",
            "-d", client.conninfo(database), "-f", "-"]
    errlog = tempfile.TemporaryFile()
    psql = client.popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errlog)
    ok, reader = False, None
    try:
        psql.stdin.write(head.encode("utf-8"))
        for key in keys:
            schema, name = parse_qualified(key)
            argv_r = [client.tool("pg_restore"), "--data-only", "-n", schema, "-t", name, "-f", "-"]
            if disable_triggers:
                argv_r.append("--disable-triggers")
            argv_r.append(path)
            if record is not None:
                record(argv_r)
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
        client.close_secret(psql)
        errlog.close()
