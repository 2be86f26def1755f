"""Backup -> damage -> restore through the shipped runbooks, on a database holding every kind of object pg_dump
handles: names that need quoting, unicode, enums, domains, extensions, partitions (one sub-partitioned, a default
one), inheritance (a parent whose count(*) includes its children's rows), generated columns, an unlogged table,
row-level security, large objects, sequences, a materialized view, views, triggers, grants, comments, and data
full of COPY escape characters (tabs, newlines, carriage returns, backslashes, a literal \\N, a literal \\.).

After each restore the database is compared from outside with what it was before the damage: the rows of every
table, view and materialized view (count and md5 of every row), and a catalog fingerprint (enum labels in order,
domains and constraints, extensions, columns with their generation expressions, partition bounds, inheritance,
persistence, RLS flags and policies, grants, triggers, functions, indexes, views, sequence values, large object
bytes, comments). Then the objects are made to work: a trigger fires, a policy filters, the domain refuses, the
materialized view refreshes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from labtools import drop_databases, host_sh, latest_report, pg, run, step_outputs

pytestmark = pytest.mark.lab

DB = "schemas_zoo"
READER = "schemas_zoo_reader"
BACKUP_ROOT = "/var/backups/rbtest-schemas"
BACKUP_DIR = f"{BACKUP_ROOT}/{DB}"
ORDER_LINES = '"Sales & Co"."Order Lines"'
STRASSE = '"ünï"."Straße"'

ZOO = r"""
CREATE EXTENSION citext;
CREATE EXTENSION pgcrypto;
CREATE SCHEMA "Sales & Co";
CREATE SCHEMA "ünï";
COMMENT ON SCHEMA "Sales & Co" IS 'schema with a space and an ampersand';

CREATE TYPE public.mood AS ENUM ('sad', 'ok', 'happy', 'überglücklich');
ALTER TYPE public.mood ADD VALUE 'meh' BEFORE 'ok';
-- commit

COMMENT ON TYPE public.mood IS 'how it went';
CREATE DOMAIN public.positive_int AS integer CHECK (VALUE > 0);
CREATE DOMAIN public.email AS citext CHECK (VALUE ~ '^[^@]+@[^@]+$');
COMMENT ON DOMAIN public.email IS 'an address, compared case-insensitively';

CREATE SEQUENCE public.ticket_seq START 1000 INCREMENT 7;
COMMENT ON SEQUENCE public.ticket_seq IS 'ticket numbers';

-- inheritance: count(*) of the parent includes its children's 700 rows, its own COPY data has 1000
CREATE TABLE public.parent (id bigint PRIMARY KEY, label text NOT NULL);
CREATE TABLE public.child_a (extra int) INHERITS (public.parent);
CREATE TABLE public.child_b () INHERITS (public.parent);
COMMENT ON COLUMN public.parent.label IS 'what the row is';
INSERT INTO public.parent SELECT g, 'parent ' || g FROM generate_series(1, 1000) g;
INSERT INTO public.child_a SELECT g, 'child a ' || g, g % 10 FROM generate_series(1001, 1400) g;
INSERT INTO public.child_b SELECT g, 'child b ' || g FROM generate_series(1401, 1700) g;

-- partitions: by range, one of them sub-partitioned by hash, and a default one
CREATE TABLE public.measurements (
  id bigint GENERATED ALWAYS AS IDENTITY, taken date NOT NULL, reading numeric(10, 2),
  PRIMARY KEY (id, taken)) PARTITION BY RANGE (taken);
CREATE TABLE public.measurements_2024 PARTITION OF public.measurements
  FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE public.measurements_2025 PARTITION OF public.measurements
  FOR VALUES FROM ('2025-01-01') TO ('2026-01-01') PARTITION BY HASH (id);
CREATE TABLE public.measurements_2025_h0 PARTITION OF public.measurements_2025 FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE public.measurements_2025_h1 PARTITION OF public.measurements_2025 FOR VALUES WITH (MODULUS 2, REMAINDER 1);
CREATE TABLE public.measurements_other PARTITION OF public.measurements DEFAULT;
INSERT INTO public.measurements (taken, reading)
  SELECT date '2024-01-01' + (g % 900), g / 7.0 FROM generate_series(1, 1200) g;

-- quoted and unicode names, a domain, an enum, a generated column, an extension type, COPY escape characters
CREATE TABLE "Sales & Co"."Order Lines" (
  "Line ID" int PRIMARY KEY,
  qty public.positive_int NOT NULL,
  "price ¢" int NOT NULL,
  total int GENERATED ALWAYS AS (qty * "price ¢") STORED,
  mood public.mood NOT NULL DEFAULT 'ok',
  contact public.email,
  note text,
  raw bytea,
  ticket int NOT NULL DEFAULT nextval('public.ticket_seq'),
  fingerprint text NOT NULL DEFAULT encode(public.digest('zoo', 'sha256'), 'hex'));
COMMENT ON TABLE "Sales & Co"."Order Lines" IS 'Zeilen der Bestellungen: ''quoted'', tab	and ünï';
COMMENT ON COLUMN "Sales & Co"."Order Lines"."price ¢" IS 'cents';
INSERT INTO "Sales & Co"."Order Lines" ("Line ID", qty, "price ¢", mood, contact, note, raw)
SELECT g, 1 + g % 5, 100 + g, (enum_range(NULL::public.mood))[1 + g % 5], 'User' || g || '@Example.COM',
  CASE WHEN g % 13 = 0 THEN NULL ELSE (ARRAY[
    E'tab\there', E'new\nline', E'back\\slash', '\N', '\.', E'\\.\n\\.', E'cr\r\nlf', '', '日本語 🎉',
    E'\\N\t\\.\n\\\\', E'trailing backslash\\', E'\\\n'])[1 + g % 12] || '#' || g END,
  decode(md5(g::text), 'hex') || '\x00ff5c0a0d09'::bytea
FROM generate_series(1, 600) g;
CREATE TABLE "ünï"."Straße" (id int PRIMARY KEY, "naïve" text, "Größe" numeric);
INSERT INTO "ünï"."Straße" SELECT g, 'café ' || g || E'\t✓', g * 1.25 FROM generate_series(1, 120) g;
CREATE TABLE public."we""ird.name" (id int PRIMARY KEY, "select" text);
INSERT INTO public."we""ird.name" SELECT g, '\N' FROM generate_series(1, 30) g;
CREATE TABLE public.empty_one (id int);

-- row-level security (forced), a grant, an audit trigger
CREATE TABLE public.audit (id bigserial PRIMARY KEY, tbl text NOT NULL, op text NOT NULL, row_id int);
CREATE FUNCTION public.audit_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO public.audit (tbl, op, row_id) VALUES (TG_TABLE_NAME, TG_OP, NEW.id);
  RETURN NEW;
END $$;
COMMENT ON FUNCTION public.audit_row() IS 'one audit row per change';
CREATE TABLE public.accounts (id int PRIMARY KEY, tenant text NOT NULL, balance numeric NOT NULL);
ALTER TABLE public.accounts ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.accounts FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_only ON public.accounts USING (tenant = current_setting('zoo.tenant', true));
COMMENT ON POLICY tenant_only ON public.accounts IS 'a tenant sees its own rows';
CREATE TRIGGER accounts_audit AFTER INSERT OR UPDATE ON public.accounts
  FOR EACH ROW EXECUTE FUNCTION public.audit_row();
COMMENT ON TRIGGER accounts_audit ON public.accounts IS 'audit trail';
INSERT INTO public.accounts SELECT g, 'tenant' || (g % 3), g * 1.5 FROM generate_series(1, 300) g;
GRANT SELECT ON public.accounts TO schemas_zoo_reader;

-- unlogged
CREATE UNLOGGED TABLE public.sessions (token uuid PRIMARY KEY DEFAULT gen_random_uuid(), seen timestamptz NOT NULL);
INSERT INTO public.sessions (seen)
  SELECT timestamptz '2025-01-01 00:00:00+00' + g * interval '1 minute' FROM generate_series(1, 250) g;

-- large objects: referenced by a table, and one orphan with a comment
CREATE TABLE public.documents (id int PRIMARY KEY, title text NOT NULL, body oid NOT NULL);
INSERT INTO public.documents
  SELECT g, 'doc ' || g, lo_from_bytea(0, convert_to(repeat('página ' || g || E'\t\\N\n', 300 * g), 'UTF8'))
  FROM generate_series(1, 5) g;

-- views and a materialized view
CREATE VIEW "Sales & Co"."Big Spenders" AS
  SELECT "Line ID", total, mood FROM "Sales & Co"."Order Lines" WHERE total > 1500;
COMMENT ON VIEW "Sales & Co"."Big Spenders" IS 'lines over 15.00';
CREATE MATERIALIZED VIEW public.parent_summary AS
  SELECT regexp_replace(label, ' [0-9]+$', '') AS kind, count(*) AS n FROM public.parent GROUP BY 1;
CREATE UNIQUE INDEX parent_summary_kind ON public.parent_summary (kind);
COMMENT ON MATERIALIZED VIEW public.parent_summary IS 'rows per kind, children included';
CREATE INDEX order_lines_note ON "Sales & Co"."Order Lines" (lower(note)) WHERE note IS NOT NULL;

SELECT setval('public.ticket_seq', 987654, true);
"""

SCHEMAS = "('public', 'Sales & Co', 'ünï')"  # the zoo's
MINE = f"(SELECT oid FROM pg_namespace WHERE nspname IN {SCHEMAS})"
FINGERPRINT_SQL = {
    "extensions": "SELECT extname, extversion FROM pg_extension",
    "enums": """SELECT t.typname, string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder) FROM pg_enum e
                JOIN pg_type t ON t.oid = e.enumtypid GROUP BY 1""",
    "constraints": f"""SELECT conrelid::regclass::text, contypid::regtype::text, conname, pg_get_constraintdef(oid)
                      FROM pg_constraint WHERE connamespace IN {MINE}""",
    "columns": f"""SELECT a.attrelid::regclass::text, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                         a.attgenerated, pg_get_expr(d.adbin, d.adrelid)
                  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                  WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm')
                        AND c.relnamespace IN {MINE}""",
    "relations": f"""SELECT c.oid::regclass::text, c.relkind, c.relpersistence, c.relrowsecurity, c.relforcerowsecurity,
                           c.relispartition, pg_get_expr(c.relpartbound, c.oid), c.relacl::text, c.relispopulated
                    FROM pg_class c WHERE c.relnamespace IN {MINE}""",
    "inheritance": "SELECT inhrelid::regclass::text, inhparent::regclass::text FROM pg_inherits",
    "policies": "SELECT schemaname, tablename, policyname, permissive, roles::text, cmd, qual, with_check"
    " FROM pg_policies",
    "triggers": "SELECT pg_get_triggerdef(oid), tgenabled FROM pg_trigger WHERE NOT tgisinternal",
    "functions": """SELECT pg_get_functiondef(p.oid) FROM pg_proc p
                    WHERE p.pronamespace = 'public'::regnamespace AND NOT EXISTS
                      (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')""",
    "indexes": f"SELECT indexdef FROM pg_indexes WHERE schemaname IN {SCHEMAS}",
    "views": f"""SELECT c.oid::regclass::text, pg_get_viewdef(c.oid) FROM pg_class c
                WHERE c.relkind IN ('v', 'm') AND c.relnamespace IN {MINE}""",
    "large_objects": "SELECT oid, md5(lo_get(oid)) FROM pg_largeobject_metadata",
    "comments": """SELECT pg_describe_object(classoid, objoid, objsubid), description FROM pg_description
                   WHERE objoid >= 16384""",
    "schemas": f"SELECT nspname, nspacl::text FROM pg_namespace WHERE nspname IN {SCHEMAS}",
}
ROWS_SQL = f"""SELECT format('%I.%I', n.nspname, c.relname), c.relkind FROM pg_class c
              JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relkind IN ('r', 'v', 'm') AND c.relnamespace IN {MINE}"""
SEQUENCES_SQL = "SELECT c.oid::regclass::text FROM pg_class c WHERE c.relkind = 'S'"


def rows_of(conn: psycopg.Connection[Any]) -> dict[str, tuple[int, str]]:
    """Per table (its own rows: ONLY), view and materialized view: the row count and the md5 of every row."""
    out: dict[str, tuple[int, str]] = {}
    for name, kind in conn.execute(ROWS_SQL).fetchall():
        only = "ONLY " if kind == "r" else ""
        row = conn.execute(
            f"SELECT count(*), coalesce(md5(string_agg(t::text, ',' ORDER BY t::text)), '') FROM {only}{name} t"
        ).fetchone()
        assert row is not None
        out[name] = (row[0], row[1])
    return out


def fingerprint(db: str) -> dict[str, Any]:
    """Everything the restore must bring back, as sorted lists of catalog rows, plus the rows themselves."""
    with pg(db) as conn:
        found: dict[str, Any] = {k: sorted(map(repr, conn.execute(q).fetchall())) for k, q in FINGERPRINT_SQL.items()}
        found["sequences"] = sorted(
            (name, *conn.execute(f"SELECT last_value, is_called FROM {name}").fetchall()[0])
            for (name,) in conn.execute(SEQUENCES_SQL).fetchall()
        )
        found["rows"] = rows_of(conn)
    return found


def build_zoo() -> None:
    drop_databases(DB)
    with pg() as conn:
        conn.execute(f"DROP ROLE IF EXISTS {READER}")
        conn.execute(f"CREATE ROLE {READER} NOLOGIN")
        conn.execute(f"CREATE DATABASE {DB} OWNER lab")
    with pg(DB) as conn:
        for part in ZOO.split("\n-- commit\n"):  # a new enum value is usable once committed
            conn.execute(part.encode())
        orphan = conn.execute(r"SELECT lo_from_bytea(0, '\x000102035c2e0aff'::bytea)").fetchone()
        assert orphan is not None
        conn.execute(f"COMMENT ON LARGE OBJECT {int(orphan[0])} IS 'an orphan: bytes 00 01 02 03 \\ . newline ff'")


@pytest.fixture
def zoo(lab: object) -> Any:
    build_zoo()
    host_sh("db", f"rm -rf {BACKUP_DIR}")
    yield DB
    drop_databases(DB)
    with pg() as conn:
        conn.execute(f"DROP ROLE IF EXISTS {READER}")
    host_sh("db", f"rm -rf {BACKUP_ROOT}")


def backup(state: Path, *args: str) -> dict[str, Any]:
    made = run(state, "postgres-backup", "-p", f"database={DB}", "-p", f"backup_dir={BACKUP_DIR}", *args)
    assert made.returncode == 0, made.stdout + made.stderr
    manifests = sorted(host_sh("db", f"ls {BACKUP_DIR}/*.manifest.json").split())
    manifest: dict[str, Any] = json.loads(host_sh("db", f"cat {manifests[-1]}"))
    return manifest


def restore(state: Path, mode: str, *args: str) -> dict[str, Any]:
    """The postgres-restore runbook, approved; the outputs of its restore step."""
    done = run(
        state, "postgres-restore", "--yes", "-p", f"database={DB}", "-p", f"backup_dir={BACKUP_DIR}",
        "-p", f"mode={mode}", *args,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert latest_report(state)["status"] == "succeeded"
    return step_outputs(state, "restore")


def damage_everything(db: str) -> None:
    """Rows deleted and changed in every kind of table, objects dropped or altered, a sequence moved."""
    with pg(db) as conn:
        conn.execute("DELETE FROM ONLY public.parent WHERE id % 2 = 0")
        conn.execute("UPDATE public.child_a SET label = 'mangled' WHERE id % 3 = 0")
        conn.execute("DELETE FROM public.child_b WHERE id > 1600")
        conn.execute("DROP TABLE public.measurements_2024")
        conn.execute("UPDATE public.measurements SET reading = -1 WHERE taken >= '2025-01-01'")
        conn.execute(f"UPDATE {ORDER_LINES} SET note = E'a\\tdifferent\\nnote', qty = 9 WHERE \"Line ID\" % 4 = 0")
        conn.execute(f"DELETE FROM {STRASSE} WHERE id < 60")
        conn.execute("TRUNCATE public.accounts")
        conn.execute("DROP POLICY tenant_only ON public.accounts")
        conn.execute("ALTER TABLE public.accounts NO FORCE ROW LEVEL SECURITY")
        conn.execute("DROP TRIGGER accounts_audit ON public.accounts")
        conn.execute("DELETE FROM public.audit WHERE id > 100")
        conn.execute("TRUNCATE public.sessions")
        conn.execute("SELECT lo_unlink(body) FROM public.documents WHERE id = 3")
        conn.execute("SELECT lo_put(body, 0, '\\x2121'::bytea) FROM public.documents WHERE id = 4")
        conn.execute("DROP MATERIALIZED VIEW public.parent_summary")
        conn.execute('DROP VIEW "Sales & Co"."Big Spenders"')
        conn.execute("ALTER TYPE public.mood RENAME VALUE 'überglücklich' TO 'ecstatic'")
        conn.execute("ALTER DOMAIN public.positive_int DROP CONSTRAINT positive_int_check")
        conn.execute("COMMENT ON TYPE public.mood IS 'overwritten'")
        conn.execute("SELECT setval('public.ticket_seq', 5, false)")
        conn.execute("DROP EXTENSION citext CASCADE")  # takes the email domain and the contact column with it


def assert_the_objects_work(db: str) -> None:
    """The restored objects behave: trigger, policy, grant, domain, enum, generated column, matview, sequence."""
    with pg(db) as conn:
        audited = conn.execute("SELECT count(*) FROM public.audit").fetchone()
        conn.execute("INSERT INTO public.accounts VALUES (1001, 'tenant1', 1)")
        after = conn.execute("SELECT count(*), max(row_id) FROM public.audit").fetchone()
        assert audited is not None and after is not None and after == (audited[0] + 1, 1001)  # the trigger fired
        with conn.transaction():
            conn.execute(f"SET LOCAL ROLE {READER}")
            conn.execute("SET LOCAL zoo.tenant = 'tenant1'")
            seen = conn.execute("SELECT count(*), count(*) FILTER (WHERE tenant <> 'tenant1') FROM public.accounts")
            assert seen.fetchone() == (101, 0)  # the forced policy filters, through the grant
        labels = conn.execute("SELECT enum_range(NULL::public.mood)::text").fetchone()
        assert labels == ("{sad,meh,ok,happy,überglücklich}",)
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(f'INSERT INTO {ORDER_LINES} ("Line ID", qty, "price ¢") VALUES (9001, 0, 1)')
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(f'INSERT INTO {ORDER_LINES} ("Line ID", qty, "price ¢", contact) VALUES (9002, 1, 1, \'x\')')
        conn.execute(f'INSERT INTO {ORDER_LINES} ("Line ID", qty, "price ¢", contact) VALUES (9003, 3, 7, \'A@B.C\')')
        made = conn.execute(
            f"SELECT total, ticket, contact = 'a@b.c' FROM {ORDER_LINES} WHERE \"Line ID\" = 9003"
        ).fetchone()
        assert made == (21, 987654 + 7, True)  # generated column, the sequence went on from its value, citext
        conn.execute("INSERT INTO public.child_b VALUES (5000, 'child b 5000')")
        conn.execute("REFRESH MATERIALIZED VIEW CONCURRENTLY public.parent_summary")
        summary = dict(conn.execute("SELECT kind, n FROM public.parent_summary").fetchall())
        assert summary == {"parent": 1000, "child a": 400, "child b": 301}


def test_zoo_swap_restore_brings_every_object_and_row_back(zoo: str, tmp_path: Path) -> None:
    manifest = backup(tmp_path)
    # the backup counts each table's own rows (its COPY data): the parent without its children
    tables = manifest["tables"]
    assert tables["public.parent"] == 1000 and tables["public.child_a"] == 400 and tables["public.child_b"] == 300
    assert tables[ORDER_LINES] == 600 and tables[STRASSE] == 120 and tables['public."we""ird.name"'] == 30
    assert tables["public.measurements_2025_h0"] + tables["public.measurements_2025_h1"] > 0
    assert "public.measurements" not in tables and "public.parent_summary" not in tables
    good = fingerprint(zoo)
    damage_everything(zoo)
    assert fingerprint(zoo) != good

    outputs = restore(tmp_path, "swap")
    assert fingerprint(zoo) == good
    assert "by swap" in outputs["restored"] and outputs["rows_after"]["public.parent"] == 1000
    assert all(check["ok"] for check in outputs["checks"]), outputs["checks"]
    assert_the_objects_work(zoo)


def test_zoo_in_place_restore_from_a_directory_backup(zoo: str, tmp_path: Path) -> None:
    manifest = backup(tmp_path, "-p", "format=directory", "-p", "jobs=2")
    assert manifest["format"] == "directory" and manifest["tables"]["public.parent"] == 1000
    good = fingerprint(zoo)
    damage_everything(zoo)

    outputs = restore(tmp_path, "in_place")
    assert fingerprint(zoo) == good
    assert "restored in place" in outputs["restored"] and outputs["rows_after"]["public.parent"] == 1000
    assert_the_objects_work(zoo)


SELECTED = ["parent", "public.child_a", "measurements_2024", ORDER_LINES, STRASSE, 'public."we""ird.name"']


def test_zoo_selective_restore_of_a_parent_a_child_a_partition_and_quoted_tables(zoo: str, tmp_path: Path) -> None:
    backup(tmp_path)
    good = fingerprint(zoo)["rows"]
    with pg(zoo) as conn:
        conn.execute("DELETE FROM ONLY public.parent WHERE id % 2 = 0")
        conn.execute("UPDATE public.child_a SET label = 'mangled' WHERE id % 3 = 0")
        conn.execute("DELETE FROM public.measurements WHERE taken < '2024-06-01'")
        conn.execute(f"UPDATE {ORDER_LINES} SET note = E'x\\ty', qty = 9 WHERE \"Line ID\" % 4 = 0")
        conn.execute(f"DELETE FROM {STRASSE} WHERE id < 60")
        conn.execute('UPDATE public."we""ird.name" SET "select" = NULL')
        # changes to tables that are not restored must survive
        conn.execute("UPDATE public.child_b SET label = 'kept' WHERE id < 1450")
        conn.execute("DELETE FROM public.measurements WHERE taken >= '2025-01-01'")
    changed = fingerprint(zoo)["rows"]

    outputs = restore(tmp_path, "tables", "-p", f"tables={json.dumps(SELECTED)}")
    now = fingerprint(zoo)["rows"]
    restored = ["public.parent", "public.child_a", "public.measurements_2024", ORDER_LINES, STRASSE,
                'public."we""ird.name"']  # fmt: skip
    for name in restored:
        assert now[name] == good[name] != changed[name], name
    for name in ("public.child_b", "public.measurements_2025_h0", "public.measurements_2025_h1"):
        assert now[name] == changed[name] != good[name], name
    assert "other tables untouched" in outputs["restored"]
    assert outputs["rows_after"]["public.parent"] == 1000 and outputs["rows_before"]["public.parent"] == 500
