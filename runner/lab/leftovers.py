"""What lab engines leave behind when they die or stop: processes (containerd, shims, containers), mounts and
cgroups; finding them and ending them."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from runner.errors import LabError
from runner.lab.layout import Progress, cgroup_parent, run_dir, state_dir
from runner.processes import terminate


def lab_processes(*markers: str) -> list[int]:
    """Processes left behind by lab engines (containerd, shims): their command line names a lab directory."""
    markers = markers or (str(run_dir()) + "/", str(state_dir() / "engines") + "/")
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(m in cmd for m in markers):
            found.append(int(proc.name))
    return found


def lab_mounts(*roots: str) -> list[str]:
    """Mount points under the given directories (by default the lab's runtime and engine directories), deepest first."""
    roots = roots or (str(run_dir()), str(state_dir() / "engines"))
    points = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        parts = line.split()
        if len(parts) > 4:
            mp = parts[4].replace("\\040", " ")
            if any(mp == r or mp.startswith(r + "/") for r in roots):
                points.append(mp)
    return sorted(points, key=len, reverse=True)


def unmount_all(*roots: str) -> None:
    for mp in lab_mounts(*roots):
        subprocess.run(["umount", "-l", mp], capture_output=True, check=False)


def lab_cgroups() -> list[Path]:
    """The lab's cgroup directories (every controller), deepest first."""
    root = Path("/sys/fs/cgroup")
    found: list[Path] = []
    parent = cgroup_parent()
    for top in [root / parent, *root.glob(f"*/{parent}")]:
        if top.is_dir():
            found += [p for p in top.rglob("*") if p.is_dir()] + [top]
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def cgroup_pids(engine: str | None = None) -> set[int]:
    """The processes in the lab's cgroups (of one engine's containers, or of all)."""
    pids: set[int] = set()
    for cg in lab_cgroups():
        if engine is not None and engine not in cg.parts[cg.parts.index(cgroup_parent()) :]:
            continue
        with contextlib.suppress(OSError, ValueError):
            pids |= {int(x) for x in (cg / "cgroup.procs").read_text().split()}
    return pids


def kill_all(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def cleanup_runtime(progress: Progress) -> None:
    """After every engine stopped: end what is left, remove the lab's cgroups, unmount and remove the runtime dir."""
    pids = cgroup_pids()  # containers whose dockerd died: their processes are still in the lab's cgroups
    if pids:
        progress(f"ending {len(pids)} leftover lab container processes")
        kill_all(pids)
    for pid in lab_processes():
        progress(f"ending leftover lab process {pid}")
        terminate(pid, 5)
    deadline = time.monotonic() + 10
    while cgroup_pids() and time.monotonic() < deadline:
        time.sleep(0.1)
    for cg in lab_cgroups():
        with contextlib.suppress(OSError):
            cg.rmdir()
    unmount_all()
    left = lab_mounts()
    if left:
        raise LabError(f"could not unmount {left[0]} (and {len(left) - 1} more): unmount it by hand")
    shutil.rmtree(run_dir(), ignore_errors=True)
