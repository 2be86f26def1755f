"""Integration fixtures: the local lab (DESIGN section 7).

`lab` brings the lab up once per session and returns its LabStatus. When the lab cannot start (not root, a
package missing, a port taken) the tests that use it are skipped with the reason, unless RUNBOOK_REQUIRE_LAB=1
(CI), where that is a failure.
"""

from __future__ import annotations

import os

import pytest

from runner import lab as lab_driver
from runner.errors import LabError


def _require_lab() -> bool:
    return os.environ.get("RUNBOOK_REQUIRE_LAB", "") not in ("", "0", "false", "no")


def _exclusive_use() -> None:
    """Lab tests and benchmarks reset hosts: one session uses the lab at a time (others wait, up to 40 min)."""
    import fcntl
    import time
    from pathlib import Path

    path = Path(os.environ.get("RUNBOOK_LAB_DIR", "/var/lib/runbook-lab")) / "in-use.lock"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("a")
    except OSError:
        return  # no lab state directory (not root): the lab fixture below skips or fails with the reason
    deadline = time.monotonic() + 2400
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                pytest.fail("the lab stayed in use by another test session for 40 minutes", pytrace=False)
            time.sleep(2)
    _HELD.append(handle)  # released when the test process exits


_HELD: list[object] = []


@pytest.fixture(scope="session")
def lab() -> lab_driver.LabStatus:
    _exclusive_use()
    try:
        status = lab_driver.up(progress=lambda line: print(f"[lab] {line}", flush=True))
    except LabError as exc:
        if _require_lab():
            pytest.fail(f"the lab is required (RUNBOOK_REQUIRE_LAB=1) but cannot start: {exc}", pytrace=False)
        pytest.skip(f"the lab cannot start: {exc}")
    return status


@pytest.fixture
def fresh_lab(lab: lab_driver.LabStatus) -> lab_driver.LabStatus:
    """The lab in its initial state (hosts recreated, backends on v1, shop reseeded): a few seconds."""
    return lab_driver.reset(progress=lambda _line: None)
