"""Whether the run holding a lease is provably dead (then its lease is taken over before it expires).

The holder is known by what the lease recorded of its control-node process: boot id, pid namespace, pid and the
process's start time (/proc/PID/stat field 22). These tests read those from /proc themselves.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from runner.engine import host_leases


def start_time(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])


def holder(pid: int, **changes: Any) -> dict[str, Any]:
    """A lease's holder as this control node writes it for a process `pid` of its own."""
    recorded: dict[str, Any] = {
        "run_id": "other-run",
        "pid": pid,
        "control_host": socket.gethostname(),
        "control_boot_id": Path("/proc/sys/kernel/random/boot_id").read_text().strip(),
        "pid_ns": os.readlink("/proc/self/ns/pid"),
        "pid_start": start_time(pid) if Path(f"/proc/{pid}").exists() else 1,
    }
    recorded.update(changes)
    return recorded


def gone_pid() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def live_child() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_a_holder_whose_process_is_gone_from_this_boot_and_namespace_is_dead() -> None:
    assert host_leases.holder_died(holder(gone_pid()))


def test_a_holder_whose_process_runs_is_alive() -> None:
    child = live_child()
    try:
        assert not host_leases.holder_died(holder(child.pid))
    finally:
        child.kill()
        child.wait()


def test_a_pid_reused_by_another_process_is_a_dead_holder() -> None:
    child = live_child()
    try:
        assert host_leases.holder_died(holder(child.pid, pid_start=start_time(child.pid) - 100))
    finally:
        child.kill()
        child.wait()


def test_a_holder_in_another_pid_namespace_is_never_provably_dead() -> None:
    """Same host name (a container of this machine), its pid means nothing here: wait for the lease to expire."""
    assert not host_leases.holder_died(holder(gone_pid(), pid_ns="pid:[4026531999]"))


def test_a_holder_of_another_boot_or_an_older_lease_is_not_provably_dead() -> None:
    pid = gone_pid()
    assert not host_leases.holder_died(holder(pid, control_boot_id="0f0f0f0f-another-boot"))
    older = {"run_id": "other-run", "pid": pid, "control_host": socket.gethostname()}  # no process identity
    assert not host_leases.holder_died(older)
    assert not host_leases.holder_died(holder(os.getpid()))  # this very process
    assert not host_leases.holder_died(None)
