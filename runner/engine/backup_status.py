"""`runbook backups status`: the newest verified backup of every database on the hosts that keep backups, and its
age - the recovery point objective an operator can count on right now (seed 004: a backup before every
deployment, kept 30 days; the restore runbooks need one that verifies)."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runner.engine.execute import prepare_private_dir, run_playbook, service_ansible_cfg
from runner.engine.service_play import TaskAnswers, one_task_playbook
from runner.engine.yamldump import dump, mark_unsafe
from runner.errors import ExecutionError, InvalidInput
from runner.language.durations import format_seconds, parse_time

CATALOG_TASK = "Survey the backups"
DEFAULT_DIRS = ("/var/backups/runbook/postgres", "/var/backups/runbook/mongodb")


@dataclass(frozen=True)
class BackupState:
    """One backup directory of one host: its newest backup, and the newest one that verifies."""

    host: str
    directory: str
    database: str
    kind: str
    backups: int
    newest: str
    newest_ok: bool
    newest_problem: str
    verified: str
    verified_finished: str
    verified_size: int | None
    age_s: float | None
    compression: str = ""
    offsite_record: dict[str, Any] | None = None
    offsite: str = "missing"  # verified / missing / corrupt (runner.engine.backup_freshness)

    def problem(self, max_age_s: float | None) -> str:
        """Why this database cannot count on its backups, or '' when it can."""
        if not self.verified:
            return f"no backup verifies ({self.newest_problem})" if self.newest else "no finished backup"
        if max_age_s is not None and (self.age_s is None or self.age_s > max_age_s):
            age, limit = format_seconds(self.age_s or 0), format_seconds(max_age_s)
            return f"newest verified backup is {age} old (more than {limit})"
        if not self.newest_ok:
            return f"the newest backup {self.newest} fails verification ({self.newest_problem})"
        return ""


@dataclass
class BackupsReport:
    databases: list[BackupState] = field(default_factory=list)
    host_errors: dict[str, str] = field(default_factory=dict)
    max_age_s: float | None = None
    max_age_by_database: dict[str, float] = field(default_factory=dict)  # from backup schedules

    def max_age_for(self, d: BackupState) -> float | None:
        return self.max_age_s if self.max_age_s is not None else self.max_age_by_database.get(d.database)

    @property
    def ok(self) -> bool:
        return (
            bool(self.databases)
            and not self.host_errors
            and not any(d.problem(self.max_age_for(d)) for d in self.databases)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "max_age_s": self.max_age_s,
            "host_errors": self.host_errors,
            "databases": [
                dict(asdict(d), problem=d.problem(self.max_age_for(d)), max_age_s=self.max_age_for(d))
                for d in self.databases
            ],
        }


def states_from(host: str, databases: list[dict[str, Any]], now: datetime) -> list[BackupState]:
    """BackupState per entry of runbook.ops.backup_catalog's `databases`."""
    out = []
    for entry in databases:
        newest = entry.get("newest") or {}
        verified = entry.get("verified") or {}
        finished = parse_time(verified.get("finished")) if verified else None
        out.append(
            BackupState(
                host=host,
                directory=str(entry.get("dir") or ""),
                database=str(entry.get("database") or ""),
                kind=str(entry.get("kind") or ""),
                backups=int(entry.get("backups") or 0),
                newest=str(newest.get("name") or ""),
                newest_ok=bool(newest.get("ok")),
                newest_problem=f"{newest.get('failed_check')}: {newest.get('detail')}"
                if newest.get("failed_check")
                else "",
                verified=str(verified.get("name") or ""),
                verified_finished=str(verified.get("finished") or ""),
                verified_size=int(verified["size"]) if verified.get("size") is not None else None,
                age_s=round((now - finished).total_seconds(), 1) if finished else None,
                compression=_compression(verified.get("compression")),
                offsite_record=verified.get("offsite") if isinstance(verified.get("offsite"), dict) else None,
            )
        )
    return out


def _compression(value: Any) -> str:
    """The manifest's codec without a level (gzip:9 -> gzip); '' when not compressed."""
    codec = str(value or "").split(":", 1)[0]
    return "" if codec in ("", "none") else codec


class CatalogEvents(TaskAnswers):
    """ansible-runner event handler: each host's answer to the catalog task, or why it gave none."""

    no_answer = "the survey failed"

    def __init__(self) -> None:
        super().__init__(CATALOG_TASK)
        self.answers: dict[str, list[dict[str, Any]]] = {}
        self.errors: dict[str, str] = {}

    def answered(self, host: str, result: dict[str, Any]) -> None:
        self.answers[host] = list(result.get("databases") or [])

    def failed(self, host: str, message: str) -> None:
        self.errors[host] = message


def _playbook(pattern: str) -> str:
    task = {
        "name": CATALOG_TASK,
        "runbook.ops.backup_catalog": {"dirs": "{{ runbook_backup_dirs }}", "decode": "{{ runbook_backup_decode }}"},
    }
    return one_task_playbook("Backup status", pattern, task, "# backups status: rendered by runbook-runner\n")


def status(
    inventory: Path,
    hosts: str = "db",
    dirs: list[str] | None = None,
    *,
    max_age_s: float | None = None,
    decode: bool = False,
    limit: str | None = None,
    now: datetime | None = None,
) -> BackupsReport:
    """Survey the backup directories of every host matching `hosts` (one ansible-playbook call)."""
    if not Path(inventory).exists():
        raise InvalidInput(f"inventory {inventory} does not exist")
    base = Path(tempfile.mkdtemp(prefix="backups-status-"))
    try:
        extravars = {
            "runbook_backup_dirs": mark_unsafe(list(dirs or DEFAULT_DIRS)),
            "runbook_backup_decode": decode,
        }
        project = {"status.yml": _playbook(hosts), "ansible.cfg": service_ansible_cfg()}
        prepare_private_dir(base, project, dump(extravars))
        events = CatalogEvents()
        outcome = run_playbook(base, "status.yml", inventory, events, limit=limit)
        if not events.answers and not events.errors:
            raise ExecutionError(
                f"backups status reached no host matching {hosts!r} (ansible-playbook {outcome.status})"
            )
    finally:
        shutil.rmtree(base, ignore_errors=True)
    moment = now or datetime.now(UTC)
    report = BackupsReport(host_errors=dict(sorted(events.errors.items())), max_age_s=max_age_s)
    for host in sorted(events.answers):
        report.databases.extend(states_from(host, events.answers[host], moment))
    return report


def format_text(report: BackupsReport) -> str:
    lines = [
        f"{'host':<10} {'database':<20} {'verified backup':<34} {'age':>9} {'size':>11} {'compressed':<10} "
        f"{'offsite':<8}  status"
    ]
    for d in report.databases:
        problem = d.problem(report.max_age_for(d))
        age = format_seconds(d.age_s) if d.age_s is not None else "-"
        size = f"{d.verified_size:,}" if d.verified_size is not None else "-"
        lines.append(
            f"{d.host:<10} {d.database:<20} {d.verified or '-':<34} {age:>9} {size:>11} {d.compression or 'no':<10} "
            f"{d.offsite:<8}  {problem or 'ok'}"
        )
    for host, error in report.host_errors.items():
        lines.append(f"{host:<10} {'-':<20} {'-':<34} {'-':>9} {'-':>11} {'-':<10} {'-':<8}  {error}")
    if not report.databases and not report.host_errors:
        lines.append("(no backup directories found)")
    return "\n".join(lines) + "\n"


def _labels(d: BackupState) -> str:
    def quoted(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return f'host="{quoted(d.host)}",database="{quoted(d.database)}",kind="{quoted(d.kind)}"'


def format_prometheus(report: BackupsReport) -> str:
    """Gauges for a textfile collector: the age of the newest verified backup, and whether there is one."""
    lines = [
        "# HELP runbook_backup_verified_age_seconds Age of the newest backup that passes verification.",
        "# TYPE runbook_backup_verified_age_seconds gauge",
    ]
    lines += [
        f"runbook_backup_verified_age_seconds{{{_labels(d)}}} {d.age_s}"
        for d in report.databases
        if d.age_s is not None
    ]
    lines += [
        "# HELP runbook_backup_verified 1 when the database has a backup that passes verification.",
        "# TYPE runbook_backup_verified gauge",
    ]
    lines += [f"runbook_backup_verified{{{_labels(d)}}} {1 if d.verified else 0}" for d in report.databases]
    lines += [
        "# HELP runbook_backup_newest_ok 1 when the newest backup passes verification.",
        "# TYPE runbook_backup_newest_ok gauge",
    ]
    lines += [f"runbook_backup_newest_ok{{{_labels(d)}}} {1 if d.newest_ok else 0}" for d in report.databases]
    return "\n".join(lines) + "\n"
