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
    encoding, collation and owner, the number of sessions connected, and exact row counts (one
    repeatable-read snapshot) of every table holding rows (ordinary tables and partitions) outside the system
    schemas, each counted as pg_dump dumps it and a backup's manifest counts it - its own rows only
    (C(count(*) FROM ONLY), not those of its inheritance children), with row security off.
  - Reads only; runs the same in check mode.
version_added: "0.1.0"
author: runbook-runner maintainers
extends_documentation_fragment: [runbook.ops.postgres]
options:
  database: {description: Database to inspect., type: str, required: true}
  row_counts: {description: Count the rows of every table., type: bool, default: true}
  maintenance_db: {description: Database to connect to when checking that O(database) exists., type: str, default: postgres}
"""

EXAMPLES = r"""
- name: Count the rows of shop, connected through the local socket as the postgres role
  runbook.ops.pg_inspect:
    database: shop
    login_host: /var/run/postgresql
  become: true
  become_user: postgres
"""

RETURN = r"""
exists: {description: Whether the database exists., returned: always, type: bool}
server_version: {description: Server version., returned: always, type: str}
database_properties: {description: Encoding, collate, ctype and owner., returned: when it exists, type: dict}
connections: {description: Sessions connected to the database (other than this probe)., returned: when it exists, type: int}
tables: {description: "Table (schema.table) -> exact row count.", returned: when it exists, type: dict}
"""

try:
    from ansible.module_utils.basic import AnsibleModule
except ImportError:  # imported as a plain library on a host (drills, tests): stdlib only
    AnsibleModule = None

from ansible_collections.runbook.ops.plugins.module_utils.pg_common import (
    LOGIN_ARGUMENT_SPEC, PgClient, count_rows, exit_module, quote_literal,
)


EXISTS_SQL = """SELECT json_build_object(
  'server_version', current_setting('server_version'),
  'server_version_num', current_setting('server_version_num')::int,
  'database', (SELECT json_build_object('encoding', pg_encoding_to_char(d.encoding), 'collate', d.datcollate,
                 'ctype', d.datctype, 'owner', pg_get_userbyid(d.datdba))
               FROM pg_database d WHERE d.datname = %(db)s),
  'connections', (SELECT count(*) FROM pg_stat_activity a WHERE a.datname = %(db)s AND a.pid <> pg_backend_pid()));
"""


def inspect(params, check_mode=False):
    client = PgClient.from_params(params)
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
    exit_module(AnsibleModule, inspect, argument_spec=dict(
        LOGIN_ARGUMENT_SPEC,
        database=dict(type="str", required=True),
        row_counts=dict(type="bool", default=True),
        maintenance_db=dict(type="str", default="postgres"),
    ))


if __name__ == "__main__":
    main()
