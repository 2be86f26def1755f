"""Lease events in the run history (table lease_events, runner.records.history_store): every lease an operator
removed by hand with `runbook lock release --force`, with the lease as it was, who removed it and when.
`runbook history` shows them after the runs."""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import closing
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runner.records.history_store import connect, db_path, transaction

FORCED_RELEASE = "forced_release"


@dataclass(frozen=True)
class LeaseEvent:
    at: str
    kind: str
    host: str
    name: str
    holder_run_id: str
    operator: str
    lease: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def record_forced_release(state_dir: Path, host: str, name: str, lease: dict[str, Any], operator: str) -> LeaseEvent:
    """Keep that `operator` removed lease `name` (as it was: lease) from host, now."""
    moment = datetime.now(UTC)
    event = LeaseEvent(
        at=moment.isoformat(timespec="seconds"),
        kind=FORCED_RELEASE,
        host=host,
        name=name,
        holder_run_id=str(lease.get("run_id", "")),
        operator=operator,
        lease=lease,
    )
    with transaction(state_dir) as conn:
        conn.execute(
            "INSERT INTO lease_events (at, at_epoch, kind, host, name, holder_run_id, lease_json, operator) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (event.at, moment.timestamp(), event.kind, host, name, event.holder_run_id,
             json.dumps(lease, sort_keys=True, default=str), operator),
        )  # fmt: skip
    return event


def list_lease_events(
    state_dir: Path, runbook: str | None = None, since_s: float | None = None, *, now: float | None = None
) -> list[LeaseEvent]:
    """Lease events, oldest first; runbook NAME: only those of leases its runs held; since_s: only recent ones."""
    if not db_path(state_dir).is_file():
        return []
    where: list[str] = []
    args: list[Any] = []
    if runbook:
        where.append("holder_run_id LIKE ? ESCAPE '\\'")
        args.append(runbook.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "-%")
    if since_s is not None:
        where.append("at_epoch >= ?")
        args.append((now if now is not None else time.time()) - since_s)
    condition = (" WHERE " + " AND ".join(where)) if where else ""
    with closing(connect(state_dir)) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute(f"SELECT * FROM lease_events{condition} ORDER BY at_epoch, seq", args).fetchall()
    return [
        LeaseEvent(row["at"], row["kind"], row["host"], row["name"], row["holder_run_id"], row["operator"],
                   json.loads(row["lease_json"]))
        for row in rows
    ]  # fmt: skip


def format_lease_events(events: list[LeaseEvent]) -> str:
    """The lease events part of `runbook history` (empty when there are none)."""
    if not events:
        return ""
    lines = ["", "leases released by hand (runbook lock release --force):"]
    for event in events:
        held = f"held by run {event.holder_run_id}" if event.holder_run_id else "unreadable lease"
        lines.append(f"{event.at[:19]:<20} {event.host:<16} lease {event.name:<14} {held}; removed by {event.operator}")
    return "\n".join(lines) + "\n"


__all__ = ["FORCED_RELEASE", "LeaseEvent", "format_lease_events", "list_lease_events", "record_forced_release"]
