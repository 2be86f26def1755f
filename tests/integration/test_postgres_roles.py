"""The PostgreSQL roles against the lab's real PostgreSQL 15 on host db (127.0.10.21), checked from outside.

Roles run with plain `ansible-playbook -i inventories/lab/hosts.yml` on a playbook written into a tmp dir; the
database is checked with psycopg from the machine. Every test works on scratch databases (rbtest_*) seeded
from lab/shop-seed.sql, so `shop` itself and other drills are left alone; all of them are dropped at the end.

MongoDB: no mongod can be installed in the lab image, so the MongoDB roles run on the control node against a
private mongod started by the test (with authentication, so the --config path is exercised); those tests skip
with "mongod/mongodump not installed" where the MongoDB server and Database Tools are missing.

The kill tests run the very module code the roles run (the module files, imported as plain stdlib libraries
on the host) in a loop on the db host itself and SIGKILL it at random moments: through Ansible each kill
would cost seconds.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tarfile
import textwrap
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from runner import lab as lab_driver

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = ROOT / "inventories" / "lab" / "hosts.yml"
COLLECTIONS = ROOT / "runner" / "collections"
MODULES = COLLECTIONS / "ansible_collections" / "runbook" / "ops" / "plugins" / "modules"
MODULE_UTILS = MODULES.parent / "module_utils"
MIGRATIONS = ROOT / "lab" / "migrations" / "shop"
SEED = ROOT / "lab" / "shop-seed.sql"
ANSIBLE_PLAYBOOK = Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin" / "ansible-playbook"
DB_ADDR = lab_driver.LAB_HOSTS["db"]
DB_USER, DB_PASSWORD = lab_driver.DB_USER, lab_driver.DB_PASSWORD
BACKUPS = "/var/backups/rbtest"
HOST_TMP = "/tmp/rbtest"
CONN = {"login_host": DB_ADDR, "login_port": 5432, "login_user": DB_USER, "login_password": DB_PASSWORD}
TABLES = ("orders", "wallet")


# ------------------------------------------------------------------------------------------------ helpers


def one(conn: psycopg.Connection[Any], query: str, params: tuple[Any, ...] | None = None) -> Any:
    row = conn.execute(query.encode(), params).fetchone()
    assert row is not None
    return row


def pg(dbname: str = "postgres") -> psycopg.Connection[Any]:
    return psycopg.connect(
        host=DB_ADDR, port=5432, user=DB_USER, password=DB_PASSWORD, dbname=dbname, autocommit=True, connect_timeout=5
    )


def databases(prefix: str) -> list[str]:
    with pg() as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s ORDER BY 1", (prefix + "%",))
        return [r[0] for r in rows]


def drop_database(name: str) -> None:
    with pg() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def seed(name: str, filler_rows: int = 0) -> str:
    """A fresh copy of the lab's shop database (orders 1000 rows, wallet 100 rows), optionally with ballast."""
    drop_database(name)
    with pg() as conn:
        conn.execute(f'CREATE DATABASE "{name}" OWNER {DB_USER}')
    with pg(name) as conn:
        conn.execute(SEED.read_text().encode())
        if filler_rows:
            conn.execute(
                "CREATE TABLE events AS SELECT g AS id, md5(g::text) AS payload FROM generate_series(1, %s) g",
                (filler_rows,),
            )
            conn.execute("ALTER TABLE events ADD PRIMARY KEY (id)")
    return name


def checksums(dbname: str) -> dict[str, tuple[int, str] | None]:
    """Per table: (rows, md5 of every row in id order); None when the table is gone."""
    out: dict[str, tuple[int, str] | None] = {}
    with pg(dbname) as conn:
        for table in TABLES:
            if one(conn, "SELECT to_regclass(%s)", (f"public.{table}",))[0] is None:
                out[table] = None
                continue
            row = one(conn, f"SELECT count(*), coalesce(md5(string_agg(t::text, ',' ORDER BY id)), '') FROM {table} t")
            out[table] = (row[0], row[1])
    return out


def damage(dbname: str) -> None:
    """What a bad deploy does: deletes, updates and a dropped table."""
    with pg(dbname) as conn:
        conn.execute("DELETE FROM orders WHERE id % 3 = 0")
        conn.execute("UPDATE orders SET amount_cents = amount_cents + 1 WHERE id % 7 = 0")
        conn.execute("DROP TABLE wallet")


def ssh(command: str, stdin: bytes | None = None, timeout: float = 300) -> subprocess.CompletedProcess[bytes]:
    argv = [*lab_driver.ssh_argv("db"), "--", command]
    return subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout, check=False)


def ssh_ok(command: str, stdin: bytes | None = None, timeout: float = 300) -> str:
    proc = ssh(command, stdin, timeout)
    assert proc.returncode == 0, f"{command}: {proc.stderr.decode()[-2000:]}"
    return proc.stdout.decode()


def host_python(script: str, payload: dict[str, Any], timeout: float = 300) -> Any:
    """Run a Python script on the db host with the modules importable; payload on stdin, JSON result on stdout."""
    ssh_ok(f"mkdir -p {HOST_TMP} && cat > {HOST_TMP}/script.py", textwrap.dedent(script).encode())
    out = ssh_ok(f"python3 {HOST_TMP}/script.py", json.dumps(payload).encode(), timeout)
    return json.loads(out.strip().splitlines()[-1])


def read_host_json(path: str) -> Any:
    return json.loads(ssh_ok(f"cat {path}"))


@dataclass
class RunResult:
    rc: int
    outputs: dict[str, Any]
    failure: str
    stats: dict[str, Any]
    tasks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.rc == 0


def run_role(
    tmp_path: Path, role: str, options: dict[str, Any], *, check: bool = False, local: bool = False
) -> RunResult:
    """ansible-playbook -i inventories/lab/hosts.yml on a one-role playbook (host db; or the control node itself
    with local=True); options are short names."""
    work = tmp_path / f"play-{role}-{time.monotonic_ns()}"
    work.mkdir()
    host = "localhost" if local else "db"
    playbook = [
        {
            "name": f"Exercise {role}",
            "hosts": host,
            "gather_facts": False,
            "tasks": [
                {"name": "Run the role", "ansible.builtin.include_role": {"name": role}},
                {"name": "Show the outputs", "ansible.builtin.debug": {"var": "runbook_outputs"}},
            ],
        }
    ]
    (work / "play.yml").write_text(json.dumps(playbook))
    (work / "vars.json").write_text(json.dumps({f"{role}_{k}": v for k, v in options.items()}))
    env = dict(
        os.environ,
        ANSIBLE_ROLES_PATH=str(ROOT / "roles"),
        ANSIBLE_COLLECTIONS_PATH=str(ROOT / "runner" / "collections"),
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        ANSIBLE_PIPELINING="True",
        ANSIBLE_SSH_ARGS="-o ControlMaster=auto -o ControlPersist=120s",
        ANSIBLE_SSH_CONTROL_PATH_DIR="/tmp/rbtest-cp",
        ANSIBLE_RETRY_FILES_ENABLED="False",
        ANSIBLE_HOST_KEY_CHECKING="False",
    )
    inventory = ["-i", "localhost,", "-c", "local", "-e", f"ansible_python_interpreter={sys.executable}"]
    argv = [str(ANSIBLE_PLAYBOOK), *(inventory if local else ["-i", str(INVENTORY)]), str(work / "play.yml")]
    argv += ["-e", f"@{work / 'vars.json'}"]
    if check:
        argv.append("--check")
    proc = subprocess.run(argv, capture_output=True, env=env, cwd=work, timeout=600, check=False)
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        pytest.fail(f"ansible-playbook said: {proc.stdout.decode()[-3000:]} {proc.stderr.decode()[-3000:]}")
    tasks = [t for play in report["plays"] for t in play["tasks"]]
    outputs: dict[str, Any] = {}
    failure = ""
    for task in tasks:
        result = task["hosts"].get(host, {})
        if task["task"]["name"] == "Show the outputs":
            outputs = result.get("runbook_outputs") or {}
        if result.get("failed") and not result.get("censored"):
            failure = str(result.get("msg", ""))
    return RunResult(proc.returncode, outputs, failure, report["stats"].get(host, {}), tasks)


def upload_modules() -> str:
    """The module files as they are in the repository, importable on the host from HOST_TMP/mods, with the
    collection's module_utils they import (ansible_collections.runbook.ops.plugins.module_utils.*) beside them."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in ("pg_dump_partial", "backup_verify", "backup_finalize", "pg_restore_backup", "pg_inspect"):
            tar.add(MODULES / f"{name}.py", arcname=f"{name}.py")
        utils = Path("ansible_collections/runbook/ops/plugins/module_utils")
        for package in (utils, *list(utils.parents)[:-1]):  # regular packages: nothing else on sys.path wins
            tar.addfile(tarfile.TarInfo(str(package / "__init__.py")), io.BytesIO(b""))
        for util in sorted(MODULE_UTILS.glob("*.py")):
            tar.add(util, arcname=str(utils / util.name))
    ssh_ok(f"rm -rf {HOST_TMP}/mods && mkdir -p {HOST_TMP}/mods && tar -x -C {HOST_TMP}/mods", buf.getvalue())
    return f"{HOST_TMP}/mods"


# ----------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def scratch(lab: Any) -> Any:
    """Clean slate on the db host; afterwards every rbtest_* database and the test backup directory go."""
    ssh_ok(f"rm -rf {BACKUPS} {HOST_TMP} && mkdir -p {HOST_TMP}")
    yield
    for name in databases("rbtest_"):
        drop_database(name)
    with pg() as conn:
        conn.execute("DROP ROLE IF EXISTS rbtest_canary")
        conn.execute("DROP ROLE IF EXISTS rbtest_ghost")
    ssh(f"rm -rf {BACKUPS} {HOST_TMP}")


def backup(tmp_path: Path, db: str, **extra: Any) -> dict[str, Any]:
    result = run_role(tmp_path, "postgres_backup", {"database": db, "dir": f"{BACKUPS}/{db}", **CONN, **extra})
    assert result.ok, result.failure
    return result.outputs


def restore(tmp_path: Path, db: str, **extra: Any) -> RunResult:
    return run_role(tmp_path, "postgres_restore", {"database": db, "dir": f"{BACKUPS}/{db}", **CONN, **extra})


# ---------------------------------------------------------------------------------- backup / damage / restore


def test_backup_damage_restore_by_swap(scratch: Any, tmp_path: Path) -> None:
    db = seed("rbtest_swap")
    good = checksums(db)
    out = backup(tmp_path, db)

    assert set(out["backup"]) >= {"path", "size", "sha256", "database", "format"}
    assert out["backup"]["database"] == db and out["backup"]["format"] == "custom"
    assert out["tables"] == {"public.orders": 1000, "public.wallet": 100}
    manifest = read_host_json(out["manifest"])
    assert manifest["tables"] == out["tables"] and manifest["sha256"] == out["sha256"]
    assert manifest["tools"]["pg_dump"].startswith("pg_dump (PostgreSQL) 15")
    assert manifest["server_version"].startswith("15")
    assert manifest["started"] < manifest["finished"]
    sha = ssh_ok(f"sha256sum {out['path']}").split()[0]
    assert sha == out["sha256"] == manifest["files"][0]["sha256"]
    assert ssh_ok(f"cat {BACKUPS}/{db}/.latest").strip() == out["name"]

    damage(db)
    damaged = checksums(db)
    assert damaged["wallet"] is None and damaged != good

    result = restore(tmp_path, db, mode="swap")
    assert result.ok, result.failure
    assert checksums(db) == good
    outs = result.outputs
    assert outs["rows_before"] == {"public.orders": 667}
    assert outs["rows_after"] == {"public.orders": 1000, "public.wallet": 100}
    assert all(check["ok"] for check in outs["checks"]) and {c["name"] for c in outs["checks"]} >= {
        "sha256", "decode", "rows public.orders", "rows public.wallet",
    }  # fmt: skip
    assert "by swap" in outs["restored"]
    previous = outs["previous_database"]
    # the safety copy is the replaced database itself, kept whole: it holds the damaged state
    assert previous.startswith(f"{db}__pre_") and checksums(previous) == damaged
    assert outs["safety_copy"] == {"kind": "database", "name": previous}
    assert databases(f"{db}__restore_") == []
    # the backup was decoded once, by the restore itself (no pre-restore pg_restore, no safety dump)
    names = [t["task"]["name"] for t in result.tasks]
    assert not any(n.startswith("Dump the current state") for n in names)
    assert "-safety-" not in ssh_ok(f"ls {BACKUPS}/{db}")
    assert ssh_ok(f"cat {BACKUPS}/{db}/.latest").strip() == out["name"]

    # safety_copy: dump takes a verified safety backup first even in swap mode; it never becomes .latest
    damage(db)
    result = restore(tmp_path, db, mode="swap", safety_copy="dump", decode="before")
    assert result.ok, result.failure
    assert checksums(db) == good
    outs = result.outputs
    assert "-safety-" in outs["backup"]["name"] and outs["safety_copy"]["kind"] == "backup"
    assert read_host_json(outs["backup"]["manifest"])["tables"] == {"public.orders": 667}
    assert outs["rows_before"] == {"public.orders": 667}
    assert {c["name"] for c in outs["checks"]} >= {"decode", "rows"}
    assert ssh_ok(f"cat {BACKUPS}/{db}/.latest").strip() == out["name"]
    for name in databases(f"{db}__pre_"):
        if name != previous:
            drop_database(name)

    # revert puts the replaced database back (undo of the swap)
    result = restore(tmp_path, db, mode="revert", previous_database=previous)
    assert result.ok, result.failure
    assert checksums(db) == damaged


def test_backup_damage_restore_in_place_from_directory_format(scratch: Any, tmp_path: Path) -> None:
    db = seed("rbtest_inplace")
    good = checksums(db)
    out = backup(tmp_path, db, format="directory", jobs=2)
    assert out["backup"]["format"] == "directory" and out["path"].endswith(".dir")
    manifest = read_host_json(out["manifest"])
    assert len(manifest["files"]) >= 3  # toc.dat and one data file per table
    damage(db)
    result = restore(tmp_path, db, mode="in_place")
    assert result.ok, result.failure
    assert checksums(db) == good
    assert result.outputs["rows_after"] == {"public.orders": 1000, "public.wallet": 100}
    assert "restored in place" in result.outputs["restored"]


def test_selective_restore_leaves_other_tables_alone(scratch: Any, tmp_path: Path) -> None:
    db = seed("rbtest_tables")
    good = checksums(db)
    backup(tmp_path, db)
    with pg(db) as conn:
        conn.execute("DELETE FROM orders WHERE id > 900")
        conn.execute("UPDATE orders SET customer = 'mangled' WHERE id < 10")
        conn.execute("UPDATE wallet SET balance_cents = 0 WHERE id < 50")  # a change that must survive
    changed_wallet = checksums(db)["wallet"]

    result = restore(tmp_path, db, mode="tables", tables=["orders"])
    assert result.ok, result.failure
    now = checksums(db)
    assert now["orders"] == good["orders"]
    assert now["wallet"] == changed_wallet != good["wallet"]
    assert result.outputs["rows_before"]["public.orders"] == 900
    assert result.outputs["rows_after"] == {"public.orders": 1000, "public.wallet": 100}
    assert "other tables untouched" in result.outputs["restored"]


def test_in_place_failure_puts_the_safety_backup_back(scratch: Any, tmp_path: Path) -> None:
    """pg_restore fails after the drop (an owner role that no longer exists): the live data comes back."""
    db = seed("rbtest_putback")
    with pg() as conn:
        conn.execute("DROP ROLE IF EXISTS rbtest_ghost")
        conn.execute("CREATE ROLE rbtest_ghost")
    with pg(db) as conn:
        conn.execute("CREATE TABLE ghostly (id int); ALTER TABLE ghostly OWNER TO rbtest_ghost")
    backup(tmp_path, db)
    with pg(db) as conn:
        conn.execute("DROP TABLE ghostly")
    with pg() as conn:
        conn.execute("DROP ROLE rbtest_ghost")
    damage(db)
    damaged = checksums(db)
    result = restore(tmp_path, db, mode="in_place")
    assert not result.ok
    assert 'role "rbtest_ghost" does not exist' in result.failure
    assert "was put back" in result.failure
    assert checksums(db) == damaged


# --------------------------------------------------------------------------------------- corruption matrix


CORRUPTIONS = {
    "truncated-10": ("truncate -s $(( $(stat -c %s {f}) * 10 / 100 )) {f}", "size check failed", "truncated"),
    "truncated-50": ("truncate -s $(( $(stat -c %s {f}) * 50 / 100 )) {f}", "size check failed", "truncated"),
    "truncated-90": ("truncate -s $(( $(stat -c %s {f}) * 90 / 100 )) {f}", "size check failed", "truncated"),
    "flipped-byte": (
        "python3 -c \"import sys; p=sys.argv[1]; b=bytearray(open(p,'rb').read()); b[len(b)//2]^=0x10; "
        "open(p,'wb').write(b)\" {f}",
        "sha256 check failed",
        "corrupted",
    ),
    "empty-file": ("truncate -s 0 {f}", "size check failed", "empty"),
    "missing-file": ("rm -f {f}", "files check failed", "missing"),
    "no-manifest": ("rm -f {m}", "manifest check failed", "incomplete"),
    "forged-manifest": (
        'truncate -s $(( $(stat -c %s {f}) / 2 )) {f} && python3 -c "import hashlib,json,os,sys; '
        "f,m=sys.argv[1:3]; d=json.load(open(m)); h=hashlib.sha256(open(f,'rb').read()).hexdigest(); "
        "s=os.path.getsize(f); d['files'][0].update(size=s, sha256=h); d.update(size=s, sha256=h); "
        "json.dump(d, open(m,'w'))\" {f} {m}",
        "decode check failed",
        "",  # pg_restore's stream ends inside COPY data, or pg_restore itself fails, depending on the cut
    ),
    "no-backup-at-all": ("rm -f {d}/* {d}/.latest", "found check failed", "no finished backup"),
}


def test_damaged_or_foreign_backups_are_refused_and_nothing_changes(scratch: Any, tmp_path: Path) -> None:
    db = seed("rbtest_corrupt")
    other = seed("rbtest_other")
    out = backup(tmp_path, db)
    foreign = backup(tmp_path, other)
    good = checksums(db)

    cases: dict[str, tuple[str, str]] = {}
    for case, (command, check, detail) in CORRUPTIONS.items():
        d = f"{BACKUPS}/cases/{case}"
        f = f"{d}/{Path(out['path']).name}"
        m = f"{d}/{Path(out['manifest']).name}"
        ssh_ok(f"mkdir -p {d} && cp -a {BACKUPS}/{db}/. {d}/ && " + command.format(f=f, m=m, d=d))
        cases[case] = (check, detail)
    # a backup of another database, put where shop's backups are
    d = f"{BACKUPS}/cases/wrong-database"
    ssh_ok(f"mkdir -p {d} && cp -a {BACKUPS}/{other}/. {d}/")
    cases["wrong-database"] = ("database check failed", f"of database '{other}', not '{db}'")
    ssh_ok(f"ls {BACKUPS}/cases")

    results = {}
    for case in sorted(cases):
        result = restore(tmp_path, db, dir=f"{BACKUPS}/cases/{case}", mode="swap")
        results[case] = result
        assert not result.ok, f"{case} was restored"
    for case, (check, detail) in cases.items():
        message = results[case].failure
        assert check in message and detail in message, f"{case}: {message}"
        # refused before anything ran: no safety backup, no temporary database, no database change
        assert not any(t["task"]["name"].startswith("Dump the current state") for t in results[case].tasks)
    assert checksums(db) == good
    assert databases(f"{db}__") == []
    assert ssh_ok(f"ls {BACKUPS}/{db}").split() == sorted([Path(out["path"]).name, Path(out["manifest"]).name]), (
        "nothing new (no safety backup) next to the good backup"
    )
    # the untouched original still restores
    assert foreign["name"] != out["name"]
    print("\ncorruption matrix:")
    for case in sorted(results):
        print(f"  {case:18} refused: {results[case].failure.split(': ', 2)[-1][:150]}")


# ------------------------------------------------------------------------------------------------ kill tests

PIPELINE = """
import json, os, sys, time
cfg = json.loads(sys.stdin.read())
sys.path.insert(0, cfg["mods"])
import pg_dump_partial, backup_finalize
def phase(name):
    with open(cfg["phase_file"], "a") as handle:
        handle.write("%s %.6f\\n" % (name, time.time()))
# the same sequence as roles/postgres_backup: dump.yml (pg_dump + full decode) -> finalize.yml
fmt = cfg.get("format", "custom")
phase("dump")
dump = pg_dump_partial.run(dict(database=cfg["database"], dir=cfg["dir"], format=fmt, jobs=2, verify=True,
                                **cfg["conn"]))
phase("finalize")
meta = dict((k, dump[k]) for k in ("started", "server_version", "server_version_num", "tools", "compression",
                                   "database_properties"))
meta["tables"] = dump["tables"]
final = backup_finalize.finalize(dict(dir=cfg["dir"], name=dump["name"], kind="postgres", format=fmt,
                                      database=cfg["database"], metadata=meta))
phase("done")
print(json.dumps(final["backup"]))
"""

KILLER = """
import json, os, random, signal, subprocess, sys, time
cfg = json.loads(sys.stdin.read())
rng = random.Random(cfg["seed"])

def marks_of(phase_file, started):
    try:
        lines = open(phase_file).read().splitlines()
    except OSError:
        return []
    return [(p, round(float(t) - started, 4)) for p, t in (line.split() for line in lines if line.count(" ") == 1)]

def run(tag, after=None, delay=None, fmt="custom"):
    \"\"\"Start one backup; kill it `delay` seconds after it reaches phase `after` (or after starting).\"\"\"
    phase_file = "%s/phase-%s" % (cfg["tmp"], tag)
    job = dict(cfg["job"], phase_file=phase_file, format=fmt)
    started = time.time()
    proc = subprocess.Popen([sys.executable, cfg["pipeline"]], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    proc.stdin.write(json.dumps(job).encode())
    proc.stdin.close()
    killed = False
    if delay is not None:
        while after and proc.poll() is None and after not in dict(marks_of(phase_file, started)):
            time.sleep(0.0005)
        time.sleep(delay)
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)   # the module and its pg_dump / pg_restore children
            except ProcessLookupError:
                pass
    out = proc.stdout.read().decode()
    err = proc.stderr.read().decode()
    proc.wait()
    killed = proc.returncode == -signal.SIGKILL   # it may have finished just before the signal: not a kill
    marks = marks_of(phase_file, started)
    return {"after": after, "delay": delay, "format": fmt, "killed": killed, "rc": proc.returncode,
            "phase": marks[-1][0] if marks else "start", "marks": dict(marks), "err": err[-300:]}

marks = {}
for fmt in ("custom", "directory"):
    calib = run("calibration-" + fmt, fmt=fmt)
    assert calib["rc"] == 0, calib
    marks[fmt] = calib["marks"]
kills = []
attempt = 0
while sum(1 for k in kills if k["killed"]) < cfg["kills"] and attempt < cfg["kills"] * 4:
    attempt += 1
    fmt = ("custom", "directory")[(attempt // 3) % 2]  # pg_restore decode after the dump / follower during it
    m = marks[fmt]
    window = attempt % 3
    if window == 0:    # anywhere, from the start
        kills.append(run(attempt, None, rng.uniform(0, m["done"] * 1.05), fmt))
    elif window == 1:  # while pg_dump writes the .partial and it is decoded
        kills.append(run(attempt, "dump", rng.uniform(0, m["finalize"] - m["dump"]), fmt))
    else:              # during finalize: fsync, sha256, rename, manifest, .latest
        kills.append(run(attempt, "finalize", rng.uniform(0, (m["done"] - m["finalize"]) * 1.2), fmt))
print(json.dumps({"calibration": marks, "kills": kills}))
"""

INSPECT = """
import json, os, sys
cfg = json.loads(sys.stdin.read())
sys.path.insert(0, cfg["mods"])
import backup_verify
d = cfg["dir"]
entries = sorted(os.listdir(d))
manifests = [e[: -len(".manifest.json")] for e in entries if e.endswith(".manifest.json")]
verified, refused = {}, {}
for name in manifests:
    try:
        backup_verify.verify(dict(dir=d, backup=name, kind="postgres", database=cfg["database"]))
        verified[name] = True
    except backup_verify.Refused as exc:
        verified[name] = str(exc)
incomplete = sorted(set(e.split(".")[0] for e in entries if not e.startswith(".")) - set(manifests))
for name in incomplete:
    try:
        backup_verify.verify(dict(dir=d, backup=name, kind="postgres", database=cfg["database"]))
        refused[name] = "ACCEPTED"
    except backup_verify.Refused as exc:
        refused[name] = exc.check
latest = open(os.path.join(d, ".latest")).read().strip() if os.path.exists(os.path.join(d, ".latest")) else None
latest_ok = None
if latest:
    try:
        backup_verify.verify(dict(dir=d, backup="latest", kind="postgres", database=cfg["database"]))
        latest_ok = True
    except backup_verify.Refused as exc:
        latest_ok = str(exc)
print(json.dumps({"entries": entries, "verified": verified, "incomplete": refused, "latest": latest,
                  "latest_ok": latest_ok}))
"""


def test_backup_killed_at_random_moments_never_looks_complete(scratch: Any, tmp_path: Path) -> None:
    db = seed("rbtest_kill", filler_rows=120_000)
    good = checksums(db)
    mods = upload_modules()
    directory = f"{BACKUPS}/{db}"
    ssh_ok(f"mkdir -p -m 0700 {directory}")
    ssh_ok(f"cat > {HOST_TMP}/pipeline.py", PIPELINE.encode())
    job = {"mods": mods, "database": db, "dir": directory, "conn": CONN}
    result = host_python(
        KILLER,
        {"seed": 20250115, "kills": 50, "tmp": HOST_TMP, "pipeline": f"{HOST_TMP}/pipeline.py", "job": job},
        timeout=900,
    )
    kills = [k for k in result["kills"] if k["killed"]]
    assert len(kills) >= 50
    assert all(k["rc"] == -9 for k in kills)
    phases = Counter(k["phase"] for k in kills)
    formats = Counter(k["format"] for k in kills)
    print(f"\nbackup kill test: {len(kills)} SIGKILLs, by phase reached: {dict(phases)}, by format: "
          f"{dict(formats)}; calibration runs {result['calibration']}")  # fmt: skip
    assert phases["dump"] > 0 and phases["finalize"] > 0 and min(formats.values()) > 0

    state = host_python(INSPECT, {"mods": mods, "dir": directory, "database": db})
    # every backup that has a manifest is whole; everything else is refused as incomplete
    assert all(v is True for v in state["verified"].values()), state["verified"]
    assert set(state["incomplete"].values()) <= {"manifest"}, state["incomplete"]
    assert state["latest_ok"] is True, state
    assert not [e for e in state["entries"] if e.endswith(".json.tmp") and "latest" in e]

    # the next backup works (the role, through Ansible), and clears what the killed runs left behind
    leftovers = [e for e in state["entries"] if e.endswith(".partial") or e.endswith(".manifest.json.tmp")]
    out = backup(tmp_path, db)
    after = host_python(INSPECT, {"mods": mods, "dir": directory, "database": db})
    assert after["latest"] == out["name"] and after["latest_ok"] is True
    assert not [e for e in after["entries"] if e.endswith(".partial")]
    assert out["tables"]["public.events"] == 120_000
    assert checksums(db) == good
    print(f"  backups finalized during the loop: {len(state['verified'])}, leftovers cleared: {len(leftovers)}")


RESTORE_KILLER = """
import json, os, random, signal, subprocess, sys, time
cfg = json.loads(sys.stdin.read())
sys.path.insert(0, cfg["mods"])
import pg_inspect
rng = random.Random(cfg["seed"])
client = pg_inspect.PgClient(**dict((k[6:], v) for k, v in cfg["conn"].items()))
db = cfg["database"]
MD5 = "(SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM %s t)"
DAMAGE = "DELETE FROM orders WHERE id % 3 = 0; DROP TABLE wallet;"

def sums():
    wallet = client.query_json(db, "SELECT to_json(to_regclass('public.wallet') IS NOT NULL);")
    return client.query_json(db, "SELECT json_build_object('orders', %s, 'wallet', %s);" % (
        MD5 % "public.orders", MD5 % "public.wallet" if wallet else "NULL"))

def state():
    dbs = client.query_json("postgres", "SELECT json_agg(datname) FROM pg_database WHERE datname LIKE "
                                        + pg_inspect.quote_literal(db + "%") + ";")
    live = sums() if db in dbs else None
    return live, sorted(d for d in dbs if d != db)

def session_cmdlines(sid):
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = open("/proc/%s/stat" % pid).read()
            if int(stat.rsplit(")", 1)[1].split()[3]) != sid:
                continue
            found.append(open("/proc/%s/cmdline" % pid, "rb").read().replace(b"\\0", b" ").decode())
        except (OSError, ValueError, IndexError):
            continue
    return found

APP = "rbtest-restore-killer"

def wait_for_server_sessions_to_end(limit=60.0):
    \"\"\"A killed client's server session finishes the statement it was given (a COMMIT may still land).

    The live database is judged once the server is done with what the dead restorer sent, not mid-commit.
    \"\"\"
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        busy = client.query_json("postgres", "SELECT to_json(count(*)) FROM pg_stat_activity WHERE application_name = "
                                             + pg_inspect.quote_literal(APP) + ";")
        if not busy:
            return round(time.monotonic() - t0, 3)
        time.sleep(0.05)
    raise AssertionError("sessions of the killed restorer still on the server after %.0f s" % limit)

def restore(stamp, delay=None, at_swap=False):
    \"\"\"One swap restore; killed `delay` s after start, or `delay` s after its swap psql starts (at_swap).\"\"\"
    job = dict(cfg["job"], stamp=stamp)
    proc = subprocess.Popen([sys.executable, "-c", cfg["restorer"]], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True, env=dict(os.environ, PGAPPNAME=APP))
    proc.stdin.write(json.dumps(job).encode())
    proc.stdin.close()
    t0 = time.monotonic()
    killed, saw_swap = False, False
    if delay is not None:
        if at_swap:  # the swap: the psql on the maintenance database after pg_restore into the temporary one
            restored = False
            while proc.poll() is None and not saw_swap:
                lines = session_cmdlines(proc.pid)
                restored = restored or any("pg_restore" in c and "__restore_" in c for c in lines)
                saw_swap = restored and any("psql" in c and "dbname='postgres'" in c for c in lines)
        time.sleep(delay)
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    out, err = proc.stdout.read().decode(), proc.stderr.read().decode()
    proc.wait()
    killed = proc.returncode == -signal.SIGKILL   # it may have finished just before the signal: not a kill
    settle_s = wait_for_server_sessions_to_end()
    return {"delay": delay, "at_swap": at_swap, "saw_swap": saw_swap, "killed": killed, "rc": proc.returncode,
            "elapsed": time.monotonic() - t0, "settle_s": settle_s, "err": err[-300:]}

def ensure_damaged(good):
    live, _ = state()
    if live == good:
        client.psql(db, DAMAGE)

good = cfg["good"]
client.psql(db, DAMAGE)
damaged, _ = state()
calib = restore("calib0")
assert calib["rc"] == 0, calib
total = calib["elapsed"]
runs = []
attempt = 0
while sum(1 for r in runs if r["killed"]) < cfg["kills"] and attempt < cfg["kills"] * 3:
    attempt += 1
    ensure_damaged(good)
    if attempt % 2:
        run = restore("k%02d" % attempt, rng.uniform(0, total * 0.95))   # create, pg_restore, row check, swap
    else:
        run = restore("k%02d" % attempt, rng.uniform(0, 0.1), at_swap=True)   # inside the swap
    live, others = state()
    run.update(live=live, others=others, state=("restored" if live == good else "damaged" if live == damaged
                                                 else "OTHER"))
    runs.append(run)
print(json.dumps({"calibration": calib, "damaged": damaged, "runs": runs}))
"""

RESTORER = """
import json, sys
cfg = json.loads(sys.stdin.read())
sys.path.insert(0, cfg["mods"])
import pg_restore_backup, backup_verify
checked = backup_verify.verify(dict(dir=cfg["dir"], backup="latest", kind="postgres", database=cfg["database"]))
result = pg_restore_backup.run(dict(cfg["conn"], database=cfg["database"], mode="swap", path=checked["path"],
                                    expected_rows=checked["manifest"]["tables"], stamp=cfg["stamp"],
                                    database_properties=checked["manifest"]["database_properties"]))
print(json.dumps(result))
"""


def test_restore_killed_during_swap_leaves_the_live_database_intact(scratch: Any, tmp_path: Path) -> None:
    db = seed("rbtest_rkill", filler_rows=60_000)
    backup(tmp_path, db)
    with pg(db) as conn:
        good = one(
            conn,
            "SELECT json_build_object('orders', (SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM orders t), "
            "'wallet', (SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM wallet t))",
        )[0]
    mods = upload_modules()
    job = {"mods": mods, "database": db, "dir": f"{BACKUPS}/{db}", "conn": CONN}
    result = host_python(
        RESTORE_KILLER,
        {
            "mods": mods,
            "seed": 4,
            "kills": 16,
            "database": db,
            "conn": CONN,
            "good": good,
            "job": job,
            "restorer": RESTORER,
        },
        timeout=900,
    )
    runs = result["runs"]
    killed = [r for r in runs if r["killed"]]
    assert len(killed) >= 16
    # after every kill the live database exists, answers, and is either untouched or completely restored
    assert all(r["state"] in ("damaged", "restored") for r in runs), [r["state"] for r in runs]
    states = Counter(r["state"] for r in killed)
    at_swap = Counter(r["state"] for r in killed if r["at_swap"])
    finished = Counter(r["state"] for r in runs if not r["killed"])
    print(
        f"\nrestore kill test: {len(killed)} SIGKILLs during swap restores, {sum(at_swap.values())} of them inside "
        f"the swap step; live database afterwards: {dict(states)} (inside the swap: {dict(at_swap)}); "
        f"runs that finished before their kill: {dict(finished)}"
    )
    assert set(finished) <= {"restored"}
    assert states["damaged"] > 0 and sum(at_swap.values()) >= 4
    # what interrupted swaps leave is temporary databases; cleanup drops them and never touches the live one
    live_before = checksums(db)
    result = restore(tmp_path, db, mode="cleanup")
    assert result.ok, result.failure
    assert databases(f"{db}__restore_") == []
    assert checksums(db) == live_before
    assert all(c["ok"] for c in result.outputs["checks"])


# ---------------------------------------------------------------------------------------------- migrations


def _apply_ups(db: str, versions: list[str], directory: Path = MIGRATIONS) -> None:
    with pg(db) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version text PRIMARY KEY, "
            "applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for up in sorted(directory.glob("*.up.sql")):
            version = up.name.split("_")[0]
            if version in versions:
                with conn.transaction():
                    conn.execute(up.read_text().encode())
                    conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))


def _schema(db: str) -> dict[str, Any]:
    with pg(db) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        columns = {
            f"{r[0]}.{r[1]}"
            for r in conn.execute(
                "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public'"
            )
        }
    return {"versions": versions, "tables": tables, "columns": columns}


def test_migration_rollback_twice_then_a_failing_down_script(scratch: Any, tmp_path: Path) -> None:
    db = seed("rbtest_mig")
    _apply_ups(db, ["0001", "0002", "0003", "0004"])
    assert _schema(db)["versions"] == ["0001", "0002", "0003", "0004"]
    options = {"database": db, "target": "0002", "migrations_dir": str(MIGRATIONS), **CONN}

    planned = run_role(tmp_path, "postgres_migration_rollback", options, check=True)
    assert planned.ok, planned.failure
    assert _schema(db)["versions"] == ["0001", "0002", "0003", "0004"]

    first = run_role(tmp_path, "postgres_migration_rollback", options)
    assert first.ok, first.failure
    assert first.outputs["rolled_back"] == ["0004_create_order_events", "0003_wallet_add_currency"]
    assert first.outputs["schema_version_before"] == "0004" and first.outputs["schema_version_after"] == "0002"
    schema = _schema(db)
    assert schema["versions"] == ["0001", "0002"]
    assert "order_events" not in schema["tables"] and "wallet.currency" not in schema["columns"]
    assert "customers" in schema["tables"] and "orders.note" in schema["columns"]
    assert first.stats["changed"] >= 1

    second = run_role(tmp_path, "postgres_migration_rollback", options)
    assert second.ok, second.failure
    assert second.stats["changed"] == 0
    assert second.outputs["rolled_back"] == [] and "nothing to roll back" in second.outputs["restored"]
    assert _schema(db) == schema

    # a broken down script for 0002: 0004 and 0003 roll back, 0002 fails and changes nothing of its own
    _apply_ups(db, ["0003", "0004"])
    broken = tmp_path / "migrations"
    broken.mkdir()
    for f in MIGRATIONS.glob("*.sql"):
        (broken / f.name).write_text(f.read_text())
    (broken / "0002_orders_add_note.down.sql").write_text(
        "ALTER TABLE orders DROP COLUMN note;\nALTER TABLE orders DROP COLUMN no_such_column;\n"
    )
    failed = run_role(tmp_path, "postgres_migration_rollback", dict(options, target="0", migrations_dir=str(broken)))
    assert not failed.ok
    assert "0002_orders_add_note" in failed.failure and "no_such_column" in failed.failure
    assert "stays at version 0002" in failed.failure
    schema = _schema(db)
    assert schema["versions"] == ["0001", "0002"]
    assert "orders.note" in schema["columns"] and "customers" in schema["tables"]  # 0002 untouched
    assert "order_events" not in schema["tables"] and "wallet.currency" not in schema["columns"]


def test_migration_runbook_puts_the_database_back_when_a_down_script_fails(scratch: Any, tmp_path: Path) -> None:
    """The shipped runbook through `runbook run`: on_failure swaps this run's safety backup back in."""
    db = seed("rbtest_migbook")
    _apply_ups(db, ["0001", "0002", "0003", "0004"])
    before = _schema(db)
    broken = tmp_path / "migrations"
    broken.mkdir()
    for f in MIGRATIONS.glob("*.sql"):
        (broken / f.name).write_text(f.read_text())
    (broken / "0002_orders_add_note.down.sql").write_text("ALTER TABLE orders DROP COLUMN note;\nSELECT 1/0;\n")
    state = tmp_path / "state"
    params = {"database": db, "target": "0", "migrations_dir": str(broken), "backup_dir": f"{BACKUPS}/{db}"}
    argv = [str(ANSIBLE_PLAYBOOK.parent / "runbook"), "run", str(ROOT / "runbooks" / "migration-rollback.yml")]
    argv += ["-i", str(INVENTORY), "--state-dir", str(state)]
    for key, value in params.items():
        argv += ["-p", f"{key}={value}"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # failed, and on_failure restored the service
    report = json.loads(next(state.glob("runs/*/report.json")).read_text())
    assert report["status"] == "rolled_back"
    assert _schema(db) == before  # 0003 and 0004 had been rolled back; the swap put all four back
    restored = " ".join(report["on_failure"]["restored"])
    assert "by swap" in restored and f"{db}__pre_" in restored
    assert databases(f"{db}__restore_") == []


# ---------------------------------------------------------------------------------------- secrets, check mode


def test_password_never_appears_in_ps_during_a_backup(scratch: Any, tmp_path: Path) -> None:
    db = seed("rbtest_ps", filler_rows=150_000)
    canary = "Canary-" + secrets.token_hex(12)
    with pg() as conn:
        conn.execute("DROP ROLE IF EXISTS rbtest_canary")
        conn.execute(f"CREATE ROLE rbtest_canary LOGIN SUPERUSER PASSWORD '{canary}'")
    sampler = textwrap.dedent(
        """
        import os, sys, time
        canary, deadline = sys.stdin.readline().strip(), time.time() + float(sys.argv[1])
        seen, hits, pg_dump_seen = 0, [], False
        while time.time() < deadline and not os.path.exists("/tmp/rbtest/stop-sampler"):
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    args = open("/proc/%s/cmdline" % pid, "rb").read().replace(b"\\0", b" ")
                    env = open("/proc/%s/environ" % pid, "rb").read()
                except OSError:
                    continue
                seen += 1
                pg_dump_seen = pg_dump_seen or b"pg_dump" in args
                if canary.encode() in args or canary.encode() in env:
                    hits.append(args.decode("utf-8", "replace")[:200])
            out = os.popen("ps -eww -o args").read()
            if canary in out:
                hits.append("ps: " + out[:200])
            time.sleep(0.005)
        print(seen, pg_dump_seen, len(hits), hits[:3])
        """
    )
    ssh_ok(f"rm -f {HOST_TMP}/stop-sampler && cat > {HOST_TMP}/sampler.py", sampler.encode())
    remote = subprocess.Popen(  # the canary goes on stdin: argv would put it in ps itself
        [*lab_driver.ssh_argv("db"), "--", f"python3 {HOST_TMP}/sampler.py 120"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert remote.stdin is not None
    remote.stdin.write(canary.encode() + b"\n")
    remote.stdin.close()
    local_hits: list[str] = []
    stop = threading.Event()

    def sample_locally() -> None:  # the control node too: ansible-playbook, ssh and their arguments
        while not stop.is_set():
            out = subprocess.run(["ps", "-eww", "-o", "args"], capture_output=True, text=True).stdout
            if canary in out:
                local_hits.append(out)
            time.sleep(0.01)

    thread = threading.Thread(target=sample_locally)
    thread.start()
    try:
        time.sleep(1.0)
        out = backup(tmp_path, db, login_user="rbtest_canary", login_password=canary)
    finally:
        stop.set()
        thread.join()
        ssh(f"touch {HOST_TMP}/stop-sampler")
        stdout = remote.stdout.read() if remote.stdout else b""
        remote.wait(timeout=60)
    seen, pg_dump_seen, hits, examples = stdout.decode().split(" ", 3)
    assert out["tables"]["public.events"] == 150_000
    assert int(seen) > 1000 and pg_dump_seen == "True", "the sampler did not watch the backup"
    assert hits == "0", examples
    assert local_hits == []
    assert canary not in json.dumps(out)


def test_check_mode_changes_nothing_and_says_what_it_would_do(scratch: Any, tmp_path: Path) -> None:
    db = seed("rbtest_check")
    backup(tmp_path, db)
    listing = ssh_ok(f"ls -a {BACKUPS}/{db}")
    damage(db)
    damaged = checksums(db)
    planned = run_role(tmp_path, "postgres_backup", {"database": db, "dir": f"{BACKUPS}/{db}", **CONN}, check=True)
    assert planned.ok, planned.failure
    assert planned.outputs["check_mode"] is True and planned.outputs["msg"].startswith("would finalize")
    result = run_role(
        tmp_path, "postgres_restore", {"database": db, "dir": f"{BACKUPS}/{db}", "mode": "swap", **CONN}, check=True
    )
    assert result.ok, result.failure
    assert result.outputs["restored"].startswith("would restore")
    assert ssh_ok(f"ls -a {BACKUPS}/{db}") == listing
    assert checksums(db) == damaged
    assert databases(f"{db}__") == []


# ------------------------------------------------------------------------------------------------- MongoDB

MONGO_TOOLS = ("mongod", "mongodump", "mongorestore")
mongo_required = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in MONGO_TOOLS), reason="mongod/mongodump not installed"
)
MONGO_USER = "rbtest"


@pytest.fixture(scope="module")
def mongod(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A private mongod on 127.0.0.1 with authentication; yields (port, password)."""
    pymongo = pytest.importorskip("pymongo")
    data = tmp_path_factory.mktemp("mongod")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [
            "mongod",
            "--dbpath",
            str(data),
            "--bind_ip",
            "127.0.0.1",
            "--port",
            str(port),
            "--auth",
            "--logpath",
            str(data / "mongod.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    password = "Mongo-" + secrets.token_hex(8)
    try:
        client = pymongo.MongoClient("127.0.0.1", port, serverSelectionTimeoutMS=30000)
        client.admin.command("ping")
        client.admin.command("createUser", MONGO_USER, pwd=password, roles=["root"])  # localhost exception
        yield port, password
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def _mongo(port: int, password: str) -> Any:
    import pymongo

    return pymongo.MongoClient(
        "127.0.0.1", port, username=MONGO_USER, password=password, authSource="admin", serverSelectionTimeoutMS=10000
    )


def _mongo_docs(port: int, password: str, db: str) -> dict[str, list[Any]]:
    client = _mongo(port, password)
    return {name: list(client[db][name].find().sort("_id", 1)) for name in sorted(client[db].list_collection_names())}


def _mongo_options(port: int, password: str, directory: Path) -> dict[str, Any]:
    return {
        "database": "rbcatalog",
        "dir": str(directory),
        "login_host": "127.0.0.1",
        "login_port": port,
        "login_user": MONGO_USER,
        "login_password": password,
    }


@mongo_required
def test_mongo_backup_damage_restore_selective_then_full(mongod: Any, tmp_path: Path) -> None:
    port, password = mongod
    client = _mongo(port, password)
    db = client["rbcatalog"]
    db.orders.insert_many([{"_id": i, "customer": f"c{i % 100}", "amount": i * 7} for i in range(1, 1001)])
    db.wallet.insert_many([{"_id": i, "balance": i * 104729 % 500000} for i in range(1, 101)])
    good = _mongo_docs(port, password, "rbcatalog")
    backups = tmp_path / "backups"
    options = _mongo_options(port, password, backups)

    made = run_role(tmp_path, "mongo_backup", options, local=True)
    assert made.ok, made.failure
    out = made.outputs
    assert out["backup"]["format"] == "archive" and out["path"].endswith(".archive.gz")
    assert (backups / ".latest").read_text().strip() == out["name"]
    assert password not in json.dumps(out)

    db.orders.delete_many({"_id": {"$gt": 900}})
    db.orders.update_many({"_id": {"$lt": 10}}, {"$set": {"customer": "mangled"}})
    db.wallet.drop()
    damaged_wallet = _mongo_docs(port, password, "rbcatalog").get("wallet")

    selective = run_role(tmp_path, "mongo_restore", dict(options, collections=["orders"]), local=True)
    assert selective.ok, selective.failure
    now = _mongo_docs(port, password, "rbcatalog")
    assert now["orders"] == good["orders"] and now.get("wallet") == damaged_wallet  # wallet untouched
    assert "-safety-" in selective.outputs["backup"]["name"]
    assert (backups / ".latest").read_text().strip() == out["name"]  # a safety backup never becomes .latest

    full = run_role(tmp_path, "mongo_restore", options, local=True)
    assert full.ok, full.failure
    assert _mongo_docs(port, password, "rbcatalog") == good


@mongo_required
def test_mongo_damaged_or_foreign_archives_are_refused(mongod: Any, tmp_path: Path) -> None:
    port, password = mongod
    _mongo(port, password)["rbcatalog"].orders.insert_one({"_id": "keep", "v": 1})
    before = _mongo_docs(port, password, "rbcatalog")
    backups = tmp_path / "backups"
    options = _mongo_options(port, password, backups)
    made = run_role(tmp_path, "mongo_backup", options, local=True)
    assert made.ok, made.failure
    archive = Path(made.outputs["path"])
    raw = archive.read_bytes()
    cases = {
        "truncated": (raw[: len(raw) // 2], "size check failed"),
        "flipped": (raw[:-40] + bytes([raw[-40] ^ 1]) + raw[-39:], "sha256 check failed"),
        "empty": (b"", "size check failed"),
    }
    for case, (spoiled, expected) in cases.items():
        archive.write_bytes(spoiled)
        result = run_role(tmp_path, "mongo_restore", options, local=True)
        assert not result.ok and expected in result.failure, f"{case}: {result.failure}"
        archive.write_bytes(raw)
    foreign = run_role(tmp_path, "mongo_restore", dict(options, database="rbother"), local=True)
    assert not foreign.ok and "database check failed" in foreign.failure
    assert _mongo_docs(port, password, "rbcatalog") == before
