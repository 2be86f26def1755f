"""Exclusive use of the shared lab, exactly like tests/integration/conftest.py `_exclusive_use()`.

Lab tests and benchmarks reset hosts, so one session uses the lab at a time: `with exclusive():` takes
fcntl.flock(LOCK_EX) on $RUNBOOK_LAB_DIR/in-use.lock (default /var/lib/runbook-lab/in-use.lock), waiting (polling
every 2 s) while another session holds it, and keeps it until the block ends. It is reentrant within a process,
so `python -m bench` can hold it across every lab benchmark while each benchmark also takes it when run alone.

A parent that already holds the lock may hand it down: with BENCH_LAB_LOCK_FD=N set (an inherited descriptor of
the lock file, already flock()ed by the parent) the lock is shared with the parent instead of waited for.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from runner import lab

POLL_S = 2.0
DEFAULT_WAIT_S = 2400.0  # like the integration tests: 40 minutes

_held: list[tuple[IO[str], bool]] = []  # (handle, inherited from a parent that keeps the lock)
_depth = 0


def _say(line: str) -> None:
    print(line, flush=True)


class LabBusy(RuntimeError):
    """Another session kept the lab for longer than we were willing to wait."""


def lock_path() -> Path:
    return Path(os.environ.get("RUNBOOK_LAB_DIR", "/var/lib/runbook-lab")) / "in-use.lock"


def _inherited(path: Path) -> IO[str] | None:
    raw = os.environ.get("BENCH_LAB_LOCK_FD", "")
    if not raw.isdigit():
        return None
    fd = int(raw)
    try:
        st, want = os.fstat(fd), path.stat()
    except OSError:
        return None
    if (st.st_dev, st.st_ino) != (want.st_dev, want.st_ino):
        return None
    handle = os.fdopen(os.dup(fd), "a")  # same open file description: the parent's lock is ours too
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def _acquire(wait_s: float, progress: Callable[[str], None]) -> tuple[IO[str], bool]:
    path = lock_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    inherited = _inherited(path) if path.exists() else None
    if inherited is not None:
        return inherited, True
    handle = path.open("a")
    start = time.monotonic()
    next_note = start
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            waited = time.monotonic() - start
            if waited >= POLL_S:
                progress(f"[lab] got the lab after waiting {waited:.0f} s")
            return handle, False
        except BlockingIOError:
            now = time.monotonic()
            if now - start > wait_s:
                handle.close()
                minutes = wait_s / 60
                raise LabBusy(f"the lab stayed in use by another session for {minutes:.0f} minutes ({path})") from None
            if now >= next_note:
                progress(f"[lab] in use by another session ({path}); waiting ({now - start:.0f} s so far)")
                next_note = now + 60
            time.sleep(POLL_S)


@contextlib.contextmanager
def exclusive(wait_s: float = DEFAULT_WAIT_S, progress: Callable[[str], None] = _say) -> Iterator[None]:
    """Hold the lab's exclusive-use lock for the duration of the block (reentrant)."""
    global _depth
    if _depth == 0:
        try:
            _held.append(_acquire(wait_s, progress))
        except OSError:
            # no lab state directory (not root): lab.up() then fails with the reason, as the lab tests skip
            _held.append((open(os.devnull, "a"), True))  # noqa: SIM115 - closed on release
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0:
            handle, inherited = _held.pop()
            if not inherited:  # unlocking a shared description would release the parent's lock too
                with contextlib.suppress(OSError):
                    fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()


def held() -> bool:
    return _depth > 0


def up(progress: Callable[[str], None] = _say) -> lab.LabStatus:
    """Bring the lab up (call inside `exclusive()`); raises runner.errors.LabError when it cannot start."""
    return lab.up(progress=lambda line: progress(f"[lab] {line}"))


def reset(progress: Callable[[str], None] = _say) -> lab.LabStatus:
    """The lab in its initial state: hosts recreated, backends on v1, shop reseeded (call inside `exclusive()`)."""
    return lab.reset(progress=lambda line: progress(f"[lab] {line}"))
