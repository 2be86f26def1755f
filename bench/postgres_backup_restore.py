"""PostgreSQL backup and restore: the runbooks vs raw pg_dump / pg_restore, same database, same host, side by side.

    python -m bench.postgres_backup_restore [--reps N] [--scale S]      (env BENCH_PG_SCALE, BENCH_PG_REPS)

Setup: the lab reset, then a database `bench` of at least 1 GB generated on the db host with
`pgbench -i -s $BENCH_PG_SCALE -I dtgvp` (default scale 70: 7 M rows in pgbench_accounts, ~1.1 GB); it is dropped
at the end with everything the benchmark wrote.

Backup, alternated (A B, B A, ...), N times each:
- runbook: `runbook run runbooks/postgres-backup.yml -i inventories/lab/hosts.yml -p database=bench
  -p format=directory -p jobs=2` (pg_dump -Fd -j2 into a .partial, every data file decompressed and its rows
  counted while pg_dump writes it, the TOC read, fsync, rename, sha256 of every file, manifest, .latest);
- raw: `pg_dump -Fd -j2 -f DIR bench` over ssh on the db host (same server, same connection: TCP to 127.0.10.21
  as lab; PostgreSQL 15's pg_dump compresses with gzip by default, and so does the role on 15; pg_dump fsyncs its
  output itself).
Restore, alternated, N times each, from the runbook's latest backup (the same archive for both):
- runbook: `runbook run runbooks/postgres-restore.yml ... -p database=bench --yes` (mode swap: the check step
  verifies manifest, sizes and sha256; the restore step checks them again, pg_restore -j2 into a temporary
  database - the full decode - while the live rows are counted, row counts against the manifest, rename swap;
  the replaced database is kept as the safety copy);
- raw: `createdb` + `pg_restore -j2 -d` into a fresh database, over ssh on the db host.
Before every timed run (both contenders alike): leftovers dropped/removed, CHECKPOINT and sync.

Goal (the issue's): runbook <= 1.10x raw for each. Reported: medians, ratios, sizes, and where the runbook's time
goes (task durations from ansible-runner's job events).
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
DEFAULT_SCALE = 70
MIN_DB_BYTES = 1_000_000_000
DB = "bench"
RAW_DB = "bench_raw"
PRODUCT_DIR = f"/var/backups/runbook/postgres/{DB}"  # the roles' default directory for database bench
RAW_DIR = "/var/backups/bench-raw"
BACKUP = PRODUCT_ROOT / "runbooks" / "postgres-backup.yml"
RESTORE = PRODUCT_ROOT / "runbooks" / "postgres-restore.yml"
PG_ENV = f"export PGHOST={lab.LAB_HOSTS['db']} PGPORT={lab.PG_PORT} PGUSER={lab.DB_USER} PGPASSWORD={lab.DB_PASSWORD}"
TIME_MARK = "@@elapsed "

# Task names of the roles (roles/postgres_backup, roles/postgres_restore) -> what they are, for the profile.
BACKUP_TASKS = {
    "Dump the database with pg_dump into a .partial, decode all of it": "pg_dump -Fd -j2 + full decode (concurrent)",
    "Rename the .partial, write the manifest last, then move the marker": "finalize: sha256 of every file + manifest",
}
RESTORE_TASKS = {
    "Verify the backup (manifest, database, sizes, sha256, full decode, row counts) before touching anything": (
        "verify: manifest, sizes, sha256"
    ),
    "Restore the database": "pg_restore -j2 into a temp database (the decode) + live counts + row check + swap",
}


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
            label += " (restore step)"
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
            for kind, raw_data in (("backup", backup), ("restore", restore)):
                material = {k: raw_data.pop(k) for k in ("samples", "profiles", "raw_remote")}
                data[kind] = summarize(material["samples"], material["profiles"], material["raw_remote"])
                data[kind].update(raw_data)
        finally:
            progress("  dropping the bench databases and backups")
            db_sh(f"{drop_leftovers(also=DB)}\nrm -rf {PRODUCT_DIR} {RAW_DIR}", check=False, what="final cleanup")
    return data


def backups(reps: int, env: dict[str, str], progress: Callable[[str], None]) -> dict[str, Any]:
    argv: list[str | Path] = [RUNBOOK, "run", BACKUP, "-i", LAB_INVENTORY, "-p", f"database={DB}"]
    argv += ["-p", "format=directory", "-p", "jobs=2", "--json"]
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
    argv += ["-p", "backup=latest", "--yes", "--json"]
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
    samples: dict[str, list[float]], profiles: list[dict[str, float]], raw_remote: list[float]
) -> dict[str, Any]:
    """Medians, the ratio (and the median of the per-repetition ratios), and the runbook's parts."""
    rb, raw = summary(samples["runbook"]), summary(samples["raw"])
    ratio_median = ratio(rb["median_s"], raw["median_s"])
    return {
        "runbook": rb,
        "raw": raw,
        "raw_on_host_median_s": round(statistics.median(raw_remote), 3) if raw_remote else None,
        "ratio": ratio_median,
        "paired_ratio": paired_ratios(samples["runbook"], samples["raw"]),
        "met": ratio_median is not None and ratio_median <= GOAL_RATIO,
        "runbook_parts_median_s": medians(profiles),
    }


def profile_lines(part: dict[str, Any]) -> list[str]:
    return [f"      {k:<80} {v:7.2f} s" for k, v in part["runbook_parts_median_s"].items()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.postgres_backup_restore", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--scale", type=int, default=int(os.environ.get("BENCH_PG_SCALE") or DEFAULT_SCALE))
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
    name = NAME if scale == DEFAULT_SCALE else f"{NAME}_s{scale}"
    json_path = write_json(name, data)
    size = f"{data['database_bytes'] / 1e9:.2f} GB database (pgbench -s {scale})"
    for kind in ("backup", "restore"):
        part = data[kind]
        rb, raw = part["runbook"]["median_s"], part["raw"]["median_s"]
        details = [f"{size}, directory format, 2 jobs, median of {reps} alternating runs each"]
        if part.get("raw_backup_bytes") and part.get("runbook_backup_bytes"):
            mb = (part["runbook_backup_bytes"] / 1e6, part["raw_backup_bytes"] / 1e6)
            details.append(f"archives {mb[0]:.0f} MB (runbook) / {mb[1]:.0f} MB (raw)")
        details.append("see docs/benchmarks.md")
        update_row(
            f"{name}.{kind}",
            f"runbook/raw {fmt_x(part['ratio'])} ({fmt_s(rb)} vs {fmt_s(raw)})",
            f"≤ {GOAL_RATIO:.2f}x",
            bool(part["met"]),
            str(data["measured_at"])[:10],
            "; ".join(details),
        )
        print(
            f"{kind}: runbook {fmt_s(rb)} vs raw {fmt_s(raw)}: {fmt_x(part['ratio'])} "
            f"(paired {fmt_x(part['paired_ratio'].get('median'))}; goal <= {GOAL_RATIO:.2f}x: "
            f"{'met' if part['met'] else 'MISSED'})"
        )
        print("\n".join(profile_lines(part)))
    print(f"postgres_backup_restore: {data['bench_wall_s']:.0f} s in all; {json_path}")
    return 0 if data["backup"]["met"] and data["restore"]["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
