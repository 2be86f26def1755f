"""pid_alive and terminate on real processes of this machine."""

from __future__ import annotations

import os
import subprocess
import sys

from runner.processes import pid_alive, terminate


def test_this_process_is_alive() -> None:
    assert pid_alive(os.getpid())


def test_an_exited_child_is_gone_even_before_it_is_reaped() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, still a zombie
    assert not pid_alive(child.pid)
    child.wait()
    assert not pid_alive(child.pid)


def test_terminate_ends_a_process_that_ignores_sigterm() -> None:
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); "
    code += "time.sleep(60)"
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline() == "ready\n"
    terminate(child.pid, timeout=0.5)
    assert not pid_alive(child.pid)
    assert child.wait(timeout=5) == -9
