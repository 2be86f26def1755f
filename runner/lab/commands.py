"""The commands the lab runs on the machine (ssh-keygen, the image recipes), each failure as one LabError line."""

from __future__ import annotations

import subprocess
import time

from runner.errors import LabError
from runner.lab.layout import Progress


def run(argv: list[str], what: str, timeout: float = 600) -> str:
    """Run a command to its end; its stdout, or a LabError with the last line it wrote."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise LabError(f"{what}: `{argv[0]}` not found") from None
    except subprocess.TimeoutExpired:
        raise LabError(f"{what} did not finish within {int(timeout)} s") from None
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        raise LabError(f"{what} failed: {lines[-1] if lines else f'exit status {proc.returncode}'}")
    return proc.stdout


def run_streaming(argv: list[str], what: str, progress: Progress, timeout: float = 1800) -> None:
    """Run a long command, passing its `[step]` lines on as progress; a failure names its last line."""
    tail: list[str] = []
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except OSError as exc:
        raise LabError(f"{what}: cannot run {argv[0]}: {exc.strerror}") from None
    assert proc.stdout is not None
    start = time.monotonic()
    for line in proc.stdout:
        line = line.rstrip()
        if line.startswith("[") and "]" in line:
            progress(line)
        tail = [*tail[-20:], line]
        if time.monotonic() - start > timeout:
            proc.kill()
            raise LabError(f"{what} did not finish within {int(timeout)} s")
    if proc.wait() != 0:
        last = next((t for t in reversed(tail) if t.strip()), f"exit status {proc.returncode}")
        raise LabError(f"{what} failed: {last}")
