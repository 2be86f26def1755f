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
import os
import time

try:
    from ansible.module_utils.basic import AnsibleModule
except ImportError:  # imported as a plain library on a host (drills, tests): stdlib only
    AnsibleModule = None

from ansible_collections.runbook.ops.plugins.module_utils.pg_common import (
    LOGIN_ARGUMENT_SPEC, PgClient, PgError, count_rows, display_name, end_lost_sessions, parse_qualified,
    quote_literal,
)
from ansible_collections.runbook.ops.plugins.module_utils.backup_reading import NotReadable, reading
from ansible_collections.runbook.ops.plugins.module_utils.host_work import start_work
# LoadedTableCounter: importable from the module as before it moved to module_utils
from ansible_collections.runbook.ops.plugins.module_utils.pg_restore_counts import (  # noqa: F401
    LoadedTableCounter, as_checks, check_message, row_check,
)
from ansible_collections.runbook.ops.plugins.module_utils.pg_restore_sql import (
    create_sql, derived, drop_sql, pg_restore_argv, swap_sql, table_load_sql,
)
from ansible_collections.runbook.ops.plugins.module_utils.pg_restore_target import (
    LIVE_LEFT, RestoreFailed, RestoreTarget, load_tables,
)

restore_argv = pg_restore_argv  # the module's name for it before it moved to module_utils


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
        load_tables(self.client, self.db, self.p["path"], keys, head, tail_sql, self.p.get("disable_triggers"),
                    record=self.record_command)
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
