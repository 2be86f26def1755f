"""Whether a lab service answers (a TCP port, sshd, PostgreSQL, an app's /health), and waiting until they all do."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from runner.lab.layout import APP_PORT, DB_NAME, DB_PASSWORD, DB_USER, LAB_HOSTS, PG_PORT, SSH_PORT, ssh_key_path
from runner.lab.ssh_access import ssh_argv


def tcp_ok(addr: str, port: int, timeout: float = 2) -> bool:
    try:
        with socket.create_connection((addr, port), timeout=timeout):
            return True
    except OSError:
        return False


def ssh_ok(host: str, timeout: float) -> bool:
    """Whether `ssh root@host true` succeeds with the lab's key."""
    if not ssh_key_path().exists() or not tcp_ok(LAB_HOSTS[host], SSH_PORT, timeout=min(timeout, 2)):
        return False
    argv = [*ssh_argv(host), "-o", f"ConnectTimeout={int(timeout)}", "true"]
    try:
        return subprocess.run(argv, capture_output=True, timeout=timeout + 5, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def pg_ok() -> bool:
    """Whether the db host's PostgreSQL serves the seeded shop database (only its port without psycopg)."""
    try:
        import psycopg
    except ImportError:
        return tcp_ok(LAB_HOSTS["db"], PG_PORT)
    try:
        with psycopg.connect(
            host=LAB_HOSTS["db"],
            port=PG_PORT,
            user=DB_USER,
            password=DB_PASSWORD,
            dbname=DB_NAME,
            connect_timeout=3,
        ) as conn:
            conn.execute("SELECT count(*) FROM wallet").fetchone()
        return True
    except Exception:
        return False


def http_health(addr: str) -> tuple[int, str]:
    """The HTTP status and body of an app host's GET /health (0 when nothing answers)."""
    try:
        with urllib.request.urlopen(f"http://{addr}:{APP_PORT}/health", timeout=2) as resp:
            return int(resp.status), resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return int(exc.code), ""
    except OSError:
        return 0, ""


def wait_until_ready(names: list[str], ready: Callable[[str], bool], timeout: float) -> list[str]:
    """Ask `ready` about each name until all are, or `timeout` seconds passed; returns the names still not ready."""
    deadline = time.monotonic() + timeout
    pending = list(names)
    while pending:
        pending = [name for name in pending if not ready(name)]
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    return pending
