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


@pytest.fixture(scope="session")
def lab() -> lab_driver.LabStatus:
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
