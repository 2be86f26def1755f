"""cache_flush against the lab's real Redis on db (127.0.10.21:6379), checked with redis-cli on the host."""

from __future__ import annotations

from pathlib import Path

import pytest
from labtools import host_sh, run, step_outputs

pytestmark = pytest.mark.lab


def redis(*args: str, db: int = 0) -> str:
    return host_sh("db", " ".join(["redis-cli", "-h", "127.0.10.21", "-n", str(db), *args])).strip()


def fill() -> None:
    """db 0: 1500 catalog keys (more than one SCAN batch) and 20 sessions; db 1: 5 keys of another app."""
    script = "".join(f"SET catalog:page:{i} cached-{i}\n" for i in range(1500))
    script += "".join(f"SET session:{i} user-{i}\n" for i in range(20))
    redis("FLUSHDB")
    host_sh("db", "redis-cli -h 127.0.10.21 -n 0 >/dev/null", stdin=script)
    redis("FLUSHDB", db=1)
    for i in range(5):
        redis("SET", f"other:{i}", "x", db=1)


def test_cache_flush_by_pattern_then_whole_database(lab: object, tmp_path: Path) -> None:
    fill()
    assert redis("DBSIZE") == "1520"

    dry = run(tmp_path, "cache-flush", "-p", "pattern=catalog:*", "--check")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert redis("DBSIZE") == "1520"

    by_pattern = run(tmp_path, "cache-flush", "-p", "pattern=catalog:*")
    assert by_pattern.returncode == 0, by_pattern.stdout + by_pattern.stderr
    assert redis("DBSIZE") == "20"
    assert redis("GET", "session:7") == "user-7"
    assert redis("DBSIZE", db=1) == "5"
    found = step_outputs(tmp_path, "flush")
    assert (found["keys_before"], found["removed"], found["keys_after"]) == (1500, 1500, 0), found

    whole = run(tmp_path, "cache-flush")
    assert whole.returncode == 0, whole.stdout + whole.stderr
    assert redis("DBSIZE") == "0"
    assert redis("DBSIZE", db=1) == "5"  # the other database is left alone
    redis("FLUSHDB", db=1)
