"""Scaling with host count: wall time of one runbook against 1, 2, 4, 8 and 16 hosts.

    python -m bench.scaling [--reps N] [--hosts 1,2,4,8,16]

The runbook is the two-step fixture runbook of bench.runner_overhead (role fixture_step from tests/fixtures/roles:
write a file, then publish a passing check) on N hosts with `ansible_connection: local` (an inventory generated
like tests/fixtures/local-inventory.yml, each host with a lease directory of its own), run with `runbook run
--json`, and, alternating with it, plain `ansible-playbook` of the same rendered project on the same inventory.
No lab needed. Sizes are interleaved (1 2 4 8 16, then 16 8 4 2 1, ...), N repetitions each.

Reports the median wall time per size, the per-host cost (least-squares slope of median time over host count)
and the fixed cost (its intercept), and the runner's phases (lease acquire, playbooks, lease release + reports)
per size from the event stream. Everything runs on this machine, so a host costs what its Ansible worker
process and module runs cost on 2 cores; over SSH each host adds a connection instead.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.measure import (
    ANSIBLE_PLAYBOOK,
    FIXTURE_ROLES,
    RUNBOOK,
    base_env,
    event_times,
    fmt_s,
    machine,
    ratio,
    run,
    run_json_events,
    summary,
)
from bench.results import update_row, write_json
from bench.runner_overhead import FIXTURE_RUNBOOK, PHASES, local_inventory, phases

NAME = "scaling"
SIZES = (1, 2, 4, 8, 16)


def fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Least-squares slope and intercept."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0
    return slope, my - slope * mx


def measure(sizes: Sequence[int], reps: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-scaling-") as tmp:
        work = Path(tmp)
        runbook_file = work / "bench-scaling.yml"
        runbook_file.write_text(FIXTURE_RUNBOOK.replace("bench-overhead", "bench-scaling"), encoding="utf-8")
        env = base_env(RUNBOOK_STATE_DIR=str(work / "state"), RUNBOOK_ROLES_PATH=str(FIXTURE_ROLES))
        inventories = {n: local_inventory(work / f"inventory-{n}.yml", n, work / "locks") for n in sizes}
        samples: dict[int, list[float]] = {n: [] for n in sizes}
        plain_samples: dict[int, list[float]] = {n: [] for n in sizes}
        timelines: dict[int, list[dict[str, float]]] = {n: [] for n in sizes}
        project = work / "project"
        run([RUNBOOK, "render", runbook_file, "-o", project, "-p", f"out={work / 'out'}"], env=env).check("render")

        def once(n: int) -> float:
            argv: list[str | Path] = [RUNBOOK, "run", runbook_file, "-i", inventories[n]]
            argv += ["-p", f"out={work / 'out'}", "--json"]
            timed = run_json_events(argv, env=env, timeout=1800).check(f"runbook run on {n} hosts")
            timelines[n].append(phases(event_times(timed)))
            return timed.seconds

        def plain(n: int) -> float:
            argv: list[str | Path] = [ANSIBLE_PLAYBOOK, "-i", inventories[n], "main.yml", "-e", "@params.yml"]
            return run(argv, env=base_env(), cwd=project, timeout=1800).check(f"ansible-playbook on {n} hosts").seconds

        print("  warm-up (1 host, not counted)", flush=True)
        once(sizes[0])
        plain(sizes[0])
        timelines[sizes[0]].clear()
        for rep in range(reps):
            order = list(sizes) if rep % 2 == 0 else list(reversed(sizes))
            for n in order:
                pair = (once, plain) if rep % 2 == 0 else (plain, once)
                got = {fn.__name__: fn(n) for fn in pair}
                samples[n].append(got["once"])
                plain_samples[n].append(got["plain"])
                print(
                    f"  rep {rep + 1}/{reps} {n:>3} host(s) runbook {got['once']:7.2f} s, "
                    f"ansible-playbook {got['plain']:7.2f} s",
                    flush=True,
                )
    per_size = {}
    for n in sizes:
        per_size[str(n)] = summary(samples[n]) | {
            "plain": summary(plain_samples[n]),
            "ratio_runbook_to_plain": ratio(statistics.median(samples[n]), statistics.median(plain_samples[n])),
            "timeline_median_s": {
                k: round(statistics.median(t[k] for t in timelines[n] if k in t), 3)
                for k in PHASES
                if any(k in t for t in timelines[n])
            },
        }
    xs = [float(n) for n in sizes]
    ys = [float(per_size[str(n)]["median_s"]) for n in sizes]
    slope, intercept = fit(xs, ys)
    plain_ys = [float(per_size[str(n)]["plain"]["median_s"]) for n in sizes]
    plain_slope, plain_intercept = fit(xs, plain_ys)
    marginal = {
        f"{a}->{b}": round((ys[i + 1] - ys[i]) / (b - a), 3) for i, (a, b) in enumerate(itertools.pairwise(sizes))
    }
    return {
        "sizes": list(sizes),
        "per_size": per_size,
        "per_host_s": round(slope, 3),
        "fixed_s": round(intercept, 3),
        "marginal_per_host_s": marginal,
        "ratio_largest_to_one": round(ys[-1] / ys[0], 3) if ys[0] else None,
        "plain_per_host_s": round(plain_slope, 3),
        "plain_fixed_s": round(plain_intercept, 3),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scaling", description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--hosts", default=",".join(str(n) for n in SIZES), help="comma-separated host counts")
    args = parser.parse_args(argv)
    sizes = sorted({int(x) for x in args.hosts.split(",") if x.strip()})
    reps = max(1, args.reps)
    data: dict[str, Any] = {"benchmark": NAME, **machine(), "reps": reps}
    data.update(measure(sizes, reps))
    json_path = write_json(NAME, data)
    medians = ", ".join(f"{n}: {fmt_s(data['per_size'][str(n)]['median_s'])}" for n in sizes)
    update_row(
        NAME,
        f"{data['per_host_s']:.2f} s per extra host (fixed {data['fixed_s']:.1f} s)",
        "—",
        None,
        str(data["measured_at"])[:10],
        f"2 fixture steps, connection local, median of {reps} runs per size; hosts {medians}; "
        f"{sizes[-1]} hosts take {data['ratio_largest_to_one']:.2f}x one host; plain ansible-playbook of the rendered "
        f"project: {data['plain_per_host_s']:.2f} s per host (fixed {data['plain_fixed_s']:.1f} s)",
    )
    for n in sizes:
        row = data["per_size"][str(n)]
        parts = ", ".join(f"{k.split(' (')[0]} {v:.2f}" for k, v in row["timeline_median_s"].items())
        print(
            f"  {n:>3} host(s): median {fmt_s(row['median_s'])} vs ansible-playbook {fmt_s(row['plain']['median_s'])}"
            f" ({parts})"
        )
    print(
        f"scaling: {data['per_host_s']:.3f} s per host, fixed {data['fixed_s']:.2f} s "
        f"(ansible-playbook: {data['plain_per_host_s']:.3f} s per host, fixed {data['plain_fixed_s']:.2f} s); "
        f"marginal {data['marginal_per_host_s']}; {json_path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
