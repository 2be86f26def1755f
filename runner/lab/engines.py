"""The lab's own dockerd engines (main runs the hosts, each app host has its own): where they are, starting,
answering, stopping, and clearing what a dead one left."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner import safe_write
from runner.errors import LabError
from runner.lab import leftovers
from runner.lab.layout import APP_HOSTS, DOCKERD_TIMEOUT, STOP_TIMEOUT, Progress, cgroup_parent, run_dir, state_dir
from runner.lab.preflight import need
from runner.processes import pid_alive, terminate

_DOCKERDS: dict[str, subprocess.Popen[bytes]] = {}  # the dockerds this process started (reaped on stop)
_DAEMON_CONFIG = {"log-driver": "json-file", "log-opts": {"max-size": "10m", "max-file": "2"}}


@dataclass(frozen=True)
class Engine:
    name: str  # "main" or an app host
    socket: Path
    pidfile: Path
    data_root: Path
    exec_root: Path
    log: Path


def engine(name: str) -> Engine:
    run = run_dir()
    sock_dir = run if name == "main" else run / name
    return Engine(
        name=name,
        socket=sock_dir / "docker.sock",
        pidfile=sock_dir / "docker.pid",
        data_root=state_dir() / "engines" / name,
        exec_root=run / "exec" / name,
        log=state_dir() / "logs" / f"dockerd-{name}.log",
    )


def all_engines() -> list[Engine]:
    return [engine("main"), *(engine(h) for h in APP_HOSTS)]


def docker_host(app_host: str) -> str:
    """The Docker endpoint of an app host's own engine, usable from the machine."""
    if app_host not in APP_HOSTS:
        raise LabError(f"{app_host!r} has no Docker engine of its own; app hosts are {', '.join(APP_HOSTS)}")
    return f"unix://{engine(app_host).socket}"


def main_docker_host() -> str:
    """The Docker endpoint of the engine that runs the lab hosts themselves."""
    return f"unix://{engine('main').socket}"


def client(eng: Engine, timeout: int = 120) -> Any:
    import docker  # imported lazily: `runbook` without the lab must not need it

    try:
        return docker.DockerClient(base_url=f"unix://{eng.socket}", version="auto", timeout=timeout)
    except docker.errors.DockerException as exc:
        raise LabError(f"cannot talk to the lab's {eng.name} dockerd at {eng.socket}: {exc}") from None


@contextlib.contextmanager
def connected(name: str) -> Iterator[Any]:
    """A Docker client of one lab engine, closed afterwards."""
    docker_client = client(engine(name))
    try:
        yield docker_client
    finally:
        docker_client.close()


def engine_alive(eng: Engine) -> bool:
    if not eng.socket.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(3)
        try:
            s.connect(str(eng.socket))
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return b" 200 " in s.recv(64)
        except OSError:
            return False


def read_pid(pidfile: Path) -> int | None:
    """The pid in an engine's pidfile if that process still runs."""
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def start_engine(eng: Engine, progress: Progress) -> None:
    if engine_alive(eng) or _answers_after_all(eng):
        return
    _clear_dead_engine(eng, progress)
    progress(f"starting dockerd ({eng.name}) on {eng.socket}")
    proc = _launch(eng)
    deadline = time.monotonic() + DOCKERD_TIMEOUT
    while time.monotonic() < deadline:
        if engine_alive(eng):
            return
        if proc.poll() is not None:
            raise LabError(f"dockerd ({eng.name}) failed to start: {last_error(eng.log)} (log: {eng.log})")
        time.sleep(0.2)
    raise LabError(
        f"dockerd ({eng.name}) did not answer on {eng.socket} within {int(DOCKERD_TIMEOUT)} s (log: {eng.log})"
    )


def _answers_after_all(eng: Engine) -> bool:
    """A dockerd of ours that does not answer: wait a little for it, else end it (False: start a new one)."""
    pid = read_pid(eng.pidfile)
    if pid is None:
        return False
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not engine_alive(eng):
        time.sleep(0.5)
    if engine_alive(eng):
        return True
    terminate(pid, STOP_TIMEOUT)
    return False


def _launch(eng: Engine) -> subprocess.Popen[bytes]:
    dockerd = need("dockerd", "docker.io")
    for d in (eng.socket.parent, eng.data_root, eng.exec_root, eng.log.parent):
        d.mkdir(parents=True, exist_ok=True)
    eng.socket.unlink(missing_ok=True)
    eng.pidfile.unlink(missing_ok=True)
    config = eng.exec_root.parent / f"daemon-{eng.name}.json"
    safe_write.write_text(config, json.dumps(_DAEMON_CONFIG), mode=0o644)
    argv = [
        dockerd,
        "--host", f"unix://{eng.socket}",
        "--bridge=none",
        "--iptables=false",
        "--ip6tables=false",
        "--ip-forward=false",
        "--ip-masq=false",
        "--userland-proxy=false",
        "--data-root", str(eng.data_root),
        "--exec-root", str(eng.exec_root),
        "--pidfile", str(eng.pidfile),
        "--cgroup-parent", f"/{cgroup_parent()}/{eng.name}",
        "--config-file", str(config),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "XDG_RUNTIME_DIR")}
    with open(eng.log, "ab") as log:
        proc = _DOCKERDS[eng.name] = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=env,
        )
    return proc


def _clear_dead_engine(eng: Engine, progress: Progress) -> None:
    """What a dockerd that died leaves behind: its containers (holding the lab's ports), its containerd and
    shims, mounts and a stale containerd pidfile (which a new dockerd would trust)."""
    orphans = leftovers.cgroup_pids(eng.name)
    if orphans:
        progress(f"ending {len(orphans)} leftover processes of {eng.name}'s containers")
        leftovers.kill_all(orphans)
    for pid in leftovers.lab_processes(str(eng.exec_root) + "/"):
        terminate(pid, 5)
    leftovers.unmount_all(str(eng.exec_root))
    shutil.rmtree(eng.exec_root, ignore_errors=True)


def last_error(log: Path) -> str:
    """The line of a dockerd log that says why it did not start."""
    try:
        lines = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    for line in reversed(lines[-40:]):
        if "level=fatal" in line or "level=error" in line or "failed to start" in line:
            msg = line.split('msg="', 1)[-1].rstrip('"')
            return msg[:300]
    return lines[-1][:300] if lines else "no output"


def stop_engine(eng: Engine, progress: Progress) -> None:
    pid = read_pid(eng.pidfile)
    if pid is not None:
        progress(f"stopping dockerd ({eng.name})")
        terminate(pid, STOP_TIMEOUT)
    proc = _DOCKERDS.pop(eng.name, None)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    eng.socket.unlink(missing_ok=True)
    eng.pidfile.unlink(missing_ok=True)
