"""Where benchmarks write: bench/results/<name>.json and one row per benchmark in bench/results/README.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
TABLE = RESULTS / "README.md"
HEADER = [
    "# Benchmark results",
    "",
    "Written by `python -m bench` (`make bench`); one row per benchmark, refreshed each time it runs. The JSON next",
    "to this file holds every measurement of the latest run.",
    "",
    "| Benchmark | Result | Goal | Met | Measured | Details |",
    "|---|---|---|---|---|---|",
]


def write_json(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def update_row(name: str, result: str, goal: str, met: bool | None, measured: str, details: str) -> Path:
    """Replace this benchmark's row of the table (or append it), keeping the other rows as they are."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    cells = [f"`{name}`", result, goal, {True: "yes", False: "**no**", None: "—"}[met], measured, details]
    row = "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"
    rows: list[str] = []
    if TABLE.is_file():
        lines = TABLE.read_text(encoding="utf-8").splitlines()
        rows = [line for line in lines if line.startswith("| `")]
    rows = [r for r in rows if not r.startswith(f"| `{name}` |")] + [row]
    rows.sort()
    TABLE.write_text("\n".join([*HEADER, *rows]) + "\n", encoding="utf-8")
    return TABLE


LATEST = RESULTS / "latest.json"


def record_latest(name: str, ours_s: float, baseline_s: float, goal: float | None, detail: str) -> Path:
    """Replace this entry of bench/results/latest.json (a list of {name, ratio, goal, ours_s, baseline_s, detail},
    lower ratio is better; goal null where the benchmark sets none), keeping the other entries as they are."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    entries: list[dict[str, Any]] = []
    if LATEST.is_file():
        loaded = json.loads(LATEST.read_text(encoding="utf-8"))
        if isinstance(loaded, list):
            entries = [e for e in loaded if isinstance(e, dict) and e.get("name") != name]
    ratio = round(ours_s / baseline_s, 3) if baseline_s > 0 else None
    entries.append(
        {
            "name": name,
            "ratio": ratio,
            "goal": round(goal, 3) if goal is not None else None,
            "ours_s": round(ours_s, 3),
            "baseline_s": round(baseline_s, 3),
            "detail": detail,
        }
    )
    entries.sort(key=lambda e: str(e["name"]))
    LATEST.write_text(json.dumps(entries, indent=2) + "\n", encoding="utf-8")
    return LATEST
