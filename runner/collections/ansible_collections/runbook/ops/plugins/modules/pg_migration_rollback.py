#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook-runner maintainers
# License: Apache-2.0
"""Roll SQL migrations back to a target version with their down scripts, one transaction per migration."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pg_migration_rollback
short_description: Roll PostgreSQL schema migrations back to a target version using down scripts
description:
  - Migrations are files C(NNNN_name.up.sql) / C(NNNN_name.down.sql); applied versions are rows of a
    C(schema_migrations(version)) table.
  - Every applied version newer than O(target) is rolled back, newest first. Each one runs as one
    transaction - C(psql -v ON_ERROR_STOP=1 --single-transaction) over the down script followed by the
    C(DELETE) of its C(schema_migrations) row - so a failing down script changes nothing of its migration,
    the schema stays at the last good version, and the failure names the migration.
  - Idempotent - when nothing newer than the target is applied, nothing runs and C(changed) is false.
  - Refuses before running anything when an applied version has no down script, or a down script manages
    its own transaction (BEGIN/COMMIT would break the one-transaction guarantee).
  - In check mode, says which migrations it would roll back.
version_added: "0.1.0"
author: runbook-runner maintainers
extends_documentation_fragment: [runbook.ops.postgres]
options:
  database: {description: Database to roll back., type: str, required: true}
  target: {description: "Version to end at (C(0) - roll back everything).", type: str, required: true}
  scripts: {description: "File name -> SQL text of the migration files (the role reads them on the control node).", type: dict, default: {}}
  migrations_dir: {description: Directory of the migration files on the host (instead of O(scripts))., type: path, default: ""}
  table: {description: "Table of applied versions (C(schema_migrations) or C(schema.table)).", type: str, default: schema_migrations}
  lock_timeout: {description: lock_timeout inside each migration's transaction., type: str, default: 10s}
"""

EXAMPLES = r"""
- name: Roll shop back to 0002
  runbook.ops.pg_migration_rollback:
    database: shop
    target: "0002"
    migrations_dir: /srv/app/migrations
    login_host: 127.0.10.21
    login_user: lab
    login_password: "{{ db_password }}"
  no_log: true
"""

RETURN = r"""
version_before: {description: Newest applied version before., returned: always, type: str}
version_after: {description: Newest applied version after (or now, after a failure)., returned: always, type: str}
rolled_back: {description: Migrations rolled back, newest first., returned: always, type: list}
pending: {description: Migrations that would be (check mode) or were not (failure) rolled back., returned: always, type: list}
failed_migration: {description: The migration whose down script failed., returned: failure, type: str}
restored: {description: What was done, in one sentence., returned: always, type: str}
"""

import os
import re

try:
    from ansible.module_utils.basic import AnsibleModule
except ImportError:  # imported as a plain library on a host (drills, tests): stdlib only
    AnsibleModule = None

from ansible_collections.runbook.ops.plugins.module_utils.pg_common import (
    LOGIN_ARGUMENT_SPEC, ModuleFailure, PgClient, exit_module, parse_qualified, quote_ident, quote_literal, sql_name,
    tail,
)


MIGRATION_FILE = re.compile(r"^(\d+)_([A-Za-z0-9_.-]+)\.(up|down)\.sql$")
TX_CONTROL = re.compile(r"^(BEGIN|START|COMMIT|END|ROLLBACK|ABORT)\b", re.IGNORECASE)


class MigrationError(ModuleFailure):
    """The rollback is refused, or a down script failed (the result so far goes with the failure)."""


def load_migrations(scripts=None, directory=""):
    """{version int: {'version': '0004', 'name': '0004_x', 'down': sql or None}} from file name -> text."""
    if directory:
        scripts = {}
        for entry in sorted(os.listdir(directory)):
            if MIGRATION_FILE.match(entry):
                with open(os.path.join(directory, entry), "rb") as handle:
                    scripts[entry] = handle.read().decode("utf-8")
    migrations = {}
    for filename, text in sorted((scripts or {}).items()):
        m = MIGRATION_FILE.match(os.path.basename(filename))
        if not m:
            continue
        number = int(m.group(1))
        entry = migrations.setdefault(number, {"version": m.group(1), "name": "%s_%s" % (m.group(1), m.group(2)),
                                               "down": None, "up": False})
        if entry["name"] != "%s_%s" % (m.group(1), m.group(2)):
            raise MigrationError("two migrations have version %s: %s and %s_%s" % (
                m.group(1), entry["name"], m.group(1), m.group(2)))
        if m.group(3) == "down":
            entry["down"] = text
        else:
            entry["up"] = True
    return migrations


def statements(sql):
    """Top-level statements of a script, with comments, quoted strings and dollar-quoted bodies blanked out."""
    out, buf, i, n = [], [], 0, len(sql)
    while i < n:
        ch = sql[i]
        if sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j
            continue
        if sql.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if sql.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif sql.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            i = j
            buf.append(" ")
            continue
        if ch in "'\"":
            j = i + 1
            while j < n:
                if sql[j] == ch:
                    if j + 1 < n and sql[j + 1] == ch:
                        j += 2
                        continue
                    break
                j += 1
            buf.append(" x ")
            i = j + 1
            continue
        if ch == "$":
            m = re.match(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$", sql[i:])
            if m:
                end = sql.find(m.group(0), i + len(m.group(0)))
                buf.append(" x ")
                i = n if end < 0 else end + len(m.group(0))
                continue
        if ch == ";":
            out.append("".join(buf).strip())
            buf = []
        else:
            buf.append(ch)
        i += 1
    if "".join(buf).strip():
        out.append("".join(buf).strip())
    return [s for s in out if s]


def manages_transaction(sql):
    """True when a script has its own BEGIN/COMMIT/ROLLBACK (SQL-standard function bodies excepted)."""
    inside_atomic = False
    for stmt in statements(sql):
        if re.search(r"\bBEGIN\s+ATOMIC\b", stmt, re.IGNORECASE):
            inside_atomic = True
            continue
        if inside_atomic:
            if re.match(r"^END\b", stmt, re.IGNORECASE):
                inside_atomic = False
            continue
        m = TX_CONTROL.match(stmt)
        if m:
            word = m.group(1).upper()
            if word == "START" and not re.match(r"^START\s+TRANSACTION\b", stmt, re.IGNORECASE):
                continue
            return True
    return False


def plan(applied, migrations, target):
    """Applied versions newer than target, newest first, each with its down script."""
    todo = sorted((v for v in applied if v > target), reverse=True)
    missing = [applied[v] for v in todo if v not in migrations or migrations[v]["down"] is None]
    if missing:
        raise MigrationError("no down script for applied migration%s %s" % (
            "s" if len(missing) > 1 else "", ", ".join(missing)))
    own_tx = [migrations[v]["name"] for v in todo if manages_transaction(migrations[v]["down"])]
    if own_tx:
        raise MigrationError("down script of %s has its own BEGIN/COMMIT; remove it: each down script runs with "
                             "its schema_migrations delete in one transaction" % ", ".join(own_tx))
    return todo


def rollback_script(migration, applied_text, table_sql, lock_timeout):
    return (
        "SET LOCAL lock_timeout = %s;\n"
        "SELECT pg_advisory_xact_lock(hashtext('runbook:schema_migrations'));\n"
        "DO $runbook$ BEGIN IF NOT EXISTS (SELECT 1 FROM %s WHERE version::text = %s) THEN "
        "RAISE EXCEPTION 'migration %s is no longer applied'; END IF; END $runbook$;\n"
        "%s\n;\n"
        "DELETE FROM %s WHERE version::text = %s;\n"
    ) % (quote_literal(lock_timeout), table_sql, quote_literal(applied_text), migration["name"],
         migration["down"].rstrip(), table_sql, quote_literal(applied_text))


def applied_versions(client, database, table):
    schema, name = parse_qualified(table)
    exists = client.query_json(database, "SELECT json_build_object('t', to_regclass(%s));\n" % quote_literal(
        "%s.%s" % (quote_ident(schema), quote_ident(name))), what="probe of %s" % table)
    if not exists["t"]:
        raise MigrationError("table %s does not exist in %s: nothing records which migrations are applied" % (
            table, database))
    rows = client.query_json(database, "SELECT coalesce(json_agg(version::text), '[]') FROM %s;\n" % sql_name(table),
                             what="read of %s" % table) or []
    applied = {}
    for text in rows:
        if not re.match(r"^\d+$", text.strip()):
            raise MigrationError("%s holds version %r, which is not a number" % (table, text))
        applied[int(text)] = text
    return applied


def version_text(applied, migrations, number):
    if number in applied:
        return applied[number]
    if number in migrations:
        return migrations[number]["version"]
    return str(number) if number else "0"


def rollback(params, check_mode=False):
    client = PgClient.from_params(params)
    database = params["database"]
    table = params.get("table") or "schema_migrations"
    if not re.match(r"^\d+$", str(params["target"]).strip()):
        raise MigrationError("target must be a version number (0 rolls back everything), got %r" % params["target"])
    target = int(str(params["target"]).strip())
    migrations = load_migrations(params.get("scripts"), params.get("migrations_dir") or "")
    if not migrations:
        raise MigrationError("no migration files (NNNN_name.up.sql / NNNN_name.down.sql) found")
    applied = applied_versions(client, database, table)
    newest = max(applied) if applied else 0
    result = {"changed": False, "database": database, "target": version_text(applied, migrations, target),
              "version_before": version_text(applied, migrations, newest), "rolled_back": [], "pending": []}
    todo = plan(applied, migrations, target)
    result["pending"] = [migrations[v]["name"] for v in todo]
    if not todo:
        result["version_after"] = result["version_before"]
        result["restored"] = "%s is already at or below version %s: nothing to roll back" % (
            database, result["target"])
        return result
    result["changed"] = True
    if check_mode:
        result["version_after"] = version_text(applied, migrations, max([v for v in applied if v <= target] or [0]))
        result["restored"] = "would roll %s back from %s to %s: %s" % (
            database, result["version_before"], result["version_after"], ", ".join(result["pending"]))
        return result
    table_sql = sql_name(table)
    argv = [client.tool("psql"), "-X", "-q", "-w", "-v", "ON_ERROR_STOP=1", "--single-transaction",
            "-d", client.conninfo(database), "-f", "-"]
    for number in todo:
        migration = migrations[number]
        script = rollback_script(migration, applied[number], table_sql, params.get("lock_timeout") or "10s")
        rc, out, err = client.run(argv, input_text=script, check=False, what="down script of %s" % migration["name"])
        if rc != 0:
            remaining = dict((v, t) for v, t in applied.items() if v <= number)
            result.update(
                version_after=version_text(applied, migrations, max(remaining)),
                failed_migration=migration["name"],
                pending=[migrations[v]["name"] for v in todo if v <= number],
            )
            done = ", ".join(result["rolled_back"]) or "none"
            raise MigrationError(
                "down script of migration %s failed, its transaction was rolled back and %s stays at version %s "
                "(rolled back before it: %s): %s" % (migration["name"], database, result["version_after"], done,
                                                     tail(err, 6)), **result)
        result["rolled_back"].append(migration["name"])
        del applied[number]
    result["pending"] = []
    result["version_after"] = version_text(applied, migrations, max(applied) if applied else 0)
    result["restored"] = "%s rolled back from %s to %s: %s" % (
        database, result["version_before"], result["version_after"], ", ".join(result["rolled_back"]))
    return result


def main():
    exit_module(AnsibleModule, rollback, argument_spec=dict(
        LOGIN_ARGUMENT_SPEC,
        database=dict(type="str", required=True),
        target=dict(type="str", required=True),
        scripts=dict(type="dict", default={}),
        migrations_dir=dict(type="path", default=""),
        table=dict(type="str", default="schema_migrations"),
        lock_timeout=dict(type="str", default="10s"),
    ))


if __name__ == "__main__":
    main()
