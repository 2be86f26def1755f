"""Who holds a lease, as its lease records it, and whether that holder is provably dead.

A lease records the control-node process of the run holding it: its pid and host name, and what makes the pid
mean something: the machine's boot id, the process's pid namespace and the process's start time (field 22 of
/proc/PID/stat, clock ticks since boot). A pid alone is not enough: a run in a container with the same host name
has pids of another namespace, and a pid is reused once its process is gone.

A holder is provably dead only when it was recorded in this boot and this pid namespace, and its pid is gone or
now belongs to a process that started at another time. Anything else (another namespace or boot, a lease written
without these fields) cannot be told from here: its lease is left to expire.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
LEASE_FIELDS = ("pid", "control_host", "control_boot_id", "pid_ns", "pid_start")  # the lease_lock options


@dataclass(frozen=True)
class HolderIdentity:
    pid: int
    control_host: str
    boot_id: str
    pid_ns: str
    start: int  # 0: unknown

    @classmethod
    def of_this_process(cls) -> HolderIdentity:
        pid = os.getpid()
        return cls(pid, socket.gethostname(), boot_id(), pid_namespace(), process_start(pid) or 0)

    def lease_fields(self) -> dict[str, Any]:
        """The holder's fields of a lease (the lease_lock module's options of the same names)."""
        values = (self.pid, self.control_host, self.boot_id, self.pid_ns, self.start)
        return dict(zip(LEASE_FIELDS, values, strict=True))


def boot_id() -> str:
    try:
        return BOOT_ID.read_text().strip()
    except OSError:
        return ""


def pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def process_start(pid: int) -> int | None:
    """When process pid started (clock ticks since boot); None when there is no such process (or a zombie)."""
    try:
        after_name = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if len(after_name) < 20 or after_name[0] == "Z":
        return None
    try:
        return int(after_name[19])  # fields 3.. follow the name: field 22 is the 20th of them
    except ValueError:
        return None


def holder_died(holder: Mapping[str, Any] | None) -> bool:
    """Whether the run holding a lease (the lease as read from a host) is provably dead; see the module doc."""
    if not holder:
        return False
    me = HolderIdentity.of_this_process()
    recorded_boot, recorded_ns = holder.get("control_boot_id"), holder.get("pid_ns")
    if not me.boot_id or recorded_boot != me.boot_id or not me.pid_ns or recorded_ns != me.pid_ns:
        return False
    try:
        pid, start = int(holder.get("pid") or 0), int(holder.get("pid_start") or 0)
    except (TypeError, ValueError):
        return False
    if pid <= 0 or start <= 0 or pid == me.pid:
        return False
    return process_start(pid) != start


__all__ = ["LEASE_FIELDS", "HolderIdentity", "boot_id", "holder_died", "pid_namespace", "process_start"]
