"""module_utils/host_work: a module's work on a host ends at its deadline or when it is orphaned, its whole process
tree with it, and the state it leaves is recorded; modules/work_state finds what is left of a run and ends it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from opsmodule import COLLECTIONS
from opsmodule import load as _load

work_state = _load("work_state")

from ansible_collections.runbook.ops.plugins.module_utils import host_work  # noqa: E402

TREE = "sleep 60 & sleep 60 & wait"  # a leader with two children, all in the leader's process group


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def gone_within(pgid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not group_alive(pgid):
            return True
        time.sleep(0.05)
    return not group_alive(pgid)


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(host_work, "TERM_GRACE_S", 0.5)
    monkeypatch.setattr(host_work, "CLEANUP_S", 1.0)


def test_a_subprocess_tree_is_ended_at_the_deadline(tmp_path: Path) -> None:
    work = host_work.HostWork("test", timeout_s=0.5, run_id="r1", host="h1", directory=str(tmp_path), poll_s=0.05)
    work.start()
    started = time.monotonic()
    proc = work.popen(["sh", "-c", TREE])
    assert os.getpgid(proc.pid) == proc.pid  # a group of its own
    proc.wait(timeout=10)
    assert time.monotonic() - started < 3
    assert gone_within(proc.pid, 3)  # the children too, not only the leader
    assert work.reason == host_work.TIMEOUT
    with pytest.raises(host_work.WorkStopped, match=r"stopped at its timeout \(0.5s\)"):
        work.check()
    work.finish(True, "stopped", live_database="dropped")
    state = json.loads((tmp_path / "r1" / "h1.json").read_text())
    assert state["status"] == "ended" and state["stopped"] == "timeout" and state["pid"] == os.getpid()
    assert state["left"] == {"live_database": "dropped"} and state["failed"] is True


@pytest.mark.usefixtures("fast")
def test_a_group_that_ignores_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    work = host_work.HostWork("test", timeout_s=0.3, run_id="", poll_s=0.05).start()
    proc = work.popen(["sh", "-c", "trap '' TERM; sleep 60 & wait; sleep 60"])
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    assert gone_within(proc.pid, 3)
    work.finish(True, "")


@pytest.mark.usefixtures("fast")
def test_orphaned_work_is_ended_and_cleanup_started_after_the_stop_is_bounded(tmp_path: Path) -> None:
    orphan = {"now": False}
    work = host_work.HostWork("test", run_id="", orphaned=lambda: orphan["now"], poll_s=0.05).start()
    proc = work.popen(["sleep", "60"])
    time.sleep(0.3)
    assert proc.poll() is None and not work.stopped  # no deadline: only being orphaned stops it
    orphan["now"] = True
    proc.wait(timeout=5)
    assert work.reason == host_work.ORPHANED
    cleanup = work.popen(["sleep", "60"])  # e.g. dropping a temporary database after the stop: allowed, bounded
    cleanup.wait(timeout=10)
    assert cleanup.returncode is not None
    work.finish(True, "")


def test_sleep_wakes_up_at_the_deadline_and_says_why() -> None:
    work = host_work.HostWork("test", timeout_s=0.4, run_id="", poll_s=0.05).start()
    started = time.monotonic()
    with pytest.raises(host_work.WorkStopped, match="timeout"):
        while True:
            work.sleep(10)
    assert time.monotonic() - started < 2
    assert work.remaining() == 0.0
    work.finish(True, "")


def test_stdout_with_no_reader_means_orphaned() -> None:
    read_end, write_end = os.pipe()
    try:
        assert host_work.stdout_unread(write_end) is False
        os.close(read_end)
        assert host_work.stdout_unread(write_end) is True
    finally:
        os.close(write_end)
    assert host_work.orphan_detector(parent=os.getppid() + 100000)() is True  # the parent changed


MODULE_SCRIPT = """
import sys, time
sys.path.insert(0, {collections!r})
from ansible_collections.runbook.ops.plugins.module_utils import host_work
work = host_work.start_work("pg_restore_backup", {{}})
proc = host_work.tracked_popen(["sh", "-c", {tree!r}])
work.note(live_database="dropped")
print(proc.pid, flush=True)
proc.wait()
work.finish(True, "the restore " + work.describe(), live_database="partial")
"""


@pytest.mark.parametrize("how", ["stdout closed", "work_state"])
def test_a_module_whose_session_is_gone_ends_its_tree_and_records_what_it_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """As when `runbook run` is cancelled: the ssh channel closes (the module's stdout loses its reader), or the
    runner's runbook.ops.work_state tells the run's processes that the run is gone."""
    script = tmp_path / "module.py"
    script.write_text(textwrap.dedent(MODULE_SCRIPT.format(collections=str(COLLECTIONS), tree=TREE)))
    run = f"run-{uuid.uuid4().hex}"
    monkeypatch.setenv("RUNBOOK_WORK_DIR", str(tmp_path / "work"))
    env = dict(os.environ, RUNBOOK_WORK=run, RUNBOOK_WORK_HOST="db")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    pgid = int(proc.stdout.readline())
    state_file = tmp_path / "work" / run / "db.json"
    assert json.loads(state_file.read_text())["left"] == {"live_database": "dropped"}
    assert group_alive(pgid)
    if how == "stdout closed":
        proc.stdout.close()  # the session that started it is gone
    else:
        said = work_state.run({"run_id": run, "host": "db", "wait": 10})
        assert said["ended"] is True and "the run that started it is gone" in said["msg"]
        assert said["state"]["left"] == {"live_database": "partial"}
    assert proc.wait(timeout=10) == 0
    assert gone_within(pgid, 3)
    state = json.loads(state_file.read_text())
    assert state["status"] == "ended" and state["stopped"] == "orphaned"
    assert state["left"] == {"live_database": "partial"}
    assert "the run that started it is gone" in state["msg"]
    assert oct(state_file.stat().st_mode & 0o777) == "0o600"


# ------------------------------------------------------------------------------------------------ work_state


def start_marked(run_id: str, host: str, command: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, RUNBOOK_WORK=run_id, RUNBOOK_WORK_HOST=host)
    return subprocess.Popen(["sh", "-c", command], env=env, start_new_session=True)


def end_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_work_state_finds_the_runs_processes_and_ends_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(work_state, "TERM_GRACE_S", 0.5)
    run, other = f"run-{uuid.uuid4().hex}", f"run-{uuid.uuid4().hex}"
    ours = start_marked(run, "local1", "trap '' HUP TERM; sleep 60")  # deaf to being told: killed
    other_host = start_marked(run, "local2", "sleep 60")
    other_run = start_marked(other, "local1", "sleep 60")
    try:
        time.sleep(0.2)
        found = work_state.work_processes(run, "local1")
        assert ours.pid in found and len(found) == 2  # the shell and its sleep, which inherited the variables
        result = work_state.run({"run_id": run, "host": "local1", "wait": 0.3, "dir": str(tmp_path)})
        assert result["ended"] is True and result["changed"] is True
        assert [p["pid"] for p in result["ended_processes"]] == found
        assert "ended 2 process(es) of the run" in result["msg"]
        ours.wait(timeout=5)
        assert other_host.poll() is None and other_run.poll() is None
    finally:
        for proc in (ours, other_host, other_run):
            end_group(proc)


def test_work_state_in_check_mode_only_looks(tmp_path: Path) -> None:
    run = f"run-{uuid.uuid4().hex}"
    proc = start_marked(run, "h", "sleep 60")
    try:
        time.sleep(0.2)
        result = work_state.run({"run_id": run, "host": "h", "wait": 0, "dir": str(tmp_path)}, check_mode=True)
        assert result["ended"] is False and proc.poll() is None
        assert result["processes"][0]["pid"] == proc.pid and "NOT confirmed ended" in result["msg"]
    finally:
        end_group(proc)


def test_a_module_killed_before_it_recorded_its_end_is_recorded_as_killed(tmp_path: Path) -> None:
    path = host_work.state_path("run-4", "db", str(tmp_path))
    state: dict[str, Any] = {"module": "pg_restore_backup", "status": "running", "pid": 2**22 + 7,
                             "left": {"live_database": "dropped"}}
    assert host_work.write_state(path, state)
    result = work_state.run({"run_id": "run-4", "host": "db", "wait": 0, "dir": str(tmp_path)})
    assert result["ended"] is True
    assert result["state"]["status"] == "ended" and result["state"]["stopped"] == "killed"
    assert result["state"]["left"] == {"live_database": "dropped"}
    assert json.loads(Path(path).read_text())["status"] == "ended"
    assert "was killed before it recorded its end" in result["msg"]


def test_without_a_run_id_nothing_is_known() -> None:
    result = work_state.run({"run_id": "", "wait": 0}, check_mode=False)
    assert result["ended"] is False and "not known" in result["msg"]


def test_every_module_of_the_host_work_group_takes_the_deadline() -> None:
    import yaml

    runtime = yaml.safe_load((COLLECTIONS / "ansible_collections/runbook/ops/meta/runtime.yml").read_text())
    for name in runtime["action_groups"]["host_work"]:
        option = yaml.safe_load(_load(name).DOCUMENTATION)["options"]["runbook_timeout"]
        assert (option["type"], option["default"]) == ("float", 0.0), name


class SessionsClient:
    """What end_lost_sessions asks the server, answered: sessions of this host's `runbook` clients."""

    def __init__(self, sessions: list[list[Any]]) -> None:
        self.sessions = sessions
        self.sql: list[str] = []

    def query_json(self, database: str, sql: str, what: str = "") -> Any:
        self.sql.append(sql)
        return self.sessions

    def psql(self, database: str, sql: str, what: str = "") -> str:
        self.sql.append(sql)
        return ""


def test_server_sessions_whose_client_is_gone_are_ended(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pg_dump ended while it waited on a lock leaves its session waiting: it is ended, a live client's is not."""
    from ansible_collections.runbook.ops.plugins.module_utils import pg_common

    tcp = tmp_path / "tcp"
    tcp.write_text(
        "  sl  local_address rem_address   st\n"
        "   0: 1500007F:D431 1500007F:1538 01\n"  # 54321 -> 5432, established: a live client
        "   1: 1500007F:D432 1500007F:1538 06\n"  # 54322: TIME_WAIT, its client is gone
    )
    real = pg_common.established_ports
    monkeypatch.setattr(pg_common, "established_ports", lambda: real((str(tcp),)))
    client = SessionsClient([[101, 54321], [102, 54322], [103, None]])
    assert pg_common.end_lost_sessions(client, 1700000000.5) == [102]
    assert "client_addr = inet_client_addr()" in client.sql[0] and "to_timestamp(1700000000)" in client.sql[0]
    assert client.sql[1] == "SELECT pg_terminate_backend(pid) FROM unnest(ARRAY[102]) pid;"
    assert pg_common.end_lost_sessions(SessionsClient([]), 0) == []


def test_a_swap_stopped_after_the_old_container_stopped_puts_it_back_and_says_what_runs() -> None:
    """container_swap with its time up during the health wait: the old container runs again, and it says so."""
    from test_ops_modules import CONTAINER_ID, engine, params, swap

    eng = engine()
    eng.health_after_start = "starting"
    work = host_work.HostWork("container_swap", timeout_s=0.3, run_id="", poll_s=0.05).start()
    sw = swap.Swapper(eng, params(wait_healthy=60), check_mode=False, sleep=lambda s: time.sleep(0.05), work=work)
    with pytest.raises(swap.SwapFailed) as failed:
        sw.run()
    work.finish(True, "")
    assert failed.value.restored and "stopped at its timeout (0.3s)" in failed.value.message
    assert "restored the old container (lab/backend:v1)" in failed.value.message
    assert eng.names == {"backend": CONTAINER_ID} and eng.containers[CONTAINER_ID]["State"]["Running"] is True
    assert work.left == {"container": "backend", "running": "lab/backend:v1"}
