"""bench/results/latest.json: one entry per benchmark, replaced when it runs again, lower ratio better."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import results


@pytest.fixture
def latest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(results, "RESULTS", tmp_path)
    monkeypatch.setattr(results, "LATEST", tmp_path / "latest.json")
    return tmp_path / "latest.json"


def test_an_entry_holds_the_ratio_of_ours_to_the_baseline_and_its_goal(latest: Path) -> None:
    results.record_latest("runner_overhead.lab", 5.5, 5.0, 1.10, "deploy.yml v1")
    assert json.loads(latest.read_text()) == [
        {"name": "runner_overhead.lab", "ratio": 1.1, "goal": 1.1, "ours_s": 5.5, "baseline_s": 5.0,
         "detail": "deploy.yml v1"}
    ]


def test_a_second_run_replaces_its_own_entry_and_keeps_the_others(latest: Path) -> None:
    results.record_latest("runner_overhead.lab", 6.0, 5.0, 1.10, "first")
    results.record_latest("image_rollback", 2.0, 0.2, 11.0, "floor")
    results.record_latest("runner_overhead.lab", 5.0, 5.0, 1.10, "second")
    entries = json.loads(latest.read_text())
    assert [(e["name"], e["ratio"], e["detail"]) for e in entries] == [
        ("image_rollback", 10.0, "floor"),
        ("runner_overhead.lab", 1.0, "second"),
    ]


def test_no_goal_is_written_as_null(latest: Path) -> None:
    results.record_latest("scaling", 2.0, 1.0, None, "")
    assert json.loads(latest.read_text())[0]["goal"] is None
