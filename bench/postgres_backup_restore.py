"""PostgreSQL backup and restore: the runbooks vs raw pg_dump / pg_restore, same database, same host, side by side.

    python -m bench.postgres_backup_restore [--reps N] [--scale S]      (env BENCH_PG_SCALE, BENCH_PG_REPS)

Setup: the lab reset, then a database `bench` of at least 1 GB generated on the db host with
`pgbench -i -s $BENCH_PG_SCALE -I dtgvp` (default scale 70: 7 M rows in pgbench_accounts, ~1.1 GB); it is dropped
at the end with everything the benchmark wrote.

Backup, alternated (A B, B A, ...), N times each:
- runbook: `runbook run runbooks/postgres-backup.yml -i inventories/lab/hosts.yml -p database=bench
  -p format=directory -p jobs=2` (pg_dump -Fd -j2 into a .partial, fsync, full decode with row counts, sha256 of
  every file, manifest, .latest);
- raw: `pg_dump -Fd -j2 -f DIR bench` over ssh on the db host (same server, same connection: TCP to 127.0.10.21
  as lab; PostgreSQL 15's pg_dump compresses with gzip by default, and so does the role on 15; pg_dump fsyncs its
  output itself).
Restore, alternated, N times each, from the runbook's latest backup (the same archive for both):
- runbook: `runbook run runbooks/postgres-restore.yml ... -p database=bench --yes` (mode swap: verify the backup -
  sha256, full decode, row counts - in the check step and again in the restore step, count the live rows, a safety
  backup of the live database (pg_dump -Fc, decode, sha256, manifest), pg_restore -j2 into a temporary database,
  row count check, rename swap, count the rows again);
- raw: `createdb` + `pg_restore -j2 -d` into a fresh database, over ssh on the db host.
Before every timed run (both contenders alike): leftovers dropped/removed, CHECKPOINT and sync.

Goal (the issue's): runbook <= 1.10x raw for each. Reported: medians, ratios, sizes, and where the runbook's time
goes (task durations from ansible-runner's job events), with ratios excluding the verification (sha256, full decode
and row counts) and the safety backup, plus what-if timings of faster verification measured on the same host.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench import labuse
from bench.measure import (
    LAB_INVENTORY,
    RUNBOOK,
    Timed,
    base_env,
    fmt_s,
    fmt_x,
    machine,
    paired_ratios,
    ratio,
    run_dir_of,
    run_json_events,
    summary,
    task_times,
)
from bench.results import update_row, write_json
from runner import lab
from runner.errors import LabError
from runner.paths import PRODUCT_ROOT

NAME = "postgres_backup_restore"
USES_LAB = True
GOAL_RATIO = 1.10
MIN_DB_BYTES = 1_000_000_000
DB = "bench"
RAW_DB = "bench_raw"
# The roles' default directory, passed explicitly: with ansible-core 2.19 the runbooks' default backup_dir ""
# (rendered `!unsafe ''`) reaches the role as None and `| length` fails (see docs/benchmarks.md).
PRODUCT_DIR = f"/var/backups/runbook/postgres/{DB}"
RAW_DIR = "/var/backups/bench-raw"
BACKUP = PRODUCT_ROOT / "runbooks" / "postgres-backup.yml"
RESTORE = PRODUCT_ROOT / "runbooks" / "postgres-restore.yml"
PG_ENV = f"export PGHOST={lab.LAB_HOSTS['db']} PGPORT={lab.PG_PORT} PGUSER={lab.DB_USER} PGPASSWORD={lab.DB_PASSWORD}"
TIME_MARK = "@@elapsed "

# Task names of the roles (roles/postgres_backup, roles/postgres_restore) -> what they are, for the profile.
BACKUP_TASKS = {
    "Dump the database with pg_dump into a .partial (fsynced)": "pg_dump -Fd -j2 into .partial + fsync",
    "Decode all of the .partial with pg_restore and count the rows of every table": "verify: full decode + row counts",
    "Rename the .partial, write the manifest last, then move the marker": "finalize: sha256 of every file + manifest",
}
RESTORE_TASKS = {
    "Verify the backup (manifest, database, sizes, sha256, full decode, row counts) before touching anything": (
        "verify: sha256 + full decode + row counts"
    ),
    "Count the rows of every table of the live database (before)": "row counts of the live database (before)",
    "Dump the current state into a .partial (safety backup)": "safety backup: pg_dump -Fc",
    "Decode all of the safety backup": "safety backup: full decode + row counts",
    "Finalize the safety backup (manifest; it never becomes .latest)": "safety backup: sha256 + manifest",
    "Restore the database": "pg_restore -j2 into a temp database + row counts + swap",
    "Count the rows of every table of the live database (after)": "row counts of the live database (after)",
}
# What "verification" is when it is left out of a ratio: the sha256 and full decode (with its row counts) of a
# backup - the verify tasks, the safety backup's decode and, in a backup, the sha256 part of finalize (measured
# apart with sha256sum on the same files). The safety backup and the live row counts are left out one by one after.
VERIFICATION = ("verify:", "safety backup: full decode")
SAFETY = ("safety backup:",)
LIVE_COUNTS = ("row counts of the live database",)
SHA256_WHAT_IF = "sha256sum of every file of the backup"


# -------------------------------------------------------------------------------------------- the db host


def db_sh(script: str, timeout: float = 3600, check: bool = True, what: str = "db script") -> Timed:
    """Run a bash script on the db host over ssh (PG* set for the lab's superuser); wall time from the machine."""
    argv = [*lab.ssh_argv("db"), "--", "bash -s"]
    start = time.perf_counter()
    proc = subprocess.run(
        argv, input=f"set -e\n{PG_ENV}\n{script}\n", capture_output=True, text=True, timeout=timeout, check=False
    )
    timed = Timed(time.perf_counter() - start, proc.returncode, proc.stdout, proc.stderr, argv)
    return timed.check(what) if check else timed


def remote_elapsed(timed: Timed) -> float | None:
    """The `time` measured on the db host itself (TIMEFORMAT marks it), without the ssh connection."""
    found = re.findall(rf"^{TIME_MARK}([0-9.]+)$", timed.stderr, re.M)
    return float(found[-1]) if found else None


def timed_remote(command: str) -> str:
    return f"TIMEFORMAT='{TIME_MARK}%R'\ntime ( {command} )"


def psql_value(sql: str, database: str = "postgres") -> str:
    return db_sh(f"psql -X -At -d {shlex.quote(database)} -c {shlex.quote(sql)}", what=sql).stdout.strip()


def drop_leftovers(also: str = "") -> str:
    """Shell lines dropping what runs leave: bench_raw, bench__pre_*, bench__restore_*, bench_whatif (+ also)."""
    where = f"datname LIKE '{DB}\\_%'" + (f" OR datname = '{also}'" if also else "")
    query = shlex.quote(f"SELECT datname FROM pg_database WHERE {where}")
    return f'for d in $(psql -X -At -d postgres -c {query}); do dropdb --if-exists "$d"; done'


def level_field() -> None:
    """Same starting state for every timed run: leftovers gone, dirty buffers and page cache written out."""
    db_sh(
        f"{drop_leftovers()}\nrm -rf {RAW_DIR}/d {PRODUCT_DIR}/{DB}-safety-*\n"
        "psql -X -q -d postgres -c CHECKPOINT\nsync",
        what="cleanup between runs",
    )


# ------------------------------------------------------------------------------------------------ profile


def categorize(run_dir: Path | None, names: dict[str, str]) -> dict[str, float]:
    """Seconds per category of task of one runbook run (tasks on the db host), plus the rest of the tasks."""
    if run_dir is None:
        return {}
    tasks, _ = task_times(run_dir)
    out: dict[str, float] = {}
    for task in tasks:
        label = next((v for k, v in names.items() if task.task.startswith(k)), "other role tasks (set_fact, assert...)")
        if label.startswith("verify:") and task.play.startswith("Step check"):
            label += " (check step)"
        elif label.startswith("verify:") and task.play.startswith("Step restore"):
            label += " (restore step, again)"
        out[label] = out.get(label, 0.0) + task.seconds
    return out


def product_run(
    argv: list[str | Path], env: dict[str, str], names: dict[str, str], what: str
) -> tuple[float, dict[str, float]]:
    timed = run_json_events(argv, env=env, timeout=3600).check(what)
    parts = categorize(run_dir_of(timed), names)
    parts["runner + ansible outside tasks (start, leases, playbook start/end, reports)"] = timed.seconds - sum(
        parts.values()
    )
    return timed.seconds, parts


def medians(rows: list[dict[str, float]]) -> dict[str, float]:
    keys = sorted({k for r in rows for k in r})
    return {k: round(statistics.median(r.get(k, 0.0) for r in rows), 3) for k in keys}


def without(total: float | None, parts: dict[str, float], prefixes: tuple[str, ...]) -> float | None:
    if total is None:
        return None
    return round(total - sum(v for k, v in parts.items() if k.startswith(prefixes)), 3)


# --------------------------------------------------------------------------------------------------- main


def measure(scale: int, reps: int, progress: Callable[[str], None]) -> dict[str, Any]:
    data: dict[str, Any] = {"scale": scale}
    with labuse.exclusive(progress=progress), tempfile.TemporaryDirectory(prefix="bench-pg-") as tmp:
        labuse.up(progress)
        labuse.reset(progress)
        env = base_env(RUNBOOK_STATE_DIR=str(Path(tmp) / "state"))
        try:
            progress(f"  generating database {DB} (pgbench -i -s {scale} -I dtgvp) on db")
            gen = db_sh(
                f"dropdb --if-exists {DB}; createdb {DB}\n"
                + timed_remote(f"pgbench -q -i -s {scale} -I dtgvp {DB} >/dev/null 2>&1"),
                what="pgbench -i",
            )
            size = int(psql_value(f"SELECT pg_database_size('{DB}')"))
            accounts = int(psql_value("SELECT count(*) FROM pgbench_accounts", DB))
            data.update(
                generate_s=round(remote_elapsed(gen) or gen.seconds, 3),
                database_bytes=size,
                pgbench_accounts_rows=accounts,
                database_at_least_1gb=size >= MIN_DB_BYTES,
            )
            progress(f"  {DB}: {size / 1e9:.2f} GB, {accounts} rows in pgbench_accounts")
            backup = backups(reps, env, progress)
            restore = restores(reps, env, progress)
            data["what_if"] = what_if(progress)
            sha256_s = float(data["what_if"].get(SHA256_WHAT_IF) or 0.0)
            for kind, raw_data, sha in (("backup", backup, sha256_s), ("restore", restore, 0.0)):
                material = {k: raw_data.pop(k) for k in ("samples", "profiles", "raw_remote")}
                data[kind] = summarize(material["samples"], material["profiles"], material["raw_remote"], sha)
                data[kind].update(raw_data)
        finally:
            progress("  dropping the bench databases and backups")
            db_sh(f"{drop_leftovers(also=DB)}\nrm -rf {PRODUCT_DIR} {RAW_DIR}", check=False, what="final cleanup")
    return data


def backups(reps: int, env: dict[str, str], progress: Callable[[str], None]) -> dict[str, Any]:
    argv: list[str | Path] = [RUNBOOK, "run", BACKUP, "-i", LAB_INVENTORY, "-p", f"database={DB}"]
    argv += ["-p", "format=directory", "-p", "jobs=2", "-p", f"backup_dir={PRODUCT_DIR}", "--json"]
    raw_cmd = f"mkdir -p {RAW_DIR} && pg_dump -Fd -j2 -f {RAW_DIR}/d {DB}"
    samples: dict[str, list[float]] = {"runbook": [], "raw": []}
    raw_remote: list[float] = []
    profiles: list[dict[str, float]] = []

    def product() -> float:
        db_sh(f"rm -rf {PRODUCT_DIR}", what="remove earlier backups")  # only the newest backup is kept
        level_field()
        seconds, parts = product_run(argv, env, BACKUP_TASKS, "postgres-backup")
        profiles.append(parts)
        return seconds

    def raw() -> float:
        level_field()
        timed = db_sh(timed_remote(raw_cmd), what="pg_dump")
        raw_remote.append(remote_elapsed(timed) or timed.seconds)
        return timed.seconds

    progress("  backup: warm-up (one of each, not counted)")
    product()
    raw()
    profiles.clear()
    raw_remote.clear()
    contenders = {"runbook": product, "raw": raw}
    for rep in range(reps):
        for name in list(contenders) if rep % 2 == 0 else list(reversed(contenders)):
            seconds = contenders[name]()
            samples[name].append(seconds)
            progress(f"  backup rep {rep + 1}/{reps} {name:<8} {seconds:8.2f} s")
    sizes = db_sh(
        f"du -sb {RAW_DIR}/d | cut -f1; du -sb $(ls -d {PRODUCT_DIR}/{DB}-*.dir | tail -1) | cut -f1",
        what="backup sizes",
    ).stdout.split()
    return {
        "samples": samples,
        "profiles": profiles,
        "raw_remote": raw_remote,
        "raw_command": raw_cmd,
        "runbook_command": " ".join(str(a) for a in argv),
        "raw_backup_bytes": int(sizes[0]) if sizes else None,
        "runbook_backup_bytes": int(sizes[1]) if len(sizes) > 1 else None,
    }


def restores(reps: int, env: dict[str, str], progress: Callable[[str], None]) -> dict[str, Any]:
    source = db_sh(f"cat {PRODUCT_DIR}/.latest", what="latest backup").stdout.strip()
    path = f"{PRODUCT_DIR}/{source}.dir"
    argv: list[str | Path] = [RUNBOOK, "run", RESTORE, "-i", LAB_INVENTORY, "-p", f"database={DB}"]
    argv += ["-p", "backup=latest", "-p", f"backup_dir={PRODUCT_DIR}", "--yes", "--json"]
    raw_cmd = f"createdb {RAW_DB} && pg_restore -j2 -d {RAW_DB} {path}"
    samples: dict[str, list[float]] = {"runbook": [], "raw": []}
    raw_remote: list[float] = []
    profiles: list[dict[str, float]] = []

    def product() -> float:
        level_field()
        seconds, parts = product_run(argv, env, RESTORE_TASKS, "postgres-restore")
        profiles.append(parts)
        return seconds

    def raw() -> float:
        level_field()
        timed = db_sh(timed_remote(raw_cmd), what="pg_restore")
        raw_remote.append(remote_elapsed(timed) or timed.seconds)
        return timed.seconds

    progress("  restore: warm-up (one of each, not counted)")
    product()
    raw()
    profiles.clear()
    raw_remote.clear()
    contenders = {"runbook": product, "raw": raw}
    for rep in range(reps):
        for name in list(contenders) if rep % 2 == 0 else list(reversed(contenders)):
            seconds = contenders[name]()
            samples[name].append(seconds)
            progress(f"  restore rep {rep + 1}/{reps} {name:<8} {seconds:8.2f} s")
    level_field()
    return {
        "samples": samples,
        "profiles": profiles,
        "raw_remote": raw_remote,
        "raw_command": raw_cmd,
        "runbook_command": " ".join(str(a) for a in argv),
        "source_backup": source,
    }


def summarize(
    samples: dict[str, list[float]], profiles: list[dict[str, float]], raw_remote: list[float], sha256_s: float = 0.0
) -> dict[str, Any]:
    """Medians, ratios, and the ratios without verification / the safety backup / the live row counts.

    sha256_s: the sha256 part of a task that is otherwise kept (finalize of a backup), taken off as verification."""
    rb, raw = summary(samples["runbook"]), summary(samples["raw"])
    parts = medians(profiles)
    raw_median = raw["median_s"]
    rb_median = rb["median_s"]
    excl_verification = without(rb_median, parts, VERIFICATION)
    if excl_verification is not None:
        excl_verification = round(excl_verification - sha256_s, 3)
    excl_both = without(rb_median, parts, VERIFICATION + SAFETY)
    excl_all = without(rb_median, parts, VERIFICATION + SAFETY + LIVE_COUNTS)
    if excl_both is not None and excl_all is not None:
        excl_both, excl_all = round(excl_both - sha256_s, 3), round(excl_all - sha256_s, 3)
    return {
        "runbook": rb,
        "raw": raw,
        "raw_on_host_median_s": round(statistics.median(raw_remote), 3) if raw_remote else None,
        "ratio": ratio(rb_median, raw_median),
        "paired_ratio": paired_ratios(samples["runbook"], samples["raw"]),
        "met": (r := ratio(rb_median, raw_median)) is not None and r <= GOAL_RATIO,
        "runbook_parts_median_s": parts,
        "runbook_excluding_verification_s": excl_verification,
        "ratio_excluding_verification": ratio(excl_verification, raw_median),
        "runbook_excluding_verification_and_safety_backup_s": excl_both,
        "ratio_excluding_verification_and_safety_backup": ratio(excl_both, raw_median),
        "runbook_excluding_all_checks_s": excl_all,
        "ratio_excluding_all_checks": ratio(excl_all, raw_median),
        "sha256_subtracted_s": round(sha256_s, 3),
    }


def what_if(progress: Callable[[str], None]) -> dict[str, Any]:
    """Timings on the db host of the pieces of verification, and of faster ways to do the same work (once each).

    The backup is the runbook's latest; the database is the live `bench`. Each command starts after a CHECKPOINT
    and sync, and what it leaves is removed afterwards (untimed)."""
    progress("  what-if timings on the db host")
    source = db_sh(f"cat {PRODUCT_DIR}/.latest", what="latest backup").stdout.strip()
    path = shlex.quote(f"{PRODUCT_DIR}/{source}.dir")
    work = f"{RAW_DIR}/what-if"
    scratch = f"{DB}_whatif"
    cleanup = f"rm -rf {work}; dropdb --if-exists {scratch}"
    commands = {
        SHA256_WHAT_IF: f"sha256sum {path}/* >/dev/null",
        "pg_restore -f /dev/null (decode only, no counting)": f"pg_restore -f /dev/null {path}",
        "pg_restore -f - | wc -l (decode, lines counted in C)": f"pg_restore -f - {path} | wc -l >/dev/null",
        "gzip -dc of each table file | wc -l, 2 in parallel": (
            f"ls {path}/*.dat.gz | xargs -P2 -I{{}} sh -c 'gzip -dc {{}} | wc -l' >/dev/null"
        ),
        "count(*) of every table, one snapshot (a row count pass)": (
            f"psql -X -q -d {DB} -c 'SELECT count(*) FROM pgbench_accounts' "
            "-c 'SELECT count(*) FROM pgbench_branches' -c 'SELECT count(*) FROM pgbench_tellers' "
            "-c 'SELECT count(*) FROM pgbench_history' >/dev/null"
        ),
        # backup: the dump and its full decode in one streaming pass instead of one after the other
        "pg_dump -Fc -f FILE (one job)": f"mkdir -p {work} && pg_dump -Fc -f {work}/w.dump {DB}",
        "pg_dump -Fc | tee FILE | pg_restore -f - | wc -l (dump + full decode, one pass)": (
            f"mkdir -p {work} && pg_dump -Fc {DB} | tee {work}/w.dump | pg_restore -f - | wc -l >/dev/null"
        ),
        # restore: the safety backup overlapped with the restore into the temporary database (swap mode)
        "createdb + pg_restore -j2 (alone)": f"createdb {scratch} && pg_restore -j2 -d {scratch} {path}",
        "createdb + pg_restore -j2 with pg_dump -Fc of the live database alongside": (
            f"mkdir -p {work} && {{ pg_dump -Fc -f {work}/safety.dump {DB} & }} && "
            f"createdb {scratch} && pg_restore -j2 -d {scratch} {path} && wait"
        ),
        "pg_dump -Fd -j2 of the live database (a safety backup like the raw backup)": (
            f"mkdir -p {work} && pg_dump -Fd -j2 -f {work}/safety.dir {DB}"
        ),
    }
    out: dict[str, Any] = {}
    for label, command in commands.items():
        db_sh(f"{cleanup}\npsql -X -q -d postgres -c CHECKPOINT\nsync", what="before a what-if")
        timed = db_sh(timed_remote(command), what=label)
        out[label] = round(remote_elapsed(timed) or timed.seconds, 3)
    db_sh(cleanup, what="after the what-ifs")
    return out


def profile_lines(part: dict[str, Any]) -> list[str]:
    return [f"      {k:<80} {v:7.2f} s" for k, v in part["runbook_parts_median_s"].items()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.postgres_backup_restore", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--scale", type=int, default=int(os.environ.get("BENCH_PG_SCALE") or 70))
    parser.add_argument("--reps", type=int, default=int(os.environ.get("BENCH_PG_REPS") or 5))
    args = parser.parse_args(argv)
    reps, scale = max(1, args.reps), max(1, args.scale)
    started = time.monotonic()
    data: dict[str, Any] = {"benchmark": NAME, **machine(), "reps": reps, "goal_ratio": GOAL_RATIO}
    try:
        data.update(measure(scale, reps, lambda line: print(line, flush=True)))
    except (LabError, labuse.LabBusy) as exc:
        data["skipped"] = str(exc)
        write_json(NAME, data)
        print(f"postgres_backup_restore: skipped: {exc}", file=sys.stderr)
        return 1
    data["bench_wall_s"] = round(time.monotonic() - started, 1)
    if not data.get("database_at_least_1gb"):
        print(f"note: {DB} is {data['database_bytes'] / 1e9:.2f} GB, under 1 GB (scale {scale})", file=sys.stderr)
    json_path = write_json(NAME, data)
    size = f"{data['database_bytes'] / 1e9:.2f} GB database (pgbench -s {scale})"
    for kind in ("backup", "restore"):
        part = data[kind]
        rb, raw = part["runbook"]["median_s"], part["raw"]["median_s"]
        details = [
            f"{size}, directory format, 2 jobs, median of {reps} alternating runs each",
            f"excluding verification {fmt_x(part['ratio_excluding_verification'])}",
        ]
        if kind == "restore":
            both = part["ratio_excluding_verification_and_safety_backup"]
            details.append(f"excluding verification and the safety backup {fmt_x(both)}")
            details.append(f"also without the live row counts {fmt_x(part['ratio_excluding_all_checks'])}")
        if part.get("raw_backup_bytes") and part.get("runbook_backup_bytes"):
            mb = (part["runbook_backup_bytes"] / 1e6, part["raw_backup_bytes"] / 1e6)
            details.append(f"archives {mb[0]:.0f} MB (runbook) / {mb[1]:.0f} MB (raw)")
        details.append("see docs/benchmarks.md")
        update_row(
            f"{NAME}.{kind}",
            f"runbook/raw {fmt_x(part['ratio'])} ({fmt_s(rb)} vs {fmt_s(raw)})",
            f"≤ {GOAL_RATIO:.2f}x",
            bool(part["met"]),
            str(data["measured_at"])[:10],
            "; ".join(details),
        )
        print(
            f"{kind}: runbook {fmt_s(part['runbook']['median_s'])} vs raw {fmt_s(part['raw']['median_s'])}: "
            f"{fmt_x(part['ratio'])} (goal <= {GOAL_RATIO:.2f}x: {'met' if part['met'] else 'MISSED'}); "
            f"excluding verification {fmt_x(part['ratio_excluding_verification'])}"
            + (
                f", also excluding the safety backup {fmt_x(part['ratio_excluding_verification_and_safety_backup'])}"
                f", and the live row counts {fmt_x(part['ratio_excluding_all_checks'])}"
                if kind == "restore"
                else ""
            )
        )
        print("\n".join(profile_lines(part)))
    print("what-if on the db host:")
    for label, seconds in data["what_if"].items():
        print(f"      {label:<80} {seconds:7.2f} s")
    print(f"postgres_backup_restore: {data['bench_wall_s']:.0f} s in all; {json_path}")
    return 0 if data["backup"]["met"] and data["restore"]["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
