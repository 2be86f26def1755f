"""Property test of the retention planner (module_utils/retention_plan): over generated backup sets and policies,
the actions executed are exactly the plan, and no invariant is ever broken. 2000 examples per property."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "runner" / "collections"))

from ansible_collections.runbook.ops.plugins.module_utils import retention_plan as rp

NOW = 1_800_000_000.0
EXAMPLES = 2000


@st.composite
def backup_sets(draw: Any) -> list[dict[str, Any]]:
    ages = draw(st.lists(st.floats(min_value=0, max_value=400 * rp.DAY, allow_nan=False), max_size=40))
    backups = []
    for i, age in enumerate(ages):
        backups.append({
            "name": f"db-{i:03d}", "time": NOW - age, "size": draw(st.integers(0, 10**9)),
            "state": draw(st.sampled_from(rp.STATES)), "latest": False,
            "reading": draw(st.booleans()) and draw(st.booleans()),
            "compressed": draw(st.booleans()), "offsite": draw(st.sampled_from(rp.OFFSITE_STATES)),
        })
    if backups and draw(st.booleans()):
        backups[draw(st.integers(0, len(backups) - 1))]["latest"] = True
    return backups


@st.composite
def policies(draw: Any) -> dict[str, Any]:
    policy: dict[str, Any] = {k: draw(st.integers(0, 12)) for k in rp.KEEP_KEYS}
    policy["compress_after_days"] = draw(st.integers(0, 60))
    policy["offsite"] = draw(st.booleans())
    return policy


def execute(backups: list[dict[str, Any]], plan: list[dict[str, Any]], copy_fails: set[str]) -> tuple[
        dict[str, dict[str, Any]], list[tuple[str, str]]]:
    """A faithful executor over an in-memory set: a copy that fails verification stops that backup's actions."""
    state = {b["name"]: dict(b) for b in backups}
    done: list[tuple[str, str]] = []
    for entry in plan:
        for action in entry["actions"]:
            backup = state[entry["name"]]
            if action == "compress":
                backup["compressed"] = True
            elif action == "copy":
                if entry["name"] in copy_fails:
                    backup["offsite"] = "corrupt"
                    break
                backup["offsite"] = "verified"
            elif action == "delete":
                assert backup["offsite"] == "verified" or not entry_policy_offsite(plan), entry
                del state[entry["name"]]
            done.append((entry["name"], action))
    return state, done


def entry_policy_offsite(plan: list[dict[str, Any]]) -> bool:
    return any("copy" in e["actions"] for e in plan)


def valid(policy: dict[str, Any]) -> bool:
    try:
        rp.check_policy(policy)
    except rp.PolicyError:
        return False
    return True


@settings(max_examples=EXAMPLES, deadline=None)
@given(backup_sets(), policies())
def test_plan_never_breaks_an_invariant(backups: list[dict[str, Any]], policy: dict[str, Any]) -> None:
    if not valid(policy):
        with pytest.raises(rp.PolicyError):
            rp.plan(backups, policy, NOW)
        return
    plan = rp.plan(backups, policy, NOW)
    assert sorted(e["name"] for e in plan) == sorted(b["name"] for b in backups)
    by_name = {b["name"]: b for b in backups}
    deleted = {e["name"] for e in plan if "delete" in e["actions"]}
    verified = sorted((b for b in backups if b["state"] == "verified"), key=lambda b: (b["time"], b["name"]))
    if verified:
        assert verified[-1]["name"] not in deleted
    for entry in plan:
        backup = by_name[entry["name"]]
        assert entry["rule"]
        assert entry["keep"] == ("delete" not in entry["actions"])
        if backup["latest"] or backup["reading"]:
            assert entry["keep"] and "compress" not in entry["actions"]
        if "delete" in entry["actions"] and policy["offsite"]:
            assert backup["offsite"] == "verified" or entry["actions"] == ["copy", "delete"]
        if "compress" in entry["actions"]:
            assert not backup["compressed"] and backup["state"] != "corrupt"
        if "copy" in entry["actions"]:
            assert policy["offsite"] and backup["state"] != "corrupt"
    if backups:
        assert len(deleted) < len(backups)


@settings(max_examples=EXAMPLES, deadline=None)
@given(backup_sets(), policies(), st.data())
def test_actions_are_the_plan_and_a_second_plan_has_nothing_left(
        backups: list[dict[str, Any]], policy: dict[str, Any], data: Any) -> None:
    if not valid(policy):
        return
    plan = rp.plan(backups, policy, NOW)
    planned = [(e["name"], a) for e in plan for a in e["actions"]]
    state, done = execute(backups, plan, set())
    assert done == planned
    assert set(state) == {e["name"] for e in plan if e["keep"]}
    again = rp.plan(list(state.values()), policy, NOW)
    assert all(not e["actions"] for e in again), rp.plan_lines(again)
    # A copy that fails verification: the backup it was for is never deleted.
    failing = set(data.draw(st.lists(st.sampled_from([e["name"] for e in plan] or ["none"]), max_size=3)))
    state, _ = execute(backups, plan, failing)
    for name in failing & {b["name"] for b in backups}:
        entry = next(e for e in plan if e["name"] == name)
        if "copy" in entry["actions"]:
            assert name in state


def test_empty_and_contradictory_policies_are_refused_before_anything_is_read() -> None:
    with pytest.raises(rp.PolicyError, match="empty retention policy"):
        rp.check_policy({"compress_after_days": 7, "offsite": True})
    with pytest.raises(rp.PolicyError, match="contradictory"):
        rp.check_policy({"keep_days": 7, "compress_after_days": 10})
    with pytest.raises(rp.PolicyError, match="negative"):
        rp.check_policy({"keep_last": -1})
    with pytest.raises(rp.PolicyError, match="unknown"):
        rp.check_policy({"keep_last": 1, "keep_hourly": 3})


def test_a_sample_plan_reads_as_the_operator_expects() -> None:
    def b(name: str, days: float, **kw: Any) -> dict[str, Any]:
        base = {"name": name, "time": NOW - days * rp.DAY, "size": 1, "state": "verified", "latest": False,
                "reading": False, "compressed": False, "offsite": "missing"}
        base.update(kw)
        return base

    backups = [b("d0", 0, latest=True), b("d1", 1), b("d9", 9), b("d40", 40, offsite="verified"), b("d50", 50),
               b("d60", 60, state="corrupt")]
    plan = rp.plan(backups, {"keep_last": 2, "keep_days": 30, "compress_after_days": 7, "offsite": True}, NOW)
    got = {e["name"]: e["actions"] for e in plan}
    assert got == {"d0": ["copy"], "d1": ["copy"], "d9": ["compress", "copy"], "d40": ["delete"],
                   "d50": ["copy", "delete"], "d60": []}
    assert rp.summary(plan) == {"keep": 4, "compress": 1, "copy": 4, "delete": 2}
