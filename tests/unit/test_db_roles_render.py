"""Database roles without a database: the exact commands the mongo roles run, the logic of the backup modules
(manifest checks, finalize order, COPY row counting, compression, names, migration planning) and the shape of
the roles themselves (argument specs vs defaults, no_log on every task that handles a password, FQCN modules).

Everything here is pure: module files are imported as plain libraries (they are stdlib-only on the host), and
so are the module_utils they share (pg_common: libpq/psql helpers; backup_files: .partial, fsync, rename,
manifest, sha256, .latest), imported the Ansible way with runner/collections on sys.path.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import re
import stat
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from opsmodule import load as _load

ROOT = Path(__file__).resolve().parents[2]
COLLECTIONS = ROOT / "runner" / "collections"
PLUGINS = COLLECTIONS / "ansible_collections" / "runbook" / "ops" / "plugins"
MODULES = PLUGINS / "modules"
MODULE_UTILS = PLUGINS / "module_utils"
UTILS_PACKAGE = "ansible_collections.runbook.ops.plugins.module_utils"
ROLES = ROOT / "roles"
DB_ROLES = ("postgres_backup", "postgres_restore", "postgres_migration_rollback", "mongo_backup", "mongo_restore")
DB_MODULES = (
    "pg_dump_partial",
    "pg_inspect",
    "pg_restore_backup",
    "pg_migration_rollback",
    "backup_verify",
    "backup_finalize",
    "backup_mongo",
    "backup_catalog",
)
RUNBOOKS = ("postgres-backup", "postgres-restore", "migration-rollback", "mongo-backup", "mongo-restore")


if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))

from ansible_collections.runbook.ops.plugins.module_utils import (  # noqa: E402
    backup_check,
    backup_files,
    backup_reading,
    host_work,
    pg_common,
    pg_decode,
    pg_restore_counts,
    pg_restore_sql,
    pg_restore_target,
    safe_files,
)

mongo = _load("backup_mongo")
verify_mod = _load("backup_verify")
finalize_mod = _load("backup_finalize")
dump_mod = _load("pg_dump_partial")
restore_mod = _load("pg_restore_backup")
migr = _load("pg_migration_rollback")

MONGO_MAGIC = b"\x6d\xe2\x99\x81"


# ---------------------------------------------------------------------------------------- shared module_utils

# What each module takes from the module_utils (and nothing else of its own of the same name).
SHARED_UTILS = {
    "pg_common": pg_common,
    "backup_files": backup_files,
    "pg_decode": pg_decode,
    "backup_check": backup_check,
    "safe_files": safe_files,
    "host_work": host_work,
    "pg_restore_sql": pg_restore_sql,
    "pg_restore_counts": pg_restore_counts,
    "pg_restore_target": pg_restore_target,
    "backup_reading": backup_reading,
}
USES = {
    "pg_dump_partial": {"pg_common", "backup_files", "pg_decode", "safe_files", "host_work"},
    "pg_inspect": {"pg_common"},
    "pg_restore_backup": {
        "pg_common", "host_work", "backup_reading", "pg_restore_sql", "pg_restore_counts", "pg_restore_target",
    },
    "pg_migration_rollback": {"pg_common"},
    "backup_verify": {"backup_check"},
    "backup_catalog": {"backup_check", "backup_files"},
    "backup_finalize": {"backup_files", "safe_files"},
    "backup_mongo": {"backup_files", "safe_files", "backup_reading"},
}


def _utils_imports(name: str) -> dict[str, list[str]]:
    """module_utils name -> names a module file imports from it (the Ansible way, by FQCN)."""
    import ast

    found: dict[str, list[str]] = {}
    for node in ast.parse((MODULES / f"{name}.py").read_text()).body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(UTILS_PACKAGE + "."):
            found.setdefault(node.module.rsplit(".", 1)[1], []).extend(a.name for a in node.names)
    return found


def _public_names(module: Any) -> set[str]:
    import ast

    names: set[str] = set()
    for node in ast.parse(Path(module.__file__).read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return {n for n in names if not n.startswith("__")}


@pytest.mark.parametrize("name", DB_MODULES)
def test_modules_take_the_shared_helpers_from_module_utils_and_keep_no_copy(name: str) -> None:
    imports = _utils_imports(name)
    assert set(imports) == USES[name]
    module = _load(name)
    own = _public_names(module)
    for util, names in imports.items():
        shared = SHARED_UTILS[util]
        assert Path(shared.__file__) == MODULE_UTILS / f"{util}.py"
        for helper in names:  # the very object of the module_utils, not a look-alike
            assert getattr(module, helper) is getattr(shared, helper), f"{name}.{helper}"
    for util, shared in SHARED_UTILS.items():
        copied = own & _public_names(shared)
        assert not copied, f"{name} defines {sorted(copied)} again instead of importing them from {util}"
    assert "shared block" not in (MODULES / f"{name}.py").read_text()


def test_module_utils_are_stdlib_only_and_ansible_free() -> None:
    allowed = set(sys.stdlib_module_names) | {"__future__"}
    for util in SHARED_UTILS:
        text = (MODULE_UTILS / f"{util}.py").read_text()
        for m in re.finditer(r"^\s*(?:from|import) ([\w.]+)", text, re.M):
            if m.group(1).startswith(UTILS_PACKAGE + "."):  # a sibling module_util, itself checked here
                assert m.group(1).rsplit(".", 1)[1] in SHARED_UTILS, f"{util} imports {m.group(1)}"
                continue
            assert m.group(1).split(".")[0] in allowed, f"{util} imports {m.group(1)}"


# pg_common: quoting, names, the libpq environment and the in-memory password file


def test_quoting_doubles_quotes_and_escapes_conninfo() -> None:
    assert pg_common.quote_ident('My "T"') == '"My ""T"""'
    assert pg_common.quote_literal("it's") == "'it''s'"
    assert pg_common.quote_conninfo("a'b\\c") == "'a\\'b\\\\c'"
    assert pg_common.sql_name('"Sales"."Order ""x"""') == '"Sales"."Order ""x"""'
    assert pg_common.display_name("public", "orders") == "public.orders"
    assert pg_common.display_name("My Schema", "Orders") == '"My Schema"."Orders"'


@given(schema=st.text(min_size=1, max_size=12), name=st.text(min_size=1, max_size=12))
@settings(max_examples=100, deadline=None)
def test_quote_ident_round_trips_through_parse_qualified(schema: str, name: str) -> None:
    quoted = pg_common.quote_ident(schema) + "." + pg_common.quote_ident(name)
    assert pg_common.parse_qualified(quoted) == (schema, name)


def test_client_environment_and_tools() -> None:
    client = pg_common.PgClient("db", 6543, "lab", "pw", "/opt/pg/bin", connect_timeout=0)
    assert client.tool("psql") == "/opt/pg/bin/psql" and pg_common.PgClient().tool("psql") == "psql"
    assert client.conninfo("sh'op") == "dbname='sh\\'op'"
    env = client._env()
    assert env["PGHOST"] == "db" and env["PGPORT"] == "6543" and env["PGUSER"] == "lab"
    assert env["PGCONNECT_TIMEOUT"] == "10" and env["PGAPPNAME"] == "runbook" and env["LC_ALL"] == "C"
    assert "pw" not in env.values() and "PGPASSWORD" not in env and "PGDATABASE" not in env


def test_password_reaches_libpq_through_proc_self_fd_not_argv_or_env(tmp_path: Path) -> None:
    """A fake psql prints what it gets: the password only in the file PGPASSFILE names, and that file is gone
    (closed) once the call returns."""
    fake = tmp_path / "psql"
    fake.write_text(
        '#!/bin/sh\necho "argv=$*"\nenv | grep -c "Secret-PW" || true\necho "passfile=$PGPASSFILE"\ncat "$PGPASSFILE"\n'
    )
    fake.chmod(0o755)
    client = pg_common.PgClient("h", 5432, "u", "Secret-PW", str(tmp_path))
    out = client.psql("db", "SELECT 1")
    lines = out.splitlines()
    assert lines[0] == "argv=-X -q -w -A -t -v ON_ERROR_STOP=1 -d dbname='db' -f -"
    assert lines[1] == "0"  # not in the environment
    assert re.fullmatch(r"passfile=/proc/self/fd/\d+", lines[2])
    assert lines[3] == "*:*:*:u:Secret-PW"
    fd = int(lines[2].rsplit("/", 1)[1])
    with contextlib.suppress(FileNotFoundError):  # closed here once psql is done (the number may be reused since)
        assert "runbook-pgpass" not in os.readlink(f"/proc/self/fd/{fd}")


def test_client_failures_name_the_tool_and_the_tail_of_stderr(tmp_path: Path) -> None:
    fake = tmp_path / "psql"
    fake.write_text("#!/bin/sh\nfor i in $(seq 1 20); do echo line$i >&2; done\nexit 3\n")
    fake.chmod(0o755)
    client = pg_common.PgClient(bin_dir=str(tmp_path))
    with pytest.raises(pg_common.PgError) as info:
        client.psql("db", "SELECT 1", what="probe")
    assert str(info.value) == "probe failed (exit 3): " + "\n".join(f"line{i}" for i in range(9, 21))
    with pytest.raises(pg_common.PgError, match="cannot run"):
        pg_common.PgClient(bin_dir=str(tmp_path / "missing")).psql("db", "SELECT 1")


def test_versions_tails_and_stamps() -> None:
    import datetime

    assert pg_common.tool_major("pg_dump (PostgreSQL) 15.6 (Debian 15.6-0+deb12u1)") == 15
    assert pg_common.tool_major("") == 0
    assert pg_common.tail("") == "(no output)"
    assert pg_common.tail("a\n\n b \nc", lines=2) == " b \nc"
    now = datetime.datetime(2025, 1, 15, 14, 30, 0, 123456, tzinfo=datetime.UTC)
    assert pg_common.utc_stamp(now) == "20250115T143000Z"
    assert pg_common.utc_iso(now) == "2025-01-15T14:30:00.123456Z"


def test_count_rows_maps_display_names_to_counts() -> None:
    class Client:
        def query_json(self, database: str, sql: str, what: str | None = None) -> Any:
            assert "REPEATABLE READ READ ONLY" in sql and what == f"row counts of {database}"
            return [["public", "orders", "1000"], ["My Schema", "T", 0]]

    assert pg_common.count_rows(Client(), "shop") == {"public.orders": 1000, '"My Schema"."T"': 0}


# backup_files: names of a backup's pieces, markers, digests, atomic writes


def test_backup_paths_and_markers(tmp_path: Path) -> None:
    d = str(tmp_path)
    assert backup_files.backup_paths(d, "shop-1", "custom") == {
        "data": f"{d}/shop-1.dump",
        "partial": f"{d}/shop-1.dump.partial",
        "manifest": f"{d}/shop-1.manifest.json",
    }
    assert backup_files.backup_paths(d, "c-1", "archive")["partial"] == f"{d}/c-1.archive.gz.partial"
    assert backup_files.backup_paths(d, "s-1", "directory")["data"] == f"{d}/s-1.dir"
    assert backup_files.marker_path(d, ".latest") == f"{d}/.latest"
    assert backup_files.marker_path(d, ".pre-migration-run_1") == f"{d}/.pre-migration-run_1"
    for bad in ("latest", ".", "../x", ".a/b", ".latest.tmp", "", None):
        with pytest.raises(ValueError, match="invalid marker name"):
            backup_files.marker_path(d, bad)
    assert backup_files.safe_file_part("my db/x") == "my_db_x" and backup_files.safe_file_part("") == "_"


def test_digests_of_files_and_of_a_listing(tmp_path: Path) -> None:
    data = os.urandom(backup_files.CHUNK * 2 + 17)
    (tmp_path / "f").write_bytes(data)
    assert backup_files.sha256_file(str(tmp_path / "f")) == hashlib.sha256(data).hexdigest()
    entries = [{"path": "b/2.dat", "sha256": "bb"}, {"path": "a.dat", "sha256": "aa"}]
    assert backup_files.listing_digest(entries) == hashlib.sha256(b"aa  a.dat\nbb  b/2.dat\n").hexdigest()


def test_data_files_fsync_and_atomic_write(tmp_path: Path) -> None:
    tree = tmp_path / "x.dir"
    (tree / "b").mkdir(parents=True)
    for rel in ("toc.dat", "b/2.dat", "1.dat"):
        (tree / rel).write_bytes(rel.encode())
    assert backup_files.data_files(str(tree)) == [str(tree / n) for n in ("1.dat", "toc.dat", "b/2.dat")]
    assert backup_files.data_files(str(tree / "1.dat")) == [str(tree / "1.dat")]
    backup_files.fsync_tree(str(tree))
    backup_files.fsync_tree(str(tree / "1.dat"))
    target = tmp_path / "m.manifest.json"
    backup_files.write_atomic(str(target), b"{}\n")
    assert target.read_bytes() == b"{}\n" and stat.S_IMODE(target.stat().st_mode) == 0o600
    assert not (tmp_path / "m.manifest.json.tmp").exists()


@pytest.mark.parametrize("name", DB_MODULES)
def test_module_documentation_parses_and_matches_the_argument_spec(name: str) -> None:
    import ast

    tree = ast.parse((MODULES / f"{name}.py").read_text())
    docs = {
        node.targets[0].id: yaml.safe_load(str(node.value.value))
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.targets[0], ast.Name)
        and node.targets[0].id in ("DOCUMENTATION", "EXAMPLES", "RETURN")
        and isinstance(node.value, ast.Constant)
    }
    assert set(docs) == {"DOCUMENTATION", "EXAMPLES", "RETURN"}
    assert docs["DOCUMENTATION"]["module"] == name
    spec = next(
        kw.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        for kw in node.keywords
        if kw.arg == "argument_spec"
    )
    assert isinstance(spec, ast.Call)
    documented = docs["DOCUMENTATION"]["options"]
    assert {kw.arg for kw in spec.keywords} == set(documented)
    module = _load(name)
    for kw in spec.keywords:
        assert isinstance(kw.value, ast.Call)
        given = {
            k.arg: getattr(module, k.value.id) if isinstance(k.value, ast.Name) else ast.literal_eval(k.value)
            for k in kw.value.keywords
        }
        for key in ("type", "default", "required", "no_log", "choices", "elements"):
            if key in given:
                assert documented[kw.arg].get(key) == given[key], f"{name}.{kw.arg}.{key}"


def test_modules_import_without_ansible_and_use_only_the_stdlib() -> None:
    allowed = set(sys.stdlib_module_names) | {"ansible"}
    for name in DB_MODULES:
        text = (MODULES / f"{name}.py").read_text()
        for m in re.finditer(r"^\s*(?:from|import) ([\w.]+)", text, re.M):
            if m.group(1).startswith(UTILS_PACKAGE + "."):  # this collection's own module_utils (stdlib-only)
                assert (MODULE_UTILS / (m.group(1).rsplit(".", 1)[1] + ".py")).is_file(), m.group(1)
                continue
            root = m.group(1).split(".")[0]
            assert root in allowed or root == "__future__", f"{name} imports {m.group(1)}"
        assert "except ImportError" in text  # importable as a plain library on a host


# ------------------------------------------------------------------------------- mongo: the exact commands


def _role_defaults(role: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text())
    return data


def _task_args(role: str, filename: str, module: str) -> list[dict[str, Any]]:
    """Arguments of every call of a module in a task file (including block/rescue bodies)."""
    found: list[dict[str, Any]] = []

    def walk(tasks: list[dict[str, Any]]) -> None:
        for task in tasks or []:
            if module in task:
                found.append(task[module])
            for key in ("block", "rescue", "always"):
                walk(task.get(key, []))

    walk(yaml.safe_load((ROLES / role / "tasks" / filename).read_text()))
    return found


def _params_from_task(args: dict[str, Any], variables: dict[str, Any]) -> dict[str, Any]:
    """Resolve the simple '{{ var }}' arguments of a task against role variables (what Ansible would pass)."""
    params = {}
    for key, value in args.items():
        m = re.fullmatch(r"\{\{\s*(\w+)\s*\}\}", value) if isinstance(value, str) else None
        params[key] = variables[m.group(1)] if m else value
    return params


def test_mongo_backup_runs_exactly_this_mongodump() -> None:
    variables = _role_defaults("mongo_backup") | {
        "mongo_backup_database": "catalog",
        "mongo_backup_login_user": "backup",
        "mongo_backup_login_password": "s3cr3t:pw'\"",
        "mongo_backup__dir": "/var/backups/runbook/mongodb/catalog",
    }
    (args,) = _task_args("mongo_backup", "dump.yml", "runbook.ops.backup_mongo")
    params = _params_from_task(args, variables)
    assert params["action"] == "dump"
    argv = mongo.dump_argv(params, "/var/backups/runbook/mongodb/catalog/x.archive.gz.partial", "/tmp/c/config.yaml")
    assert argv == [
        "mongodump",
        "--config=/tmp/c/config.yaml",
        "--host=localhost",
        "--port=27017",
        "--username=backup",
        "--authenticationDatabase=admin",
        "--db=catalog",
        "--archive=/var/backups/runbook/mongodb/catalog/x.archive.gz.partial",
        "--gzip",
    ]
    assert not any("s3cr3t" in a for a in argv)
    assert mongo.config_text(params["login_password"], params["uri"]) == 'password: "s3cr3t:pw\'\\""\n'


def test_mongo_restore_full_runs_exactly_this_mongorestore() -> None:
    variables = _role_defaults("mongo_restore") | {
        "mongo_restore_database": "catalog",
        "mongo_restore__source": {"path": "/b/catalog-20250101T000000Z.archive.gz"},
    }
    block = _task_args("mongo_restore", "restore.yml", "runbook.ops.backup_mongo")
    params = _params_from_task(block[0], variables)
    params["archive"] = "/b/catalog-20250101T000000Z.archive.gz"
    assert params["action"] == "restore"
    assert mongo.restore_argv(params, params["archive"], "") == [
        "mongorestore",
        "--host=localhost",
        "--port=27017",
        "--archive=/b/catalog-20250101T000000Z.archive.gz",
        "--gzip",
        "--nsInclude=catalog.*",
        "--drop",
        "--stopOnError",
    ]


def test_mongo_restore_selective_repeats_ns_include_and_escapes() -> None:
    params = {
        "database": "shop",
        "collections": ["orders", "transactions", "we*ird"],
        "drop": True,
        "uri": "mongodb://u:pw@db1:27017/?authSource=admin",
        "login_password": "",
    }
    argv = mongo.restore_argv(params, "/b/a.archive.gz", "/tmp/c/config.yaml")
    assert argv == [
        "mongorestore",
        "--config=/tmp/c/config.yaml",
        "--archive=/b/a.archive.gz",
        "--gzip",
        "--nsInclude=shop.orders",
        "--nsInclude=shop.transactions",
        "--nsInclude=shop.we\\*ird",
        "--drop",
        "--stopOnError",
    ]
    assert not any("pw@" in a for a in argv)  # a URI (credentials) only goes into the config file
    assert mongo.config_text("", params["uri"]) == 'uri: "mongodb://u:pw@db1:27017/?authSource=admin"\n'


def test_mongo_safety_put_back_uses_the_same_collections_with_drop() -> None:
    calls = _task_args("mongo_restore", "restore.yml", "runbook.ops.backup_mongo")
    assert len(calls) == 2
    restore, put_back = calls
    assert restore["collections"] == put_back["collections"] == "{{ mongo_restore_collections }}"
    assert put_back["drop"] is True
    assert put_back["archive"] == "{{ mongo_restore__safety.backup.path }}"


def test_mongo_config_file_is_private_and_removed(tmp_path: Path) -> None:
    with mongo.ConfigFile("pw", "") as cfg:
        path = Path(cfg.path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert path.read_text() == 'password: "pw"\n'
    assert not path.exists() and not path.parent.exists()
    with mongo.ConfigFile("", "") as cfg:  # nothing secret: no file, no --config
        assert cfg.path == ""


def test_mongo_tools_version_gate(tmp_path: Path) -> None:
    old = tmp_path / "mongodump"
    old.write_text("#!/bin/sh\necho 'mongodump version: r4.2.1'\n")
    old.chmod(0o755)
    with pytest.raises(mongo.MongoError, match=r"100\.3\.0 or newer"):
        mongo.tools_version(str(old))
    old.write_text("#!/bin/sh\necho 'mongodump version: 100.9.4'\n")
    assert mongo.tools_version(str(old)) == "mongodump version: 100.9.4"
    with pytest.raises(mongo.MongoError, match="not installed"):
        mongo.tools_version(str(tmp_path / "absent"))


def test_mongo_dump_and_restore_through_fake_tools(tmp_path: Path) -> None:
    """The module against stand-in tools: argv never carries the password, the config file does, then vanishes."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "calls.jsonl"
    for tool in ("mongodump", "mongorestore"):
        script = bindir / tool
        script.write_text(
            "#!/usr/bin/env python3\n"
            "import gzip, json, sys\n"
            "args = sys.argv[1:]\n"
            "if args == ['--version']:\n"
            f"    print('{tool} version: 100.9.4'); sys.exit(0)\n"
            "cfg = [a.split('=', 1)[1] for a in args if a.startswith('--config=')]\n"
            f"rec = {{'tool': '{tool}', 'argv': args, 'config': open(cfg[0]).read() if cfg else ''}}\n"
            f"open({str(log)!r}, 'a').write(json.dumps(rec) + '\\n')\n"
            "arch = [a.split('=', 1)[1] for a in args if a.startswith('--archive=')][0]\n"
            f"if '{tool}' == 'mongodump':\n"
            "    with gzip.open(arch, 'wb') as f: f.write(b'\\x6d\\xe2\\x99\\x81' + b'x' * 5000)\n"
        )
        script.chmod(0o755)
    backups = tmp_path / "backups"
    backups.mkdir()
    params = {
        "database": "catalog",
        "dir": str(backups),
        "name": "",
        "tag": "",
        "remove_stale_partials": True,
        "uri": "",
        "login_host": "localhost",
        "login_port": 27017,
        "login_user": "backup",
        "login_password": "Canary-Mongo-42",
        "auth_database": "admin",
        "bin_dir": str(bindir),
        "collections": [],
        "drop": True,
    }
    (backups / "catalog-20200101T000000Z.archive.gz.partial").write_bytes(b"junk")  # an interrupted dump
    dumped = mongo.dump(params)
    assert dumped["removed_partials"] == [str(backups / "catalog-20200101T000000Z.archive.gz.partial")]
    assert Path(dumped["partial"]).is_file()
    verify_mod.verify({"path": dumped["partial"], "kind": "mongodb", "format": "archive"})
    fin = finalize_mod.finalize(
        {"dir": str(backups), "name": dumped["name"], "kind": "mongodb", "format": "archive", "database": "catalog"}
    )
    restored = mongo.restore(dict(params, archive=fin["backup"]["path"], collections=["orders"]))
    assert "orders of catalog restored" in restored["restored"]
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert [c["tool"] for c in calls] == ["mongodump", "mongorestore"]
    for call in calls:
        assert not any("Canary-Mongo-42" in a for a in call["argv"])
        assert call["config"] == 'password: "Canary-Mongo-42"\n'
        config_path = next(a for a in call["argv"] if a.startswith("--config=")).split("=", 1)[1]
        assert not Path(config_path).exists()
    assert "--nsInclude=catalog.orders" in calls[1]["argv"]
    assert (backups / ".latest").read_text() == dumped["name"] + "\n"


def test_mongo_check_mode_runs_nothing(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    tool = bindir / "mongodump"
    tool.write_text("#!/bin/sh\n[ \"$1\" = --version ] && echo 'mongodump version: 100.9.4' && exit 0\nexit 9\n")
    tool.chmod(0o755)
    result = mongo.dump(
        {"database": "c", "dir": str(tmp_path), "bin_dir": str(bindir), "login_password": "x", "uri": ""},
        check_mode=True,
    )
    assert result["msg"].startswith("would dump c into ")
    assert "<config>" in result["command"][1]
    assert list(tmp_path.glob("c-*")) == []


# ------------------------------------------------------------------- manifest checks (backup_verify/finalize)


def _mongo_archive(path: Path, payload: bytes) -> None:
    with gzip.open(path, "wb") as handle:
        handle.write(MONGO_MAGIC + payload)


def _finished_backup(directory: Path, name: str = "catalog-20250101T000000Z", database: str = "catalog") -> str:
    partial = directory / f"{name}.archive.gz.partial"
    _mongo_archive(partial, os.urandom(20000) + b"tail")
    finalize_mod.finalize(
        {
            "dir": str(directory),
            "name": name,
            "kind": "mongodb",
            "format": "archive",
            "database": database,
            "metadata": {"tools": {"mongodump": "100.9.4"}, "started": "2025-01-01T00:00:00.000000Z"},
        }
    )
    return name


def _refusal(params: dict[str, Any]) -> Any:
    with pytest.raises(verify_mod.Refused) as info:
        verify_mod.verify(params)
    return info.value


def test_finalize_writes_data_then_manifest_then_latest(tmp_path: Path) -> None:
    name = _finished_backup(tmp_path)
    data = tmp_path / f"{name}.archive.gz"
    manifest = json.loads((tmp_path / f"{name}.manifest.json").read_text())
    assert not (tmp_path / f"{name}.archive.gz.partial").exists()
    assert manifest["sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()
    assert manifest["files"] == [{"path": data.name, "size": data.stat().st_size, "sha256": manifest["sha256"]}]
    assert manifest["database"] == "catalog" and manifest["kind"] == "mongodb" and manifest["duration_s"] > 0
    assert (tmp_path / ".latest").read_text() == name + "\n"
    assert stat.S_IMODE(data.stat().st_mode) == 0o600
    assert not list(tmp_path.glob("*.tmp"))
    result = verify_mod.verify({"dir": str(tmp_path), "backup": "latest", "kind": "mongodb", "database": "catalog"})
    assert [c["name"] for c in result["checks"]] == [
        "found", "manifest", "kind", "database", "files", "size", "sha256", "decode",
    ]  # fmt: skip


class _Crash(BaseException):
    """Stands for SIGKILL: nothing after it runs, no cleanup handler either."""


def _finalize_with_crash(directory: Path, name: str, limit: int | None, monkeypatch: pytest.MonkeyPatch) -> int:
    """Run finalize, dying before the (limit+1)-th file system call; returns how many calls it made."""
    calls = {"n": 0}
    real = {op: getattr(os, op) for op in ("open", "write", "fsync", "rename", "chmod", "close")}

    def wrap(op: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            calls["n"] += 1
            if limit is not None and calls["n"] > limit:
                raise _Crash
            return real[op](*args, **kwargs)

        return call

    with monkeypatch.context() as patch:
        for op in real:
            patch.setattr(os, op, wrap(op))
        with contextlib.suppress(_Crash):
            finalize_mod.finalize(
                {"dir": str(directory), "name": name, "kind": "mongodb", "format": "archive", "database": "catalog"}
            )
    return calls["n"]


def test_finalize_interrupted_at_every_step_never_leaves_a_complete_looking_backup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    probe = tmp_path / "probe"
    probe.mkdir()
    _mongo_archive(probe / "catalog-2.archive.gz.partial", b"z" * 50000)
    total = _finalize_with_crash(probe, "catalog-2", None, monkeypatch)
    assert total > 10
    outcomes: Counter[str] = Counter()
    for limit in range(total + 1):
        directory = tmp_path / f"crash-{limit}"
        directory.mkdir()
        old = _finished_backup(directory, name="catalog-1")
        _mongo_archive(directory / "catalog-2.archive.gz.partial", b"z" * 50000)
        _finalize_with_crash(directory, "catalog-2", limit, monkeypatch)
        latest = verify_mod.verify({"dir": str(directory), "backup": "latest", "kind": "mongodb"})
        assert latest["name"] in (old, "catalog-2")  # .latest always names a whole, verified backup
        try:
            verify_mod.verify({"dir": str(directory), "backup": "catalog-2", "kind": "mongodb"})
            outcomes["complete"] += 1
        except verify_mod.Refused as exc:
            assert exc.check == "manifest", f"crash after {limit} calls: {exc}"  # never size/sha256/decode
            assert latest["name"] == old
            outcomes["incomplete"] += 1
    assert outcomes["complete"] >= 1 and outcomes["incomplete"] >= 5


def test_finalize_refuses_an_empty_or_missing_partial(tmp_path: Path) -> None:
    base = {"dir": str(tmp_path), "kind": "mongodb", "format": "archive", "database": "c"}
    with pytest.raises(ValueError, match="missing"):
        finalize_mod.finalize(dict(base, name="c-1"))
    (tmp_path / "c-2.archive.gz.partial").write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        finalize_mod.finalize(dict(base, name="c-2"))
    assert not list(tmp_path.glob("*.manifest.json")) and not (tmp_path / ".latest").exists()


def test_finalize_check_mode_touches_nothing(tmp_path: Path) -> None:
    (tmp_path / "c-1.archive.gz.partial").write_bytes(b"x")
    result = finalize_mod.finalize(
        {"dir": str(tmp_path), "name": "c-1", "kind": "mongodb", "format": "archive", "database": "c"},
        check_mode=True,
    )
    assert result["msg"].startswith("would finalize c-1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c-1.archive.gz.partial"]


@pytest.mark.parametrize(
    ("damage", "check", "detail"),
    [
        ("truncate10", "size", "truncated"),
        ("truncate50", "size", "truncated"),
        ("truncate90", "size", "truncated"),
        ("flip", "sha256", "corrupted"),
        ("empty", "size", "empty"),
        ("missing", "files", "missing"),
        ("no-manifest", "manifest", "incomplete"),
        ("forged-manifest", "decode", "does not decompress"),
        ("grown", "size", "manifest says"),
    ],
)
def test_damaged_backups_are_refused_naming_the_check(tmp_path: Path, damage: str, check: str, detail: str) -> None:
    name = _finished_backup(tmp_path)
    data = tmp_path / f"{name}.archive.gz"
    manifest_path = tmp_path / f"{name}.manifest.json"
    raw = data.read_bytes()
    if damage.startswith("truncate"):
        data.write_bytes(raw[: len(raw) * int(damage[8:]) // 100])
    elif damage == "flip":
        flipped = bytearray(raw)
        flipped[len(raw) // 2] ^= 0x01
        data.write_bytes(bytes(flipped))
    elif damage == "empty":
        data.write_bytes(b"")
    elif damage == "missing":
        data.unlink()
    elif damage == "no-manifest":
        manifest_path.unlink()
    elif damage == "grown":
        data.write_bytes(raw + b"\0")
    elif damage == "forged-manifest":  # truncated, and someone "fixed" the manifest to match: only decoding sees it
        cut = raw[: len(raw) // 2]
        data.write_bytes(cut)
        manifest = json.loads(manifest_path.read_text())
        digest = hashlib.sha256(cut).hexdigest()
        manifest["files"][0].update(size=len(cut), sha256=digest)
        manifest.update(size=len(cut), sha256=digest)
        manifest_path.write_text(json.dumps(manifest))
    refused = _refusal({"dir": str(tmp_path), "backup": "latest", "kind": "mongodb", "database": "catalog"})
    assert refused.check == check
    assert detail in refused.detail
    assert refused.result["checks"][-1] == {"name": check, "ok": False, "detail": refused.detail}


def test_wrong_database_and_wrong_kind_are_refused(tmp_path: Path) -> None:
    _finished_backup(tmp_path, name="other-20250101T000000Z", database="other")
    refused = _refusal({"dir": str(tmp_path), "backup": "latest", "kind": "mongodb", "database": "catalog"})
    assert refused.check == "database" and "'other', not 'catalog'" in refused.detail
    refused = _refusal({"dir": str(tmp_path), "backup": "latest", "kind": "postgres", "database": "other"})
    assert refused.check == "kind"


def test_missing_backups_are_refused(tmp_path: Path) -> None:
    assert _refusal({"dir": str(tmp_path), "backup": "latest", "kind": "mongodb"}).check == "found"
    assert _refusal({"dir": str(tmp_path), "backup": "nope-1", "kind": "mongodb"}).check == "found"
    name = _finished_backup(tmp_path)
    # by name, by data path and by manifest path all find the same backup
    for ref in (name, str(tmp_path / f"{name}.archive.gz"), str(tmp_path / f"{name}.manifest.json")):
        assert verify_mod.verify({"dir": str(tmp_path), "backup": ref, "kind": "mongodb"})["name"] == name


def test_partial_archive_decodes_only_when_whole(tmp_path: Path) -> None:
    path = tmp_path / "a.archive.gz.partial"
    _mongo_archive(path, b"y" * 100000)
    assert verify_mod.verify({"path": str(path), "kind": "mongodb", "format": "archive"})["ok"]
    path.write_bytes(path.read_bytes()[:-10])
    assert _refusal({"path": str(path), "kind": "mongodb", "format": "archive"}).check == "decode"
    with gzip.open(path, "wb") as handle:
        handle.write(b"not an archive")
    assert "magic" in _refusal({"path": str(path), "kind": "mongodb", "format": "archive"}).detail


# ------------------------------------------------------------------------ pg: names (decoding: test_pg_decode.py)


_IDENT = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12).filter(
    lambda s: s.strip() == s and s != ""
)


@given(schema=_IDENT, name=_IDENT)
@settings(max_examples=300, deadline=None)
def test_display_names_parse_back(schema: str, name: str) -> None:
    shown = pg_common.display_name(schema, name)
    assert pg_common.parse_qualified(shown) == (schema, name)


def test_table_names_as_operators_write_them() -> None:
    parse = pg_common.parse_qualified
    assert parse("orders") == ("public", "orders")
    assert parse("Sales.Orders") == ("sales", "orders")
    assert parse('"Sales"."Order ""x"""') == ("Sales", 'Order "x"')
    assert pg_common.sql_name("orders") == '"public"."orders"'
    for bad in ("a.b.c", "a.", '"open', ""):
        with pytest.raises(ValueError):
            parse(bad)


# -------------------------------------------------------------------------------- pg: commands and names


def test_pg_dump_compression_follows_the_tool_version() -> None:
    assert dump_mod.compression_args("auto", 15) == ([], "gzip")
    assert dump_mod.compression_args("gzip:9", 15) == (["-Z", "9"], "gzip:9")
    assert dump_mod.compression_args("none", 15) == (["-Z", "0"], "none")
    assert dump_mod.compression_args("auto", 16) == (["--compress=zstd"], "zstd")
    assert dump_mod.compression_args("zstd:5", 17) == (["--compress=zstd:5"], "zstd:5")
    with pytest.raises(ValueError, match="pg_dump 16 or newer"):
        dump_mod.compression_args("zstd", 15)
    with pytest.raises(ValueError):
        dump_mod.compression_args("brotli", 16)


def test_pg_dump_argv_has_no_password_and_quotes_the_database() -> None:
    client = dump_mod.PgClient("127.0.10.21", 5432, "lab", "Canary-PG-1")
    custom = dump_mod.dump_argv(client, "sh'op", "/b/x.dump.partial", "custom", 2, [], "30s")
    assert custom == [
        "pg_dump", "-F", "c", "-f", "/b/x.dump.partial", "--lock-wait-timeout=30s", "-d", "dbname='sh\\'op'",
    ]  # fmt: skip
    directory = dump_mod.dump_argv(client, "shop", "/b/x.dir.partial", "directory", 4, ["-Z", "6"], "")
    assert directory == ["pg_dump", "-F", "d", "-f", "/b/x.dir.partial", "-j", "4", "-Z", "6", "-d", "dbname='shop'"]
    env = client._env()
    assert "Canary-PG-1" not in json.dumps(env) and "PGPASSWORD" not in env


def test_password_file_is_in_memory_and_escaped() -> None:
    client = pg_common.PgClient("h", 5432, "us:er", "pa:ss\\word")
    fd, path, tmpdir = client._passfile()
    try:
        assert tmpdir is None and path == f"/proc/self/fd/{fd}"  # memfd: nothing on disk
        assert os.pread(fd, 200, 0) == b"*:*:*:us\\:er:pa\\:ss\\\\word\n"
        assert stat.S_IMODE(os.fstat(fd).st_mode) == 0o600
    finally:
        os.close(fd)


def test_backup_names_never_collide(tmp_path: Path) -> None:
    import datetime

    now = datetime.datetime(2025, 1, 15, 14, 30, 0, tzinfo=datetime.UTC)
    first = dump_mod.backup_name("shop", "", str(tmp_path), "custom", now)
    assert first == "shop-20250115T143000Z"
    (tmp_path / "shop-20250115T143000Z.dump.partial").write_bytes(b"x")
    assert dump_mod.backup_name("shop", "safety", str(tmp_path), "custom", now) == "shop-safety-20250115T143000Z"
    assert dump_mod.backup_name("shop", "", str(tmp_path), "custom", now) == "shop-20250115T143000Z-2"
    assert dump_mod.backup_name("my db/x", "", str(tmp_path), "custom", now) == "my_db_x-20250115T143000Z"


def test_stale_partials_are_this_databases_only(tmp_path: Path) -> None:
    for name in ("shop-1.dump.partial", "shop-2.dir.partial", "shop-3.manifest.json.tmp", "shopx-1.dump.partial",
                 "shop-4.dump", "other-1.dump.partial"):  # fmt: skip
        (tmp_path / name).write_bytes(b"x")
    found = [Path(p).name for p in dump_mod.stale_partials(str(tmp_path), "shop")]
    assert found == ["shop-1.dump.partial", "shop-2.dir.partial", "shop-3.manifest.json.tmp"]


def test_restore_names_fit_postgres_limits() -> None:
    assert restore_mod.derived("shop", "restore", "20250115_143000") == "shop__restore_20250115_143000"
    long = "d" * 60
    for kind in ("restore", "pre", "reverted"):
        name = restore_mod.derived(long, kind, "20250115_143000")
        assert len(name.encode()) <= 63
    assert restore_mod.derived(long, "pre", "1") != restore_mod.derived("d" * 59 + "e", "pre", "1")


def test_swap_is_one_transaction_with_both_renames() -> None:
    sql = restore_mod.swap_sql("shop", "shop__restore_1", "shop__pre_1", True, True, 150000, "10s")
    lines = sql.splitlines()
    assert lines[0] == "SET lock_timeout = '10s';"
    assert lines[1] == "BEGIN;" and lines[-1] == "COMMIT;"
    assert "pg_terminate_backend(pid, 5000)" in lines[2] and "datname = 'shop'" in lines[2]
    assert lines[3:5] == [
        'ALTER DATABASE "shop" RENAME TO "shop__pre_1";',
        'ALTER DATABASE "shop__restore_1" RENAME TO "shop";',
    ]
    no_live = restore_mod.swap_sql("shop", "t", "p", False, True, 150000, "10s")
    assert 'RENAME TO "p"' not in no_live and 'ALTER DATABASE "t" RENAME TO "shop";' in no_live


def test_selective_restore_truncates_then_checks_counts_before_commit() -> None:
    head, tail = restore_mod.table_load_sql(["public.orders"], {"public.orders": 1000}, "10s")
    # rows counted as pg_dump sees them: the table's own (ONLY, not its inheritance children), row security off
    assert head == 'SET lock_timeout = \'10s\';\nSET row_security = off;\nBEGIN;\nTRUNCATE ONLY "public"."orders";\n'
    assert tail.rstrip().endswith("COMMIT;")
    assert 'SELECT count(*) FROM ONLY "public"."orders" INTO n;' in tail and "IF n <> 1000" in tail


def test_restore_argv() -> None:
    client = restore_mod.PgClient("h", 5432, "u", "p")
    assert restore_mod.restore_argv(client, "shop__restore_1", "/b/x.dump", 4, False, False) == [
        "pg_restore", "-w", "-d", "dbname='shop__restore_1'", "--exit-on-error", "-j", "4", "/b/x.dump",
    ]  # fmt: skip
    assert "--single-transaction" in restore_mod.restore_argv(client, "shop", "/b/x.dump", 1, True, True)


# ---------------------------------------------------------------------------- migrations: planning, parsing

FIXTURE = ROOT / "lab" / "migrations" / "shop"


def test_fixture_migrations_load_and_need_no_transaction_of_their_own() -> None:
    migrations = migr.load_migrations(directory=str(FIXTURE))
    assert sorted(migrations) == [1, 2, 3, 4]
    for migration in migrations.values():
        assert migration["up"] and migration["down"]
        assert not migr.manages_transaction(migration["down"])
    assert not migr.manages_transaction((FIXTURE / "0004_create_order_events.up.sql").read_text())


def test_plan_is_newest_first_and_refuses_gaps() -> None:
    migrations = migr.load_migrations(directory=str(FIXTURE))
    applied = {1: "0001", 2: "0002", 3: "0003", 4: "0004"}
    assert migr.plan(applied, migrations, 2) == [4, 3]
    assert migr.plan(applied, migrations, 4) == []
    assert migr.plan({1: "0001"}, migrations, 2) == []
    assert migr.plan(applied, migrations, 0) == [4, 3, 2, 1]
    with pytest.raises(migr.MigrationError, match="no down script for applied migration 0007"):
        migr.plan({**applied, 7: "0007"}, migrations, 2)


@pytest.mark.parametrize(
    ("sql", "own"),
    [
        ("BEGIN;\nALTER TABLE t DROP COLUMN c;\nCOMMIT;", True),
        ("start transaction; drop table t; end;", True),
        ("DROP TABLE t; ROLLBACK;", True),
        ("DO $$ BEGIN PERFORM 1; END $$;", False),
        ("CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END;", False),
        ("-- BEGIN;\nSELECT 'COMMIT;';\n/* ROLLBACK; */", False),
        ("ALTER TABLE t DROP COLUMN begin_at;", False),
    ],
)
def test_scripts_with_their_own_transaction_are_spotted(sql: str, own: bool) -> None:
    assert migr.manages_transaction(sql) is own


def test_rollback_script_checks_and_deletes_in_the_same_transaction() -> None:
    migration = {"name": "0004_x", "down": "DROP TABLE x;", "version": "0004"}
    script = migr.rollback_script(migration, "0004", '"public"."schema_migrations"', "10s")
    assert script.index("is no longer applied") < script.index("DROP TABLE x;") < script.index("DELETE FROM")
    assert 'DELETE FROM "public"."schema_migrations" WHERE version::text = \'0004\';' in script
    assert "BEGIN" not in script.replace("$runbook$ BEGIN", "")  # psql --single-transaction wraps it


# ------------------------------------------------------------------------------------- the roles themselves


def _spec(role: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROLES / role / "meta" / "argument_specs.yml").read_text())
    main: dict[str, Any] = data["argument_specs"]["main"]
    return main


@pytest.mark.parametrize("role", DB_ROLES)
def test_spec_options_are_prefixed_described_and_match_defaults(role: str) -> None:
    spec = _spec(role)
    defaults = _role_defaults(role) or {}
    for name, option in spec["options"].items():
        assert name.startswith(role + "_"), name
        assert option.get("description"), name
        assert option.get("type"), name
        assert option.get("required") or "default" in option, name
        if option.get("required"):
            assert name not in defaults, name
        else:
            assert defaults[name] == option["default"], name
    assert set(defaults) <= set(spec["options"])


def _tasks(role: str) -> list[tuple[str, dict[str, Any]]]:
    out = []

    def walk(filename: str, tasks: list[dict[str, Any]]) -> None:
        for task in tasks or []:
            out.append((filename, task))
            for key in ("block", "rescue", "always"):
                walk(filename, task.get(key, []))

    for path in sorted((ROLES / role / "tasks").glob("*.yml")):
        walk(path.name, yaml.safe_load(path.read_text()))
    return out


@pytest.mark.parametrize("role", DB_ROLES)
def test_every_task_that_handles_a_password_is_no_log(role: str) -> None:
    secret_options = [k for k, v in _spec(role)["options"].items() if v.get("no_log")]
    assert secret_options
    for filename, task in _tasks(role):
        text = yaml.safe_dump({k: v for k, v in task.items() if k not in ("block", "rescue", "always")})
        if any(opt in text for opt in secret_options):
            assert task.get("no_log") is True, f"{role}/{filename}: {task.get('name')}"
        assert "environment" not in task, f"{role}/{filename}: environment would put secrets in ps"


@pytest.mark.parametrize("role", DB_ROLES)
def test_tasks_are_named_fqcn_and_modules_exist(role: str) -> None:
    for filename, task in _tasks(role):
        assert task.get("name", "")[:1].isupper(), f"{role}/{filename}: {task}"
        modules = [k for k in task if "." in k and k.count(".") >= 2]
        for module in modules:
            namespace, collection, short = module.split(".", 2)
            assert (namespace, collection) in {("ansible", "builtin"), ("runbook", "ops")}, module
            if namespace == "runbook":
                assert (MODULES / f"{short}.py").is_file(), module
    main = yaml.safe_load((ROLES / role / "tasks" / "main.yml").read_text())
    includes = [t for block in main for t in block.get("block", [])]
    # main.yml is a table of contents: every entry pulls in a task file (static, or dynamic when often skipped)
    assert all({"ansible.builtin.import_tasks", "ansible.builtin.include_tasks"} & set(t) for t in includes)


@pytest.mark.parametrize("role", DB_ROLES)
def test_probes_do_not_report_changes(role: str) -> None:
    for filename, task in _tasks(role):
        if "runbook.ops.backup_verify" in task or "runbook.ops.pg_inspect" in task:
            assert task.get("changed_when") is False, f"{role}/{filename}: {task['name']}"


# ---------------------------------------------------------------------------------------------- runbooks


@pytest.mark.parametrize("name", RUNBOOKS)
def test_shipped_runbooks_validate_and_have_on_failure(name: str) -> None:
    from runner import api

    path = ROOT / "runbooks" / f"{name}.yml"
    result = api.validate(path)
    assert result.ok, result
    doc = yaml.safe_load(path.read_text())
    assert doc["spec"]["on_failure"], name
    for step in doc["spec"]["steps"] + doc["spec"]["on_failure"]:
        for key, value in (step.get("with") or {}).items():
            assert not key.startswith(step["uses"] + "_"), f"{name}: use short option names ({key})"
            if "password" in key:
                assert "params." in value or "db_password" in value


def test_restored_tables_are_counted_as_pg_restore_reports_their_data_loaded() -> None:
    class Client:
        def __init__(self) -> None:
            self.sql: list[tuple[str, str]] = []

        def psql(self, database: str, sql: str, what: str | None = None) -> str:
            self.sql.append((database, sql))
            return "42\n"

    client = Client()
    entries = [(3356, "public", "orders"), (3358, "My Schema", "T")]
    counter = restore_mod.LoadedTableCounter(client, "shop__restore_x", entries)
    for line in (
        "pg_restore: processing item 3356 TABLE DATA orders",
        "pg_restore: finished item 3356 TABLE DATA orders",
        "pg_restore: finished item 3357 INDEX orders_pkey",
        "pg_restore: finished item 3358 TABLE DATA T",
    ):
        counter.line(line)
    assert counter.finish() == {"public.orders": 42, '"My Schema"."T"': 42}
    assert [db for db, _ in client.sql] == ["shop__restore_x"] * 2  # only TABLE DATA items, in the copy
    assert all("max_parallel_workers_per_gather = 0" in sql for _, sql in client.sql)  # one core: restore goes on
    assert 'FROM ONLY "My Schema"."T"' in client.sql[1][1]  # its own rows, as the backup counted them
