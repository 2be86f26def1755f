"""Image rollback: the SEV1 runbook vs the floor, on the same lab host (app1), side by side.

    python -m bench.image_rollback [--reps N]

Starting state of every repetition: app1's `backend` runs lab/backend:v2 (its /health answers 500), v1 is the last
release verified healthy. Contenders, alternated (A B, B A, ...):

- runbook: `runbook run runbooks/backend-image-rollback.yml -i inventories/lab/hosts.yml --limit app1`
  (assess, swap to the previous verified release, verify /health) - the whole command, as the on-call engineer
  runs it. v2 is put in place first by the image_swap role itself, run with plain ansible-playbook, like the
  molecule drill (molecule/sev1-image-rollback/converge.yml: a deploy of v1, then include_role image_swap to v2).
- floor: what it takes at the very least, from the machine through app1's own Docker engine:
  `docker stop backend`, `docker rm backend`, `docker run` (the same spec as the lab's, image v1), then the first
  `GET /health` answering 200, polled every 50 ms. v2 is put in place first by the same docker commands.

Reports the median wall time of each, the ratio runbook/floor, and where the runbook's time goes (its steps from
report.json, and the runner's own phases from the --json event stream).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench import labuse
from bench.measure import (
    ANSIBLE_PLAYBOOK,
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
    run_dir_of,
    run_json_events,
    summary,
    task_times,
)
from bench.results import record_latest, update_row, write_json
from bench.runner_overhead import PHASES, phases
from runner import lab
from runner.errors import LabError
from runner.paths import COLLECTIONS_DIR, PRODUCT_ROOT, ROLES_DIR

NAME = "image_rollback"
USES_LAB = True
GOAL_OVER_FLOOR_S = 2.0  # the SEV1 rollback within 2 s of docker stop + rm + run + first healthy probe
HOST = "app1"
ROLLBACK = PRODUCT_ROOT / "runbooks" / "backend-image-rollback.yml"
DEPLOY = PRODUCT_ROOT / "runbooks" / "deploy.yml"
POLL_S = 0.05
HEALTH_TIMEOUT_S = 60.0

SWAP_PLAYBOOK = """\
# Put a release in place with the image_swap role itself, without waiting for health (as the drill does).
- name: The bad release reaches production
  hosts: app
  gather_facts: false
  tasks:
    - name: Swap to the release
      ansible.builtin.include_role:
        name: image_swap
      vars:
        image_swap_container: backend
        image_swap_to: "{{ bench_release }}"
"""

ANSIBLE_CFG = f"""\
[defaults]
roles_path = {ROLES_DIR}
collections_path = {COLLECTIONS_DIR}
gathering = explicit
host_key_checking = False
interpreter_python = auto_silent
retry_files_enabled = False

[ssh_connection]
pipelining = True
ssh_args = -o ControlMaster=auto -o ControlPersist=120s -o ServerAliveInterval=15
"""


def health(address: str, timeout: float = 1.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://{address}:{lab.APP_PORT}/health", timeout=timeout) as resp:
            return int(resp.status), resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return int(exc.code), ""
    except OSError:
        return 0, ""


def serving(address: str) -> str:
    """The version /health reports ('' when it does not answer 200)."""
    code, body = health(address, timeout=3)
    if code != 200:
        return ""
    try:
        return str(json.loads(body).get("version", ""))
    except ValueError:
        return ""


class Floor:
    """docker stop + rm + run (the lab's spec) + first healthy /health, through the host's engine."""

    def __init__(self, host: str) -> None:
        self.address = lab.LAB_HOSTS[host]
        self.env = base_env(DOCKER_HOST=lab.docker_host(host))
        self.parts: list[dict[str, float]] = []

    def run_argv(self, version: str) -> list[str]:
        return [
            "docker", "run", "-d", "--name", lab.APP_CONTAINER, "--network", "host",
            "--restart", "unless-stopped",
            "-e", f"APP_LISTEN={self.address}:{lab.APP_PORT}", "-e", "APP_ENV=lab",
            "--label", f"{lab.LABEL}=1",
            "--health-cmd", "wget -q -O- http://$APP_LISTEN/health", "--health-interval", "2s",
            f"{lab.APP_IMAGE}:{version}",
        ]  # fmt: skip

    def docker(self, *args: str) -> float:
        return run(["docker", *args], env=self.env, timeout=120).check(f"docker {args[0]}").seconds

    def replace(self, version: str) -> dict[str, float]:
        stop = self.docker("stop", lab.APP_CONTAINER)
        rm = self.docker("rm", lab.APP_CONTAINER)
        start = run(self.run_argv(version), env=self.env, timeout=120).check("docker run").seconds
        return {"docker stop": stop, "docker rm": rm, "docker run": start}

    def put_v2(self) -> None:
        self.replace("v2")
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        while health(self.address)[0] != 500:  # v2 up (and failing its health check) before the floor starts
            if time.monotonic() > deadline:
                raise RuntimeError("floor: v2 did not come up")
            time.sleep(0.1)

    def rollback(self) -> float:
        start = time.perf_counter()
        parts = self.replace("v1")
        healthy_from = time.perf_counter()
        polls = 0
        while True:
            polls += 1
            code, _ = health(self.address, timeout=1.0)
            if code == 200:
                break
            if time.perf_counter() - healthy_from > HEALTH_TIMEOUT_S:
                raise RuntimeError(f"floor: {HOST} not healthy within {HEALTH_TIMEOUT_S:.0f} s after docker run")
            time.sleep(POLL_S)
        end = time.perf_counter()
        parts["first healthy /health"] = end - healthy_from
        parts["polls"] = polls
        self.parts.append(parts)
        return end - start


class Product:
    """The SEV1 runbook on one host; v2 put in place by the image_swap role with plain ansible-playbook."""

    def __init__(self, host: str, work: Path) -> None:
        self.host = host
        self.address = lab.LAB_HOSTS[host]
        self.work = work
        self.env = base_env(RUNBOOK_STATE_DIR=str(work / "state"))
        (work / "prep").mkdir(parents=True, exist_ok=True)
        (work / "prep" / "ansible.cfg").write_text(ANSIBLE_CFG, encoding="utf-8")
        (work / "prep" / "swap.yml").write_text(SWAP_PLAYBOOK, encoding="utf-8")
        self.runs: list[dict[str, Any]] = []

    def put(self, release: str) -> None:
        argv: list[str | Path] = [ANSIBLE_PLAYBOOK, "-i", LAB_INVENTORY, "swap.yml", "--limit", self.host]
        argv += ["-e", f"bench_release={release}"]
        run(argv, env=base_env(), cwd=self.work / "prep", timeout=300).check(f"image_swap to {release}")

    def put_v2(self) -> None:
        self.put("v2")
        if health(self.address)[0] != 500:
            raise RuntimeError("runbook: v2 is not what app1 serves after the image_swap")

    def deploy_v1(self) -> None:
        argv: list[str | Path] = [
            RUNBOOK,
            "run",
            DEPLOY,
            "-i",
            LAB_INVENTORY,
            "-p",
            "version=v1",
            "-p",
            "reason=bench warm-up",
        ]
        run(argv, env=self.env, timeout=600).check("deploy v1 (warm-up)")

    def rollback(self) -> float:
        argv: list[str | Path] = [
            RUNBOOK,
            "run",
            ROLLBACK,
            "-i",
            LAB_INVENTORY,
            "--limit",
            self.host,
            "-p",
            "reason=bench",
            "--json",
        ]
        timed = run_json_events(argv, env=self.env, timeout=900).check("backend-image-rollback")
        entry: dict[str, Any] = {"seconds": timed.seconds, "phases": phases(event_times(timed))}
        run_dir = run_dir_of(timed)
        if run_dir is not None and (run_dir / "report.json").is_file():
            report = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
            entry["report_duration_s"] = report.get("duration_s")
            entry["steps"] = {s["id"]: s["duration_s"] for s in report.get("steps", []) if s.get("host") == self.host}
            entry["hosts"] = report.get("hosts")
            entry["status"] = report.get("status")
        if run_dir is not None:
            tasks, _ = task_times(run_dir)
            entry["tasks"] = {}
            for task in tasks:
                key = f"{task.play.split(':')[0].removeprefix('Step ')}: {task.task}"
                entry["tasks"][key] = entry["tasks"].get(key, 0.0) + task.seconds
        self.runs.append(entry)
        return timed.seconds


def median_of(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [float(r[key]) for r in rows if isinstance(r.get(key), int | float)]
    return round(statistics.median(values), 3) if values else None


def tasks_median(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Median seconds of every task (step: task) over the runs, slowest first."""
    keys = {k for r in runs for k in r.get("tasks", {})}
    med = {k: round(statistics.median(r.get("tasks", {}).get(k, 0.0) for r in runs), 3) for k in keys}
    return dict(sorted(med.items(), key=lambda kv: -kv[1]))


def measure(reps: int, progress: Callable[[str], None]) -> dict[str, Any]:
    with labuse.exclusive(progress=progress), tempfile.TemporaryDirectory(prefix="bench-rollback-") as tmp:
        labuse.up(progress)
        labuse.reset(progress)
        product, floor = Product(HOST, Path(tmp)), Floor(HOST)
        progress("  warm-up: deploy v1 with the runbook (v1 becomes the last verified release)")
        product.deploy_v1()
        progress("  warm-up: one of each, not counted")
        product.put_v2()
        warm_product = product.rollback()
        floor.put_v2()
        warm_floor = floor.rollback()
        product.runs.clear()
        floor.parts.clear()
        samples = alternate(
            {"runbook": product.rollback, "floor": floor.rollback},
            reps,
            before_each={"runbook": product.put_v2, "floor": floor.put_v2},
            progress=progress,
        )
        final = serving(lab.LAB_HOSTS[HOST])
        # leave the lab as the runbook expects it: v1 running and verified
        product.deploy_v1()
    rb, fl = summary(samples["runbook"]), summary(samples["floor"])
    steps: dict[str, list[float]] = {}
    for entry in product.runs:
        for step, seconds in (entry.get("steps") or {}).items():
            steps.setdefault(step, []).append(float(seconds))
    return {
        "host": HOST,
        "warm_up": {"runbook_s": round(warm_product, 3), "floor_s": round(warm_floor, 3)},
        "runbook": rb,
        "floor": fl,
        "ratio_of_medians": ratio(rb["median_s"], fl["median_s"]),
        "paired_ratio": paired_ratios(samples["runbook"], samples["floor"]),
        "runbook_steps_median_s": {k: round(statistics.median(v), 3) for k, v in steps.items()},
        "runbook_report_duration_median_s": median_of(product.runs, "report_duration_s"),
        "runbook_timeline_median_s": {
            k: round(statistics.median(r["phases"][k] for r in product.runs if k in r["phases"]), 3)
            for k in PHASES
            if any(k in r["phases"] for r in product.runs)
        },
        "runbook_status": sorted({str(r.get("status")) for r in product.runs}),
        "runbook_tasks_median_s": tasks_median(product.runs),
        "floor_parts_median_s": {
            k: round(statistics.median(float(p[k]) for p in floor.parts), 3)
            for k in ("docker stop", "docker rm", "docker run", "first healthy /health", "polls")
        },
        "serving_after": final,
        "runbook_budget_s": 300,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.image_rollback", description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args(argv)
    reps = max(1, args.reps)
    data: dict[str, Any] = {"benchmark": NAME, **machine(), "reps": reps}
    try:
        data.update(measure(reps, lambda line: print(line, flush=True)))
    except (LabError, labuse.LabBusy) as exc:
        data["skipped"] = str(exc)
        write_json(NAME, data)
        print(f"image_rollback: skipped: {exc}", file=sys.stderr)
        return 1
    json_path = write_json(NAME, data)
    rb, fl = data["runbook"]["median_s"], data["floor"]["median_s"]
    steps = ", ".join(f"{k} {v:.1f} s" for k, v in data["runbook_steps_median_s"].items())
    fp = data["floor_parts_median_s"]
    met = rb is not None and fl is not None and rb <= fl + GOAL_OVER_FLOOR_S
    detail = (
        f"app1 v2 -> v1, median of {reps} alternating runs each, paired ratio "
        f"{fmt_x(data['paired_ratio']['median'])}; runbook steps: {steps}; floor: stop {fp['docker stop']:.2f} s + "
        f"rm {fp['docker rm']:.2f} s + run {fp['docker run']:.2f} s + "
        f"healthy after {fp['first healthy /health']:.2f} s"
    )
    update_row(
        NAME,
        f"runbook/floor {fmt_x(data['ratio_of_medians'])} ({fmt_s(rb)} vs {fmt_s(fl)})",
        f"≤ floor + {GOAL_OVER_FLOOR_S:.0f} s",
        met,
        str(data["measured_at"])[:10],
        detail,
    )
    if rb is not None and fl:
        # as a ratio to the floor, the goal is (floor + 2 s) / floor
        record_latest(NAME, rb, fl, (fl + GOAL_OVER_FLOOR_S) / fl, detail)
    print(
        f"image_rollback: runbook {fmt_s(rb)} vs floor {fmt_s(fl)}: {fmt_x(data['ratio_of_medians'])}; "
        f"runbook steps {steps}; floor parts {fp}; {json_path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
