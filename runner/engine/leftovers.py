"""What a run that died leaves running on this control node.

ansible-runner's ansible-playbook outlives a killed `runbook run` and goes on through the playbook with nobody
recording what it does. Before a run is resumed, the calls it left running are ended (they are recognised by the
run's directory on their command line: its playbooks, its lease and host-work calls), so the resumed run never
acts beside them; a run whose own `runbook` process still lives is refused instead. Then the scratch directories
its roles made on this node and named after it (backup_retention's offsite copies pass through one) are removed:
a killed run leaves backup data in them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import stat
import tempfile
import time
from pathlib import Path
from typing import Any

from runner.errors import InvalidInput
from runner.processes import pid_alive


def control_process() -> dict[str, Any]:
    """This process, as request.json records it: the machine, the pid and when that pid started."""
    return {"node": os.uname().nodename, "pid": os.getpid(), "started": process_started(os.getpid())}


def process_started(pid: int) -> str:
    """The process's start time in clock ticks since boot ("" when unknown): with the pid, it names one process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def refuse_if_running(run_id: str, control: dict[str, Any]) -> None:
    pid = control.get("pid")
    if control.get("node") != os.uname().nodename or not isinstance(pid, int) or not pid_alive(pid):
        return
    if control.get("started") and process_started(pid) == control["started"]:
        raise InvalidInput(f"run {run_id} is still running (pid {pid}); resume it once it has ended")


def calls_left_running(run_dir: Path) -> list[int]:
    """The processes whose command line names a file in the run's directory (its ansible-playbook calls and their
    workers), with everything they started (the ssh sessions whose end stops the modules on the hosts); never this
    process or one it runs under."""
    marker = (str(run_dir.resolve()) + os.sep).encode()
    parents: dict[int, int] = {}
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if marker in cmdline:
            found.add(int(entry.name))
    grown = True
    while grown:  # their descendants, however deep
        more = {pid for pid, parent in parents.items() if parent in found} - found
        found |= more
        grown = bool(more)
    mine, pid = set(), os.getpid()
    while pid > 1 and pid not in mine:  # this process and its ancestors
        mine.add(pid)
        pid = parents.get(pid, 0)
    return sorted(found - mine)


def end_calls_left_running(run_dir: Path, timeout: float = 10.0) -> list[int]:
    """SIGTERM to each call left running, SIGKILL to what is left after `timeout`; the pids that were found."""
    pids = calls_left_running(run_dir)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(pid_alive(pid) for pid in pids):
            time.sleep(0.1)
        if not any(pid_alive(pid) for pid in pids):
            break
    return pids


SCRATCH_PREFIXES = ("runbook-offsite-",)  # roles' tempfile prefixes on the control node, followed by the run id


def remove_scratch(run_id: str, parent: Path | None = None) -> list[Path]:
    """This user's scratch directories of the run (never through a link); the ones removed."""
    base = parent or Path(tempfile.gettempdir())
    removed = []
    for prefix in SCRATCH_PREFIXES:
        for path in base.glob(f"{prefix}{run_id}-*"):
            info = path.lstat()
            if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid():
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed
