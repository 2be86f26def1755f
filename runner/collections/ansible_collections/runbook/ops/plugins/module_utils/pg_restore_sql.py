# -*- coding: utf-8 -*-
# Copyright: runbook-runner maintainers
# License: Apache-2.0
"""The SQL and the command lines of a PostgreSQL restore (modules/pg_restore_backup): names of the
temporary and kept databases, CREATE / DROP / swap transactions, pg_restore's argv and the selective
restore's transaction."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib

from ansible_collections.runbook.ops.plugins.module_utils.pg_common import (
    ALL_ROWS, COUNT_OWN_ROWS, TABLES_SQL, display_name, parse_qualified, quote_ident, quote_literal, sql_name,
)


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


def pg_restore_argv(client, database, path, jobs, no_owner, single_transaction):
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
