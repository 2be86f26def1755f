"""Freshness of the backups `runbook backups status` finds: the offsite copy of each newest verified backup
checked on the backup host (read-only: a stat with its sha256), the default --max-age from the database's backup
schedule, the stale alert (--notify) and the last result kept in the state dir for `runbook metrics`.

Offsite states, from the manifest's `offsite` record {host, path, sha256, verified_at} written by the retention
role: verified (the file exists on that host and its sha256 matches), missing (no record, no file, or the host
could not be asked), corrupt (the sha256 differs).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from runner import safe_write
from runner.engine.backup_status import BackupsReport, BackupState
from runner.engine.execute import prepare_private_dir, run_playbook, service_ansible_cfg
from runner.engine.service_play import one_task_playbook
from runner.engine.yamldump import dump, mark_unsafe

PROBE_TASK = "Probe the offsite copies"
LAST_STATUS = "backups-status.json"
DEFAULT_MAX_AGE_S = 2 * 86400.0


class ProbeEvents:
    """Each host's stat results: {host: {path: sha256 or '' when absent}}."""

    def __init__(self) -> None:
        self.found: dict[str, dict[str, str]] = {}

    def __call__(self, event: dict[str, Any]) -> bool:
        data = event.get("event_data") or {}
        res = data.get("res")
        if event.get("event") == "runner_on_ok" and data.get("task") == PROBE_TASK and isinstance(res, dict):
            answers = self.found.setdefault(str(data.get("host")), {})
            for result in res.get("results") or []:
                stat = result.get("stat") or {}
                answers[str(result.get("item"))] = str(stat.get("checksum") or "") if stat.get("exists") else ""
        return True


def _probe_playbook(hosts: list[str]) -> str:
    task = {
        "name": PROBE_TASK,
        "ansible.builtin.stat": {"path": "{{ item }}", "checksum_algorithm": "sha256", "get_checksum": True},
        "loop": "{{ runbook_offsite_paths[inventory_hostname] | default([]) }}",
    }
    return one_task_playbook("Offsite copies", ",".join(hosts), task,
                             "# backups status offsite probe: rendered by runbook-runner\n")


def probe(inventory: Path, wanted: dict[str, list[str]]) -> dict[str, dict[str, str]]:
    """sha256 of each path on each host ('' when the file is absent); hosts that did not answer are left out."""
    if not wanted:
        return {}
    base = Path(tempfile.mkdtemp(prefix="backups-offsite-"))
    try:
        project = {"probe.yml": _probe_playbook(sorted(wanted)), "ansible.cfg": service_ansible_cfg()}
        prepare_private_dir(base, project, dump({"runbook_offsite_paths": mark_unsafe(wanted)}))
        events = ProbeEvents()
        run_playbook(base, "probe.yml", inventory, events)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return events.found


def offsite_state(d: BackupState, found: dict[str, dict[str, str]]) -> str:
    record = d.offsite_record or {}
    host, path, sha = str(record.get("host") or ""), str(record.get("path") or ""), str(record.get("sha256") or "")
    if not host or not path:
        return "missing"
    actual = found.get(host, {}).get(path, "")
    if not actual:
        return "missing"
    return "verified" if actual == sha else "corrupt"


def check_offsite(report: BackupsReport, inventory: Path) -> None:
    wanted: dict[str, list[str]] = {}
    for d in report.databases:
        record = d.offsite_record or {}
        if record.get("host") and record.get("path"):
            wanted.setdefault(str(record["host"]), []).append(str(record["path"]))
    found = probe(inventory, wanted)
    report.databases = [replace(d, offsite=offsite_state(d, found)) for d in report.databases]


def schedule_max_ages(state_dir: Path) -> dict[str, float]:
    """Twice the interval of each database's backup schedule (a schedule of a *backup* runbook with a
    `database` param); the shortest when a database has several."""
    from runner.engine import schedules

    out: dict[str, float] = {}
    now = datetime.now(UTC)
    for entry in schedules.all_schedules(state_dir):
        if "backup" not in Path(entry.runbook).stem or "cleanup" in Path(entry.runbook).stem:
            continue
        params = dict(p.split("=", 1) for p in entry.params if "=" in p)
        database = params.get("database")
        if not database:
            continue
        first = schedules.next_fire(entry.cron, now)
        interval = (schedules.next_fire(entry.cron, first + timedelta(seconds=1)) - first).total_seconds()
        out[database] = min(out.get(database, float("inf")), 2 * interval)
    return out


def assess(report: BackupsReport, state_dir: Path, inventory: Path) -> None:
    """Complete a status: the max age of each database (from its backup schedule unless --max-age was given), the
    state of its offsite copy on the backup host; then keep it for `runbook metrics`."""
    if report.max_age_s is None:
        report.max_age_by_database = schedule_max_ages(state_dir)
        for d in report.databases:
            report.max_age_by_database.setdefault(d.database, DEFAULT_MAX_AGE_S)
    check_offsite(report, inventory)
    save(state_dir, report)


def save(state_dir: Path, report: BackupsReport, now: datetime | None = None) -> Path:
    path = Path(state_dir) / LAST_STATUS
    path.parent.mkdir(parents=True, exist_ok=True)
    data = dict(report.to_dict(), checked=(now or datetime.now(UTC)).isoformat(timespec="seconds"))
    safe_write.write_text(path, json.dumps(data, indent=2) + "\n")
    return path


def load_saved(state_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((Path(state_dir) / LAST_STATUS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def prometheus_lines(saved: dict[str, Any] | None) -> list[str]:
    """runbook_backup_age_seconds / runbook_backup_offsite_verified from the last `backups status` result; the
    age is counted from the check to now, so a status not re-run still shows the backups ageing."""
    if not saved:
        return []
    checked = saved.get("checked")
    try:
        since = (datetime.now(UTC) - datetime.fromisoformat(str(checked))).total_seconds() if checked else 0.0
    except ValueError:
        since = 0.0

    def labels(d: dict[str, Any]) -> str:
        def q(v: Any) -> str:
            return str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

        return f'host="{q(d.get("host", ""))}",database="{q(d.get("database", ""))}"'

    rows = [d for d in saved.get("databases") or [] if isinstance(d, dict)]
    lines = [
        "# HELP runbook_backup_age_seconds Age of the newest verified backup (from the last backups status).",
        "# TYPE runbook_backup_age_seconds gauge",
    ]
    lines += [f"runbook_backup_age_seconds{{{labels(d)}}} {round(float(d['age_s']) + since, 1)}"
              for d in rows if d.get("age_s") is not None]
    lines += [
        "# HELP runbook_backup_offsite_verified 1 when the newest verified backup has a verified offsite copy.",
        "# TYPE runbook_backup_offsite_verified gauge",
    ]
    lines += [f"runbook_backup_offsite_verified{{{labels(d)}}} {1 if d.get('offsite') == 'verified' else 0}"
              for d in rows]
    return lines


def stale_message(report: BackupsReport) -> str:
    problems = [
        f"{d.host} {d.database}: {d.problem(report.max_age_for(d))}"
        for d in report.databases
        if d.problem(report.max_age_for(d))
    ]
    problems += [f"{host}: {error}" for host, error in report.host_errors.items()]
    return "backups status: " + ("; ".join(problems) or "no backup directories found")


def notify(targets: list[str], report: BackupsReport) -> list[tuple[str, bool, str]]:
    """Send the stale alert to each KIND:TARGET (webhook:URL, email:ADDRESS) through runner.records.notify."""
    from runner.records import notify as senders

    text = stale_message(report)
    out = []
    for target in targets:
        kind, _, where = target.partition(":")
        if kind == "webhook":
            ok, error, _n = senders.post_webhook(where, {"text": text})
        elif kind == "email":
            ok, error, _n = senders.send_email([where], "runbook: backups are stale", text + "\n")
        else:
            ok, error = False, f"unknown notification kind {kind!r} (webhook:URL or email:ADDRESS)"
        out.append((target, ok, error))
    return out
