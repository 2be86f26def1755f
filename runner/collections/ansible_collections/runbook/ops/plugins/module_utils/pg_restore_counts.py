# -*- coding: utf-8 -*-
# Copyright: runbook-runner maintainers
# License: Apache-2.0
"""Row counts of a PostgreSQL restore (modules/pg_restore_backup): each table of the restored copy counted as
soon as pg_restore has loaded it, the live database counted meanwhile, and the check of the counts against
the backup's manifest."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import queue
import re
import threading

from ansible_collections.runbook.ops.plugins.module_utils.pg_common import (
    PgError, count_rows, display_name, quote_ident,
)
from ansible_collections.runbook.ops.plugins.module_utils.pg_restore_sql import COUNT_ONE_SQL, ONE_CORE

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
        """The rows per table; PgError when they could not be counted."""
        self._thread.join()
        if self.error is not None:
            raise PgError("row count of the live database %s failed: %s" % (self.database, self.error))
        return self.rows


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
