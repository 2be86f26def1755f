"""Run every benchmark module: `python -m bench [NAME...]` (default: all, in name order)."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
NOT_BENCHMARKS = {"__main__", "results"}


def modules() -> list[str]:
    found = (m.name for m in pkgutil.iter_modules([str(HERE)]))
    return sorted(name for name in found if name not in NOT_BENCHMARKS and not name.startswith("_"))


def main(argv: Sequence[str] | None = None) -> int:
    names = list(argv if argv is not None else sys.argv[1:]) or modules()
    unknown = sorted(set(names) - set(modules()))
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)} (have: {', '.join(modules())})", file=sys.stderr)
        return 2
    worst = 0
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        run = getattr(module, "main", None)
        if run is None:
            continue
        print(f"== bench.{name}", flush=True)
        try:
            status = int(run([]) or 0)
        except Exception:
            traceback.print_exc()
            status = 1
        worst = max(worst, status)
    return worst


if __name__ == "__main__":
    sys.exit(main())
