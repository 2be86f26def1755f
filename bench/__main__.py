"""Run the benchmark modules: `python -m bench [--only NAME]... [NAME...]` (default: all).

Order: validate_render, scaling (no lab), then the lab benchmarks - runner_overhead, image_rollback,
postgres_backup_restore - under one hold of the lab's exclusive-use lock (bench.labuse), so that no other
session's tests reset the lab between them; any other module follows in name order.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import pkgutil
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
NOT_BENCHMARKS = {"__main__", "results", "labuse", "measure"}
ORDER = ["validate_render", "scaling", "runner_overhead", "image_rollback", "postgres_backup_restore"]


def modules() -> list[str]:
    found = (m.name for m in pkgutil.iter_modules([str(HERE)]))
    names = sorted(name for name in found if name not in NOT_BENCHMARKS and not name.startswith("_"))
    return sorted(names, key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))


def run_one(name: str) -> int:
    module = importlib.import_module(f"bench.{name}")
    run = getattr(module, "main", None)
    if run is None:
        return 0
    print(f"== bench.{name}", flush=True)
    try:
        return int(run([]) or 0)
    except Exception:
        traceback.print_exc()
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description="Run the benchmarks (bench/results/).")
    parser.add_argument("names", nargs="*", metavar="NAME", help="benchmarks to run (default: all)")
    parser.add_argument("--only", action="append", default=[], metavar="NAME", help="run only this one (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(list(argv) if argv is not None else sys.argv[1:])
    if args.list:
        print("\n".join(modules()))
        return 0
    wanted = [*args.names, *args.only]
    unknown = sorted(set(wanted) - set(modules()))
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)} (have: {', '.join(modules())})", file=sys.stderr)
        return 2
    names = [n for n in modules() if n in wanted] if wanted else modules()
    lab_names = [n for n in names if getattr(importlib.import_module(f"bench.{n}"), "USES_LAB", False)]
    worst = 0
    for name in [n for n in names if n not in lab_names]:
        worst = max(worst, run_one(name))
    if lab_names:
        from bench import labuse

        hold = labuse.exclusive() if len(lab_names) > 1 else contextlib.nullcontext()
        try:
            with hold:
                for name in lab_names:
                    worst = max(worst, run_one(name))
        except labuse.LabBusy as exc:
            print(f"lab benchmarks not run: {exc}", file=sys.stderr)
            worst = 1
    return worst


if __name__ == "__main__":
    sys.exit(main())
