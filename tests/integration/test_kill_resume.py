"""Kill the control node at random moments, resume, and check the end state from outside.

`runbook run` is killed (SIGKILL) at a moment drawn from a seeded RNG over the run's measured duration (counted
from the moment its run directory exists); its `runbook resume RUN --yes` is killed the same way, and the resume
of that one (CHAIN kills in a row at most), then the last resume finishes the run. Four families, KILLS kills
each: the image rollback (app1, app2), a restore by swap and in place (a scratch database on db, never `shop`),
the blue/green switch and the config rollback (lb). After each chain the end state is read on the hosts: the
image each app host runs, the rows of the scratch database against the backup (and, in place, the one safety
backup, of the damaged state), the colour the upstream serves, the bytes of the site configuration. A watcher
polls the app hosts' engines through the image trials: at no moment may a host have no container of the service
(the old one renamed aside counts: it is what a swap puts back).

The restore family runs beside the others (its host, db, is no other family's); the image family runs before the
lb families, whose checks through the lb need the backends it breaks on purpose.
RUNBOOK_KILL_SEED and RUNBOOK_KILLS_PER_FAMILY change the draw (default 14 kills per family).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import docker
import pytest
from labtools import INVENTORY, RUNBOOK, get_json, host_sh, lb_status, pg, run, shop_copy

from runner import lab as lab_module

pytestmark = pytest.mark.lab

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "runner" / "collections"))  # the ops modules, as a library

SEED = int(os.environ.get("RUNBOOK_KILL_SEED", "20261202"))
KILLS = int(os.environ.get("RUNBOOK_KILLS_PER_FAMILY", "14"))
ROOT = Path(__file__).resolve().parents[2]
APP_HOSTS = ("app1", "app2")
SERVICE = "backend"
SERVICE_NAMES = {SERVICE, f"{SERVICE}--runbook-old", f"{SERVICE}--runbook-new"}
LEDGER = f"/var/lib/runbook/releases/{SERVICE}.json"
SCRATCH = "rbkill_shop"
BACKUPS = f"/var/backups/runbook/postgres/{SCRATCH}"
UPSTREAM_FILE = "/etc/nginx/conf.d/upstream-backend.conf"
COLOURS = {"blue": ["127.0.10.11:8080"], "green": ["127.0.10.12:8080"]}
SITE = "/etc/nginx/conf.d/runbook-lab.conf"
DEAD_PROXY = "127.0.10.99:9"
CHAIN = 3  # kills in a row before the last resume: a resume of a resume of a resume is resumed too
SEEN: list[str] = []  # one line per chain, printed at the end


# --------------------------------------------------------------------------------------- runs, kills, resumes


@dataclass
class Killed:
    run_dir: Path
    killed: bool  # False: the run ended before the moment drawn
    at_s: float  # when, counted from the moment the run directory existed
    rc: int | None  # its exit status when it ended by itself
    last_records: list[str] = field(default_factory=list)

    def describe(self) -> str:
        journal = ", ".join(self.last_records) or "nothing"
        if self.killed:
            return f"killed at {self.at_s:.2f}s (journal ended with {journal})"
        return f"ended by itself ({self.rc}) before {self.at_s:.2f}s"


def _new_run_dir(runs: Path, before: set[str], proc: subprocess.Popen[bytes], timeout: float = 120) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if runs.is_dir():
            for path in runs.iterdir():
                if path.name not in before and (path / "journal.jsonl").exists():
                    return path
        if proc.poll() is not None:
            raise AssertionError(f"`runbook` exited ({proc.returncode}) before its journal existed")
        time.sleep(0.01)
    raise AssertionError("no run directory appeared")


def kill_at(state: Path, argv: list[str], delay: float) -> Killed:
    """Start `runbook ARGV`, SIGKILL it `delay` seconds after its run directory appeared (unless it ended)."""
    runs = state / "runs"
    before = {p.name for p in runs.iterdir()} if runs.is_dir() else set()
    with (state / "runs.log").open("ab") as log:
        proc = subprocess.Popen([str(RUNBOOK), *argv], stdout=log, stderr=log, cwd=ROOT,
                                env={**os.environ, "RUNBOOK_STATE_DIR": str(state)})  # fmt: skip
    try:
        run_dir = _new_run_dir(runs, before, proc)
    except AssertionError as exc:
        raise AssertionError(f"runbook {' '.join(argv)}: {exc}: {(state / 'runs.log').read_text()[-1500:]}") from None
    began = time.monotonic()
    try:
        rc: int | None = proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        rc = None
    lines = [json.loads(line) for line in (run_dir / "journal.jsonl").read_text().splitlines() if line.endswith("}")]
    return Killed(run_dir, rc is None, round(time.monotonic() - began, 2), rc, [r["kind"] for r in lines[-3:]])


def finish(state: Path, killed: Killed) -> None:
    """`runbook resume RUN --yes` to the end: the resumed run must succeed."""
    proc = subprocess.run([str(RUNBOOK), "resume", killed.run_dir.name, "--yes"], capture_output=True, text=True,
                          env={**os.environ, "RUNBOOK_STATE_DIR": str(state)}, timeout=600, check=False)  # fmt: skip
    assert proc.returncode == 0, f"resume of {killed.run_dir.name} ({killed.describe()}): {proc.stdout}{proc.stderr}"


@dataclass
class Family:
    """One runbook family's kills: each chain kills the run, then (while kills are due, CHAIN in a row at most)
    its resume, then resumes to the end; the moments come from the family's own seeded RNG over its measured
    duration."""

    name: str
    runbook: str
    state: Path
    duration: float = 0.0
    kills: int = 0
    chains: int = 0
    rng: random.Random = field(default_factory=random.Random)
    began: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        self.rng = random.Random(f"{SEED}-{self.name}")

    def summary(self) -> str:
        return (f"{self.name}: {self.kills} kills in {self.chains} chains, {time.monotonic() - self.began:.0f}s "
                f"(runs of {self.duration:.1f}s left alone)")

    def measure(self, args: list[str]) -> None:
        """Seconds from the run directory's creation to the end of a run left alone (it must succeed)."""
        ran = kill_at(self.state, self.run_argv(args), 3600)
        assert ran.rc == 0, (self.state / "runs.log").read_text()[-3000:]
        self.duration = ran.at_s

    def run_argv(self, args: list[str]) -> list[str]:
        return ["run", f"runbooks/{self.runbook}.yml", "-i", INVENTORY, "--yes", *args]

    def due(self) -> bool:
        assert self.chains <= 3 * KILLS, f"{self.name}: {self.kills} kills in {self.chains} chains"
        return self.kills < KILLS

    def chain(self, args: list[str]) -> str:
        self.chains += 1
        steps, last = [], kill_at(self.state, self.run_argv(args), self.moment())
        while last.killed:
            self.kills += 1
            steps.append(last.describe())
            if not self.due() or len(steps) >= CHAIN:
                finish(self.state, last)
                steps.append("resumed to the end")
                return "; its resume ".join(steps[:-1]) + "; " + steps[-1]
            last = kill_at(self.state, ["resume", last.run_dir.name, "--yes"], self.moment())
        assert last.rc == 0, f"{self.name}: {last.run_dir.name} exited {last.rc}"
        steps.append(last.describe())
        return "; its resume ".join(steps)

    def moment(self) -> float:
        return round(self.rng.uniform(0.0, self.duration), 2)

    def note(self, how: str, end: str) -> None:
        line = f"{self.name:<16} {how}; end state: {end}"
        SEEN.append(line)
        print(line, flush=True)


# ------------------------------------------------------------------------------------------- the watcher


class ContainerWatch:
    """Polls each app host's engine: the containers of the service that exist, and whether one runs."""

    def __init__(self) -> None:
        self.clients = {h: docker.DockerClient(base_url=lab_module.docker_host(h), timeout=10) for h in APP_HOSTS}
        self.stop = threading.Event()
        self.samples = 0
        self.missing: list[str] = []
        self.longest_idle: dict[str, float] = dict.fromkeys(APP_HOSTS, 0.0)
        self._idle_since: dict[str, float | None] = dict.fromkeys(APP_HOSTS)
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self.stop.is_set():
            for host, client in self.clients.items():
                found = client.api.containers(all=True, filters={"name": SERVICE})
                mine = [c for c in found if {n.lstrip("/") for n in c["Names"]} & SERVICE_NAMES]
                now = time.monotonic()
                if not mine:
                    self.missing.append(f"{host} at {time.strftime('%H:%M:%S')}")
                running, since = any(c["State"] == "running" for c in mine), self._idle_since[host]
                if running and since is not None:
                    self.longest_idle[host] = round(max(self.longest_idle[host], now - since), 2)
                    self._idle_since[host] = None
                elif not running and since is None:
                    self._idle_since[host] = now
            self.samples += 1
            time.sleep(0.05)

    def __enter__(self) -> ContainerWatch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        for client in self.clients.values():
            client.close()


# ---------------------------------------------------------------------------------- the families' states


def running_image(host: str) -> tuple[str, bool]:
    client = docker.DockerClient(base_url=lab_module.docker_host(host), timeout=30)
    try:
        attrs = client.api.inspect_container(SERVICE)
    finally:
        client.close()
    return str(attrs["Config"]["Image"]), bool(attrs["State"]["Running"])


def put_v2_in_place(ledgers: dict[str, str]) -> None:
    """The incident: v2 runs on both app hosts and is the current release of their ledgers (v1 verified before)."""
    from ansible_collections.runbook.ops.plugins.module_utils.docker_api import DockerClient
    from ansible_collections.runbook.ops.plugins.modules.container_swap import Swapper

    for host in APP_HOSTS:
        host_sh(host, f"cat > {LEDGER}", stdin=ledgers[host])
        params = {"name": SERVICE, "image": "lab/backend:v2", "tag": None, "image_id": None, "pull": False,
                  "wait_healthy": 0, "stop_timeout": 5}
        Swapper(DockerClient(lab_module.docker_host(host)), params, False).run()


def image_end_state() -> str:
    states = {host: running_image(host) for host in APP_HOSTS}
    for host, (image, up) in states.items():
        address = "127.0.10.11" if host == "app1" else "127.0.10.12"
        assert image.endswith(":v1") and up, (host, image, up)
        assert get_json(f"http://{address}:8080/health") == (200, {"status": "ok", "version": "v1"}), host
    return ", ".join(f"{h} runs {image}" for h, (image, _) in states.items())


TABLES = ("orders", "wallet", "events")


def checksums(db: str) -> dict[str, tuple[int, str] | None]:
    out: dict[str, tuple[int, str] | None] = {}
    with pg(db) as conn:
        for table in TABLES:
            if conn.execute("SELECT to_regclass(%s)", (f"public.{table}",)).fetchone() == (None,):
                out[table] = None
                continue
            row = conn.execute(
                f"SELECT count(*), coalesce(md5(string_agg(t::text, ',' ORDER BY id)), '') FROM {table} t"
            ).fetchone()
            assert row is not None
            out[table] = (int(row[0]), str(row[1]))
    return out


def damage(db: str, trial: int) -> None:
    with pg(db) as conn:
        conn.execute(f"DELETE FROM orders WHERE id % 3 = {trial % 3}")
        conn.execute("UPDATE wallet SET balance_cents = balance_cents + 1")


def safety_manifests() -> list[str]:
    return sorted(n for n in host_sh("db", f"ls {BACKUPS}").split() if "-safety-" in n and n.endswith(".manifest.json"))


def upstream_servers() -> list[str]:
    text = host_sh("lb", f"cat {UPSTREAM_FILE}")
    return [line.split()[1].rstrip(";") for line in text.splitlines() if line.strip().startswith("server ")]


def bad_change() -> None:
    host_sh("lb", f"sed -i 's#proxy_pass http://backend;#proxy_pass http://{DEAD_PROXY};#' {SITE} && nginx -s reload")
    for _ in range(50):
        if lb_status() == 502:
            return
        time.sleep(0.1)
    raise AssertionError("the bad change did not take effect")


# ----------------------------------------------------------------------------------------------- families


def image_family(base: Path) -> None:
    family = Family("image rollback", "backend-image-rollback", base / "image")
    assert run(family.state, "deploy", "-p", "version=v1").returncode == 0  # v1 verified in every ledger
    breaker = family.state / "break.yml"
    breaker.write_text(
        "apiVersion: runbook/v1\nkind: Runbook\nmetadata: {name: break-backend}\nspec:\n  steps:\n"
        f"    - {{id: swap, hosts: app, uses: image_swap, with: {{container: {SERVICE}, to: v2}}}}\n"
    )
    assert run(family.state, str(breaker)).returncode == 0
    ledgers = {host: host_sh(host, f"cat {LEDGER}") for host in APP_HOSTS}
    family.measure([])
    image_end_state()
    with ContainerWatch() as watch:
        while family.due():
            put_v2_in_place(ledgers)
            family.note(family.chain([]), image_end_state())
    assert watch.samples > 100 and watch.missing == [], watch.missing
    SEEN.append(f"image rollback: {watch.samples} polls of both engines, never without a {SERVICE} container; "
                f"longest stretch with none running (s): {watch.longest_idle}")
    SEEN.append(family.summary())


def restore_family(base: Path, db: str) -> None:
    family = Family("restore", "postgres-restore", base / "restore")
    assert run(family.state, "postgres-backup", "-p", f"database={db}").returncode == 0
    good = checksums(db)
    damage(db, 0)
    family.measure(["-p", f"database={db}", "-p", "mode=in_place"])
    assert checksums(db) == good
    while family.due():
        mode = "swap" if family.chains % 2 else "in_place"
        damage(db, family.chains + 1)
        damaged, safety_before = checksums(db), safety_manifests()
        how = family.chain(["-p", f"database={db}", "-p", f"mode={mode}"])
        assert checksums(db) == good, (mode, how)
        end = f"{db} rows equal the backup ({mode})"
        if mode == "in_place":
            new = [m for m in safety_manifests() if m not in safety_before]
            assert len(new) == 1, new  # never a second "safety" copy of a half-restored database
            tables = json.loads(host_sh("db", f"cat {BACKUPS}/{new[0]}"))["tables"]
            assert tables["public.orders"] == damaged["orders"][0], (tables, damaged)  # type: ignore[index]
            end += ", one safety backup, of the damaged state"
        family.note(how, end)
    SEEN.append(family.summary())


def blue_green_family(base: Path) -> None:
    family = Family("blue/green", "blue-green-rollback", base / "blue-green")
    family.measure(["-p", "to=blue"])
    assert upstream_servers() == COLOURS["blue"]
    while family.due():
        colour = "green" if family.chains % 2 == 0 else "blue"
        how = family.chain(["-p", f"to={colour}"])
        assert upstream_servers() == COLOURS[colour], (colour, how)
        assert lb_status() == 200
        family.note(how, f"upstream serves {colour}")
    SEEN.append(family.summary())


def config_family(base: Path) -> None:
    family = Family("config rollback", "config-rollback", base / "config")
    good_site = host_sh("lb", f"cat {SITE}")
    assert run(family.state, "config-snapshot").returncode == 0
    bad_change()
    family.measure(["-p", "version=previous"])
    assert host_sh("lb", f"cat {SITE}") == good_site
    while family.due():
        bad_change()
        how = family.chain(["-p", "version=previous"])
        assert host_sh("lb", f"cat {SITE}") == good_site, how
        assert lb_status() == 200
        family.note(how, "site configuration byte for byte the known-good one")
    SEEN.append(family.summary())


# ------------------------------------------------------------------------------------------------- the test


@pytest.fixture
def scratch_db(fresh_lab: object) -> Iterator[str]:
    shop_copy(SCRATCH)
    with pg(SCRATCH) as conn:  # ballast, so a restore takes long enough to be killed in the middle of
        conn.execute("CREATE TABLE events AS SELECT g AS id, md5(g::text) AS payload FROM generate_series(1, 200000) g")
        conn.execute("ALTER TABLE events ADD PRIMARY KEY (id)")
    host_sh("db", f"rm -rf {BACKUPS}")
    yield SCRATCH
    with pg() as conn:
        for (name,) in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (SCRATCH + "%",)):
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    host_sh("db", f"rm -rf {BACKUPS}")


def test_killed_at_random_moments_then_resumed_ends_as_the_runbook_intends(scratch_db: str, tmp_path: Path) -> None:
    started = time.monotonic()
    lanes: list[Callable[[], None]] = [
        lambda: (image_family(tmp_path), blue_green_family(tmp_path), config_family(tmp_path)),
        lambda: restore_family(tmp_path, scratch_db),
    ]
    try:
        with ThreadPoolExecutor(max_workers=len(lanes)) as pool:
            for done in [pool.submit(lane) for lane in lanes]:
                done.result()
    finally:
        kills = sum(line.count("killed at") for line in SEEN if "end state: " in line)
        print(f"\n{kills} kills in {time.monotonic() - started:.0f}s (seed {SEED}):", *SEEN, sep="\n")
        ends = Counter(line.rsplit("end state: ", 1)[-1] for line in SEEN if "end state: " in line)
        print("end states seen:", *(f"  {count} x {end}" for end, count in sorted(ends.items())), sep="\n")
    assert kills == 4 * KILLS
