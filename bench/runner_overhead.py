"""Runner overhead: `runbook run` vs plain `ansible-playbook` of the same rendered project, on the same work.

    python -m bench.runner_overhead [--reps N] [--only lab|local]

Two cases, each measured side by side in one process, alternating the contenders (A B, B A, ...):

- lab: runbooks/deploy.yml with version=v1 against the lab (inventories/lab/hosts.yml), after one warm-up deploy
  so that both contenders find v1 running and verified, i.e. the swap is a no-op and the health checks pass.
  The plain contender is `runbook render ... -p version=v1` then `ansible-playbook -i INV main.yml -e @params.yml`
  from the rendered directory (its ansible.cfg: same forks, pipelining, SSH ControlPersist).
- local: a two-step fixture runbook (role fixture_step from tests/fixtures/roles) on two hosts with
  `ansible_connection: local` (the hosts of tests/fixtures/local-inventory.yml, each given its own lease directory
  so that other sessions' local runs cannot hold our lease), so it runs without the lab.

Headline: median wall time of each and the ratio runbook/plain. Then one more `runbook run` of each case in this
process with timers around what the runner adds to ansible-playbook (validation and rendering, lease playbooks of
their own — only when the leases cannot be taken and given back inside the run's calls —, ansible-runner's event
capture, journal, history, reports).
"""

from __future__ import annotations

import argparse
import contextlib
import re
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from bench import labuse
from bench.measure import (
    ANSIBLE_PLAYBOOK,
    FIXTURE_ROLES,
    LAB_INVENTORY,
    RUNBOOK,
    alternate,
    base_env,
    event_times,
    fmt_s,
    fmt_x,
    machine,
    paired_ratios,
    ratio,
    run,
    run_json_events,
    summary,
)
from bench.results import record_latest, update_row, write_json
from runner.errors import LabError
from runner.paths import PRODUCT_ROOT, ROLES_DIR

NAME = "runner_overhead"
USES_LAB = True
GOAL_RATIO = 1.10  # runbook run against plain ansible-playbook of the same rendered project
DEPLOY = PRODUCT_ROOT / "runbooks" / "deploy.yml"

FIXTURE_RUNBOOK = """\
apiVersion: runbook/v1
kind: Runbook
metadata: {name: bench-overhead, title: Two fixture steps on every host, severity: SEV3}
spec:
  params:
    out: {type: string}
  steps:
    - id: write
      hosts: app
      uses: fixture_step
      with: {write: bench, file: "{{ params.out }}-{{ inventory_hostname }}", version_before: v1, version_after: v1}
    - id: check
      hosts: app
      uses: fixture_step
      with: {healthy: true}
"""


def local_inventory(path: Path, hosts: int, lock_root: Path) -> Path:
    """N hosts like tests/fixtures/local-inventory.yml (connection local), each with a lease directory of its own."""
    lines = ["all:", "  children:", "    app:", "      hosts:"]
    for i in range(1, hosts + 1):
        lines.append(
            f"        local{i}: {{ansible_connection: local, ansible_python_interpreter: "
            f'"{{{{ ansible_playbook_python }}}}", runbook_lock_dir: {lock_root / f"local{i}"}}}'
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def recap_changed(stdout: str) -> dict[str, int]:
    """host -> changed count from ansible-playbook's PLAY RECAP."""
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", stdout, re.M)}


# --------------------------------------------------------------------------------------- in-process profile

PHASES = (
    "process start, imports, validate, render",
    "lease acquire (first call's start and its lease play)",
    "playbooks (first segment start -> last step result)",
    "playbook end (lease release play), journal/history/reports",
    "exit",
)


def phases(marks: dict[str, float]) -> dict[str, float]:
    """A `runbook run --json` timeline (event arrival times) cut into what happened in between."""
    out: dict[str, float] = {}
    start_of_work = marks.get("lock", marks.get("run_start"))
    if start_of_work is not None:
        out[PHASES[0]] = start_of_work
    if "lock" in marks and "run_start" in marks:
        out[PHASES[1]] = marks["run_start"] - marks["lock"]
    if "first_segment_start" in marks and "last_step_result" in marks:
        out[PHASES[2]] = marks["last_step_result"] - marks["first_segment_start"]
    if "last_step_result" in marks and "run_end" in marks:
        out[PHASES[3]] = marks["run_end"] - marks["last_step_result"]
    if "run_end" in marks:
        out[PHASES[4]] = marks["exit"] - marks["run_end"]
    return out


@contextlib.contextmanager
def _timers() -> Iterator[dict[str, float]]:
    """Wrap what the runner does around ansible-playbook with timers (restored afterwards)."""
    from runner.engine import host_leases, prepare, run_calls, runflow
    from runner.engine.journal import Journal
    from runner.records import formats, history, recorder

    totals: dict[str, float] = defaultdict(float)
    undo: list[tuple[Any, str, Any]] = []

    def wrap(owner: Any, attr: str, key: str) -> None:
        original = getattr(owner, attr)

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                totals[key] += time.perf_counter() - start

        undo.append((owner, attr, original))
        setattr(owner, attr, timed)

    wrap(prepare, "render_project", "render project")
    wrap(runflow, "prepare_private_dir", "prepare private dir")
    wrap(host_leases, "acquire_leases", "lease acquire (playbook of its own)")
    wrap(host_leases, "release_leases", "lease release (playbook of its own)")
    wrap(run_calls, "run_playbook", "ansible-runner: the rendered playbook(s)")
    wrap(Journal, "append", "journal")
    wrap(history, "record_start", "history")
    wrap(history, "record_end", "history")
    wrap(recorder, "write_report", "report.json/.md")
    wrap(formats, "write_all", "report.html/junit")
    try:
        yield totals
    finally:
        for owner, attr, original in reversed(undo):
            setattr(owner, attr, original)


def profile_run(
    runbook_file: Path, inventory: Path, assignments: list[str], roles: list[Path], state: Path
) -> dict[str, Any]:
    """One `runbook run` in this process, with the time of each thing the runner does."""
    from runner import api
    from runner.engine.runflow import RunOptions

    start = time.perf_counter()
    runbook = api.load(runbook_file, roles)
    params = api.resolve_params(runbook, assignments)
    loaded = time.perf_counter()
    with _timers() as totals:
        result = api.run(runbook, params, RunOptions(inventory=inventory, roles_paths=roles, state_dir=state))
    total = time.perf_counter() - start
    parts = {"validate + resolve params": loaded - start, **totals}
    parts["other (host resolution, outcome, events)"] = total - sum(parts.values())
    return {
        "status": result.status,
        "total_s": round(total, 3),
        "parts_s": {k: round(v, 3) for k, v in parts.items()},
    }


# ---------------------------------------------------------------------------------------------------- cases


def measure_case(
    label: str,
    runbook_file: Path,
    inventory: Path,
    assignments: list[str],
    roles: list[Path],
    work: Path,
    reps: int,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    state = work / "state"
    project = work / "project"
    env = base_env(RUNBOOK_STATE_DIR=str(state), RUNBOOK_ROLES_PATH=":".join(str(r) for r in roles[:-1]))
    params = [x for a in assignments for x in ("-p", a)]
    run([RUNBOOK, "render", runbook_file, "-o", project, *params], env=env).check("runbook render")
    runbook_argv: list[str | Path] = [RUNBOOK, "run", runbook_file, "-i", inventory, *params, "--json"]
    plain_argv: list[str | Path] = [ANSIBLE_PLAYBOOK, "-i", inventory, "main.yml", "-e", "@params.yml"]
    plain_env = base_env()
    last: dict[str, Any] = {}
    timelines: list[dict[str, float]] = []

    def runbook() -> float:
        timed = run_json_events(runbook_argv, env=env).check(f"{label}: runbook run")
        last["runbook_events"] = [e for _, e in timed.events if e.get("event") in ("step_result", "run_end")]
        timelines.append(phases(event_times(timed)))
        return timed.seconds

    def plain() -> float:
        timed = run(plain_argv, env=plain_env, cwd=project).check(f"{label}: ansible-playbook")
        last["plain_recap_changed"] = recap_changed(timed.stdout)
        return timed.seconds

    progress(f"  {label}: warm-up (one of each, not counted)")
    warm = {"runbook_s": round(runbook(), 3), "plain_s": round(plain(), 3)}
    timelines.clear()
    samples = alternate({"runbook": runbook, "plain": plain}, reps, progress=progress, label=f"{label} ")
    progress(f"  {label}: one more runbook run in-process, timing what the runner adds")
    profile = profile_run(runbook_file, inventory, assignments, roles, work / "state-profile")
    rb, pl = summary(samples["runbook"]), summary(samples["plain"])
    added = None if rb["median_s"] is None or pl["median_s"] is None else round(rb["median_s"] - pl["median_s"], 3)
    return {
        "runbook_file": str(runbook_file.relative_to(PRODUCT_ROOT))
        if runbook_file.is_relative_to(PRODUCT_ROOT)
        else runbook_file.name,
        "inventory": str(inventory),
        "params": assignments,
        "warm_up": warm,
        "runbook": rb,
        "plain": pl,
        "ratio_of_medians": ratio(rb["median_s"], pl["median_s"]),
        "paired_ratio": paired_ratios(samples["runbook"], samples["plain"]),
        "added_s": added,
        "plain_recap_changed_last": last.get("plain_recap_changed"),
        "runbook_events_last": [
            {k: e.get(k) for k in ("event", "step_id", "host", "status", "changed", "duration_s")}
            for e in last.get("runbook_events", [])
        ],
        "runbook_timeline_median_s": {
            k: round(statistics.median(t[k] for t in timelines if k in t), 3)
            for k in PHASES
            if any(k in t for t in timelines)
        },
        "profile": profile,
    }


def local_case(reps: int, progress: Callable[[str], None]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-overhead-local-") as tmp:
        work = Path(tmp)
        runbook_file = work / "bench-overhead.yml"
        runbook_file.write_text(FIXTURE_RUNBOOK, encoding="utf-8")
        inventory = local_inventory(work / "inventory.yml", 2, work / "locks")
        data = measure_case(
            "local", runbook_file, inventory, [f"out={work / 'out'}"], [FIXTURE_ROLES, ROLES_DIR], work, reps, progress
        )
        data["hosts"] = 2
        data["inventory"] = "2 hosts like tests/fixtures/local-inventory.yml (connection local, own lease dirs)"
        return data


def lab_case(reps: int, progress: Callable[[str], None]) -> dict[str, Any]:
    with labuse.exclusive(progress=progress):
        labuse.up(progress)
        labuse.reset(progress)
        with tempfile.TemporaryDirectory(prefix="bench-overhead-lab-") as tmp:
            data = measure_case("lab", DEPLOY, LAB_INVENTORY, ["version=v1"], [ROLES_DIR], Path(tmp), reps, progress)
        data["hosts"] = 2
        data["inventory"] = str(LAB_INVENTORY.relative_to(PRODUCT_ROOT))
        return data


# ----------------------------------------------------------------------------------------------------- main


def describe(case: dict[str, Any]) -> str:
    parts = case["profile"]["parts_s"]
    lease = sum(v for k, v in parts.items() if k.startswith("lease "))
    reports = sum(parts.get(k, 0.0) for k in ("journal", "history", "report.json/.md", "report.html/junit"))
    return (
        f"runbook {fmt_s(case['runbook']['median_s'])} vs ansible-playbook {fmt_s(case['plain']['median_s'])} "
        f"(+{case['added_s']:.1f} s; leases {lease:.1f} s, journal+history+reports {reports:.2f} s)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.runner_overhead", description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--only", choices=["lab", "local"], default=None)
    args = parser.parse_args(argv)
    reps = max(1, args.reps)
    data: dict[str, Any] = {"benchmark": NAME, **machine(), "reps": reps, "cases": {}}
    status = 0
    cases: list[tuple[str, Callable[[int, Callable[[str], None]], dict[str, Any]]]] = [
        ("local", local_case),
        ("lab", lab_case),
    ]
    for name, fn in cases:
        if args.only and args.only != name:
            continue
        print(f"runner_overhead: {name}", flush=True)
        try:
            data["cases"][name] = fn(reps, lambda line: print(line, flush=True))
        except (LabError, labuse.LabBusy) as exc:
            data["cases"][name] = {"skipped": str(exc)}
            print(f"  {name}: skipped: {exc}", file=sys.stderr)
            status = 1
    json_path = write_json(NAME, data)
    for name, case in data["cases"].items():
        row = f"{NAME}.{name}"
        if "skipped" in case:
            continue
        what = "deploy.yml v1 (no-op) on app1+app2 over SSH" if name == "lab" else "2 fixture steps x 2 local hosts"
        detail = (
            f"{what}; median of {case['runbook']['n']} alternating runs each, paired ratio "
            f"{fmt_x(case['paired_ratio']['median'])}; {describe(case)}"
        )
        ours, plain, found = case["runbook"]["median_s"], case["plain"]["median_s"], case["ratio_of_medians"]
        update_row(
            row,
            f"runbook/plain {fmt_x(found)} ({fmt_s(ours)} vs {fmt_s(plain)})",
            f"≤ {GOAL_RATIO:.2f}x (leases included)",
            None if found is None else found <= GOAL_RATIO,
            str(data["measured_at"])[:10],
            detail,
        )
        if ours is not None and plain is not None:
            record_latest(row, ours, plain, GOAL_RATIO, detail)
        print(f"  {name}: {describe(case)}; ratio {fmt_x(case['ratio_of_medians'])}")
        print("    runbook run timeline (medians of the timed runs):")
        for part, seconds in case["runbook_timeline_median_s"].items():
            print(f"      {part:<55} {seconds:7.3f} s")
        print("    in-process run, time inside each part:")
        for part, seconds in case["profile"]["parts_s"].items():
            print(f"      {part:<45} {seconds:7.3f} s")
    print(f"runner_overhead: {json_path}")
    return status


if __name__ == "__main__":
    sys.exit(main())
