"""Validate+render throughput: median time per runbook of `validate` followed by `render`, over the shipped
runbooks (runbooks/, product roles) and the valid fixtures (tests/fixtures/valid, fixture roles).

    python -m bench.validate_render [--iterations N]

Each runbook is validated and rendered N times in this process (the first, cold, pass is reported apart); the
headline figure is the median over runbooks of each runbook's median. Goal: <= 20 ms.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.results import update_row, write_json
from runner import api
from runner.engine.render import render_project
from runner.paths import PRODUCT_ROOT, ROLES_DIR

NAME = "validate_render"
GOAL_MS = 20.0
FIXTURE_ROLES = PRODUCT_ROOT / "tests" / "fixtures" / "roles"


def inputs() -> list[Path]:
    return sorted((PRODUCT_ROOT / "runbooks").glob("*.yml")) + sorted(
        (PRODUCT_ROOT / "tests" / "fixtures" / "valid").glob("*.yml")
    )


def once(path: Path, roles_paths: list[Path]) -> tuple[float, float, int, str | None]:
    """Seconds to validate, seconds to render, files rendered, and the first problem (None when valid).

    Rendering is what `runbook render` does without -p values (params.yml is then left for the operator).
    """
    start = time.perf_counter()
    result = api.validate(path, roles_paths)
    validated = time.perf_counter()
    if result.runbook is None:
        return validated - start, 0.0, 0, str(result.diagnostics[0]) if result.diagnostics else "invalid"
    project = render_project(result.runbook, roles_paths)
    return validated - start, time.perf_counter() - validated, len(project.files), None


def measure(iterations: int) -> dict[str, Any]:
    roles_paths = [FIXTURE_ROLES, ROLES_DIR]
    per_runbook: list[dict[str, Any]] = []
    for path in inputs():
        first_validate, first_render, files, problem = once(path, roles_paths)
        if problem is not None:
            per_runbook.append({"runbook": str(path.relative_to(PRODUCT_ROOT)), "ok": False, "problem": problem})
            continue
        runs = [once(path, roles_paths) for _ in range(iterations)]
        times = [v + r for v, r, _, _ in runs]
        per_runbook.append(
            {
                "runbook": str(path.relative_to(PRODUCT_ROOT)),
                "ok": True,
                "files": files,
                "bytes": path.stat().st_size,
                "first_ms": round((first_validate + first_render) * 1000, 3),
                "median_ms": round(statistics.median(times) * 1000, 3),
                "median_validate_ms": round(statistics.median(v for v, _, _, _ in runs) * 1000, 3),
                "median_render_ms": round(statistics.median(r for _, r, _, _ in runs) * 1000, 3),
                "min_ms": round(min(times) * 1000, 3),
                "max_ms": round(max(times) * 1000, 3),
            }
        )
    medians: list[float] = sorted(float(r["median_ms"]) for r in per_runbook if r["ok"])
    firsts: list[float] = sorted(float(r["first_ms"]) for r in per_runbook if r["ok"])
    median = statistics.median(medians) if medians else None
    return {
        "benchmark": NAME,
        "measured_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": f"{platform.system()} {platform.machine()}",
        "iterations": iterations,
        "goal_ms": GOAL_MS,
        "median_ms": median,
        "p90_ms": medians[min(len(medians) - 1, int(len(medians) * 0.9))] if medians else None,
        "worst_median_ms": medians[-1] if medians else None,
        "median_first_ms": statistics.median(firsts) if firsts else None,
        "met": median is not None and median <= GOAL_MS,
        "runbooks_measured": len(medians),
        "runbooks_invalid": [r["runbook"] for r in per_runbook if not r["ok"]],
        "runbooks": per_runbook,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.validate_render", description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=30)
    args = parser.parse_args(argv)
    data = measure(max(1, args.iterations))
    json_path = write_json(NAME, data)
    if data["median_ms"] is None:
        print("no runbook could be measured", file=sys.stderr)
        return 1
    details = (
        f"{data['runbooks_measured']} runbooks x {data['iterations']} runs; p90 {data['p90_ms']:.1f} ms, "
        f"worst {data['worst_median_ms']:.1f} ms, cold first run {data['median_first_ms']:.1f} ms (median); "
        f"{data['machine']}, Python {data['python']}"
    )
    if data["runbooks_invalid"]:
        details += f"; skipped (invalid): {', '.join(data['runbooks_invalid'])}"
    update_row(
        NAME,
        f"median {data['median_ms']:.1f} ms per runbook",
        f"≤ {GOAL_MS:.0f} ms",
        bool(data["met"]),
        str(data["measured_at"])[:10],
        details,
    )
    for row in data["runbooks"]:
        if row["ok"]:
            print(
                f"  {row['runbook']:<48} median {row['median_ms']:6.2f} ms (validate {row['median_validate_ms']:.2f}"
                f" + render {row['median_render_ms']:.2f})  cold {row['first_ms']:6.2f} ms"
            )
        else:
            print(f"  {row['runbook']:<48} INVALID: {row['problem']}")
    print(
        f"validate+render median {data['median_ms']:.2f} ms per runbook (goal <= {GOAL_MS:.0f} ms: "
        f"{'met' if data['met'] else 'MISSED'}); {json_path}"
    )
    return 0 if data["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
