#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook-runner maintainers
# License: Apache-2.0
"""Read-only assertions on a PostgreSQL database: the server accepts connections, and queries return what they must."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pg_assert
short_description: Assert on a PostgreSQL database - pg_isready, and queries returning one value compared with bounds
description:
  - With O(isready), runs C(pg_isready) against the server first; when it does not accept connections the
    assertions are not run (and fail, saying so).
  - Each assertion's C(sql) is one query (SELECT, VALUES or WITH ...) returning one row of one column. Its value is
    compared with C(equals) (numbers and booleans match their text, so C("3") matches C(3)), C(min) and C(max)
    (numbers; both bounds included). Examples - a row count C(SELECT count(*) FROM orders) with C(min),
    the newest row younger than N minutes C(SELECT extract(epoch FROM now() - max(created_at)) / 60 FROM orders)
    with C(max), an invariant C(SELECT sum(balance) = (SELECT sum(amount) FROM credits) FROM wallet) with
    C(equals - true).
  - Queries run in a read-only transaction (C(default_transaction_read_only)), each within O(statement_timeout);
    a query that fails is a failed assertion naming the error.
  - Reads only; runs the same in check mode. Fails when an assertion fails; the results are returned either way.
version_added: "0.1.0"
author: runbook-runner maintainers
extends_documentation_fragment: [runbook.ops.postgres]
options:
  database: {description: Database the queries run in., type: str, default: postgres}
  isready: {description: Run C(pg_isready) first., type: bool, default: true}
  assertions:
    description: The queries and what their value must be, in order.
    type: list
    elements: dict
    default: []
    suboptions:
      name: {description: Name in results and reports; default the query., type: str}
      sql: {description: The query (one row of one column)., type: str, required: true}
      equals: {description: The value expected., type: raw}
      min: {description: Lowest accepted value (a number)., type: float}
      max: {description: Highest accepted value (a number)., type: float}
  statement_timeout: {description: Longest a query may run (PostgreSQL's statement_timeout - C(30s), C(500ms))., type: str, default: 30s}
  runbook_timeout:
    description:
      - Seconds all the checks may take (0 - no limit; the rendered step sets it from its C(timeout)). At the limit,
        or when the run that started the module is gone, the running query is ended and the module fails saying so.
    type: float
    default: 0.0
"""

EXAMPLES = r"""
- name: The shop database answers and has orders
  runbook.ops.pg_assert:
    database: shop
    login_host: 127.0.10.21
    login_user: lab
    login_password: "{{ db_password }}"
    assertions:
      - {name: orders exist, sql: "SELECT count(*) FROM orders", min: 1}
  no_log: true
"""

RETURN = r"""
checks: {description: "One C(name), C(ok), C(detail) per check (pg_isready first).", returned: always, type: list, elements: dict}
results: {description: "The checks with the C(value) each query returned.", returned: always, type: list, elements: dict}
healthy: {description: True when every check passed., returned: always, type: bool}
"""

import json

try:
    from ansible.module_utils.basic import AnsibleModule
except ImportError:  # imported as a plain library on a host (drills, tests): stdlib only
    AnsibleModule = None

from ansible_collections.runbook.ops.plugins.module_utils.check_results import failures_text, summary
from ansible_collections.runbook.ops.plugins.module_utils.http_request import values_match
from ansible_collections.runbook.ops.plugins.module_utils.pg_common import (
    LOGIN_ARGUMENT_SPEC, ModuleFailure, PgClient, PgError, exit_module, quote_literal, tail,
)

ISREADY_ANSWERS = {0: "accepting connections", 1: "rejecting connections (starting up or shutting down)",
                   2: "no response", 3: "not attempted (bad connection parameters)"}

QUERY_SQL = """SET default_transaction_read_only = on;
SET statement_timeout = %(timeout)s;
BEGIN TRANSACTION READ ONLY;
SELECT coalesce(json_agg(json_build_object('row', to_jsonb(q))), '[]')
  FROM (SELECT * FROM (
%(sql)s
  ) AS assertion LIMIT 2) AS q;
ROLLBACK;
"""


def isready(client, database):
    """(ok, detail) of pg_isready."""
    rc, out, err = client.run([client.tool("pg_isready"), "-d", client.conninfo(database), "-t", "10"], check=False,
                              timeout=30, what="pg_isready")
    answer = ISREADY_ANSWERS.get(rc, "exit %d" % rc)
    seen = (out or err).strip()
    return rc == 0, "%s%s" % (answer, " (%s)" % seen if seen and rc != 0 else "")


def query_value(client, database, sql, statement_timeout):
    """The one value a query returns; ValueError saying what it returned otherwise."""
    text = sql.strip().rstrip(";").strip()
    out = client.psql(database, QUERY_SQL % {"timeout": quote_literal(statement_timeout), "sql": text},
                      what="query").strip()
    rows = [r["row"] for r in (json.loads(out) if out else [])]
    if not rows:
        raise ValueError("returned no row")
    if len(rows) > 1:
        raise ValueError("returned more than one row")
    if len(rows[0]) != 1:
        raise ValueError("returned %d columns (%s), expected one" % (len(rows[0]), ", ".join(sorted(rows[0]))))
    return list(rows[0].values())[0]


def compare(assertion, value):
    """What is wrong with the value (empty when it is as asserted)."""
    problems = []
    if "equals" in assertion and assertion["equals"] is not None and not values_match(assertion["equals"], value):
        problems.append("expected %s" % json.dumps(assertion["equals"]))
    bounds = [(key, assertion.get(key)) for key in ("min", "max") if assertion.get(key) is not None]
    if bounds:
        try:
            number = float(value) if not isinstance(value, bool) else None
        except (TypeError, ValueError):
            number = None
        if number is None:
            problems.append("not a number")
        for key, bound in bounds:
            if number is not None and (number < bound if key == "min" else number > bound):
                problems.append("expected at %s %s" % ("least" if key == "min" else "most", shown(bound)))
    return problems


def shown(number):
    return "%d" % number if float(number).is_integer() else "%g" % number


def assertion_name(assertion):
    if assertion.get("name"):
        return assertion["name"]
    sql = " ".join(assertion["sql"].split())
    return sql if len(sql) <= 60 else sql[:57] + "..."


def run_assertion(client, database, assertion, statement_timeout):
    result = {"name": assertion_name(assertion), "ok": False, "value": None}
    try:
        value = query_value(client, database, assertion["sql"], statement_timeout)
    except (PgError, ValueError) as exc:
        result["detail"] = "query %s" % (exc if isinstance(exc, ValueError) else "failed: " + tail(str(exc), 3))
        return result
    result["value"] = value
    if value is None and any(assertion.get(k) is not None for k in ("equals", "min", "max")):
        result["detail"] = "returned NULL"
        return result
    problems = compare(assertion, value)
    result["ok"] = not problems
    result["detail"] = "value %s%s" % (json.dumps(value), (", " + "; ".join(problems)) if problems else "")
    return result


def validate(params):
    for assertion in params.get("assertions") or []:
        if all(assertion.get(k) is None for k in ("equals", "min", "max")):
            raise ValueError("assertion %r gives none of equals, min, max" % assertion_name(assertion))
    if not params.get("isready", True) and not params.get("assertions"):
        raise ValueError("nothing to check: isready is false and there are no assertions")


def assert_database(params, check_mode=False):
    validate(params)
    client = PgClient.from_params(params)
    database = params.get("database") or "postgres"
    results = []
    ready = True
    if params.get("isready", True):
        ready, detail = isready(client, database)
        results.append({"name": "pg_isready %s" % database, "ok": ready, "detail": detail, "value": None})
    for assertion in params.get("assertions") or []:
        if not ready:
            results.append({"name": assertion_name(assertion), "ok": False, "value": None,
                            "detail": "not run: the server does not accept connections"})
            continue
        results.append(run_assertion(client, database, assertion, params.get("statement_timeout") or "30s"))
    checks = summary(results)
    failed = [r for r in results if not r["ok"]]
    if failed:
        raise ModuleFailure(failures_text(failed, len(results), "PostgreSQL"), checks=checks, results=results,
                            healthy=False)
    return {"changed": False, "checks": checks, "results": results, "healthy": True,
            "msg": "%d PostgreSQL check(s) passed" % len(results)}


ASSERTION_SPEC = dict(
    name=dict(type="str"),
    sql=dict(type="str", required=True),
    equals=dict(type="raw"),
    min=dict(type="float"),
    max=dict(type="float"),
)


def main():
    exit_module(AnsibleModule, assert_database, name="pg_assert", argument_spec=dict(
        LOGIN_ARGUMENT_SPEC,
        database=dict(type="str", default="postgres"),
        isready=dict(type="bool", default=True),
        assertions=dict(type="list", elements="dict", default=[], options=ASSERTION_SPEC),
        statement_timeout=dict(type="str", default="30s"),
        runbook_timeout=dict(type="float", default=0.0),
    ))


if __name__ == "__main__":
    main()
