"""The local lab: real hosts in containers on a project-owned Docker engine (DESIGN section 7).

Layout on the machine (state survives `down`, runtime does not):

    /var/lib/runbook-lab/          ($RUNBOOK_LAB_DIR)
        ssh/id_ed25519             the key Ansible and `runbook lab ssh` use (root on every host)
        cache/host-<recipe>.tar    the debootstrapped host root filesystem (built once)
        cache/app-<recipe>/        the fixture application's root filesystems (backend-v1.tar, backend-v2.tar)
        engines/<engine>/          dockerd data roots: main (the lab hosts), app1, app2 (each app host's engine)
        hostfiles/                 mounted read-only at /etc/runbook-lab in every host (init script, seed, key)
        logs/                      dockerd logs
    /run/runbook-lab/              ($RUNBOOK_LAB_RUN_DIR)
        docker.sock, docker.pid    the main engine
        <app>/docker.sock          an app host's engine, the directory mounted into that host
        exec/<engine>/             dockerd exec roots (with their own containerd)

Every container uses the machine's network namespace; each host's daemons bind to its own loopback address.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from runner.errors import LabError

LAB_HOSTS: dict[str, str] = {
    "app1": "127.0.10.11",
    "app2": "127.0.10.12",
    "db": "127.0.10.21",
    "backup": "127.0.10.31",
    "lb": "127.0.10.41",
}
APP_HOSTS: tuple[str, ...] = ("app1", "app2")
SSH_PORT = 2222
APP_PORT = 8080
LB_PORT = 8080
PG_PORT = 5432
REDIS_PORT = 6379
DB_USER = "lab"
DB_PASSWORD = "lab"
DB_NAME = "shop"

HOST_IMAGE = "runbook-lab/host:bookworm"
APP_IMAGE = "lab/backend"
APP_VERSIONS: tuple[str, ...] = ("v1", "v2")
APP_CONTAINER = "backend"
CONTAINER_PREFIX = "runbook-lab-"
LABEL = "runbook.lab"
RELEASES_DIR = "/var/lib/runbook/releases"
CGROUP_PARENT = "runbook-lab"  # the lab's containers live in /<controller>/runbook-lab/<engine>/<id>

RECIPES_DIR = Path(__file__).resolve().parents[2] / "lab"
HOST_RECIPE = ("build-host-image.sh",)
APP_RECIPE = ("build-app-images.sh", "app/server.c")
HOST_FILES = ("host-init.sh", "shop-seed.sql")

DOCKERD_TIMEOUT = 60.0
HOST_TIMEOUT = 120.0
APP_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0

Progress = Callable[[str], None]
_P = ParamSpec("_P")
_R = TypeVar("_R")


def _one_line(text: object) -> str:
    return " ".join(str(text).split())[:400]


def _reported(func: Callable[_P, _R]) -> Callable[_P, _R]:
    """Whatever goes wrong underneath (a file system, the Docker API) reaches the user as one LabError line."""

    @functools.wraps(func)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return func(*args, **kwargs)
        except LabError as exc:
            raise LabError(_one_line(exc)) from None
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            raise LabError(f"lab {func.__name__}: {exc.strerror or exc}{where}") from None
        except Exception as exc:
            import docker

            if isinstance(exc, docker.errors.DockerException):
                raise LabError(f"lab {func.__name__}: Docker engine error: {_one_line(exc)}") from None
            raise

    return wrapper


_DOCKERDS: dict[str, subprocess.Popen[bytes]] = {}  # the dockerds this process started (reaped on stop)


@dataclass
class HostStatus:
    name: str
    address: str
    container: str  # "running", "exited", "created", "absent" (or "unknown" when the engine is down)
    ssh_ok: bool


@dataclass
class LabStatus:
    daemon_running: bool
    image_built: bool
    hosts: list[HostStatus] = field(default_factory=list)
    ssh_key: Path = field(default_factory=lambda: ssh_key_path())

    @property
    def ready(self) -> bool:
        return self.daemon_running and all(h.container == "running" and h.ssh_ok for h in self.hosts)


# --------------------------------------------------------------------------------------------------- paths


def state_dir() -> Path:
    return Path(os.environ.get("RUNBOOK_LAB_DIR") or "/var/lib/runbook-lab")


def run_dir() -> Path:
    return Path(os.environ.get("RUNBOOK_LAB_RUN_DIR") or "/run/runbook-lab")


def ssh_key_path() -> Path:
    return state_dir() / "ssh" / "id_ed25519"


def docker_host(app_host: str) -> str:
    """The Docker endpoint of an app host's own engine, usable from the machine."""
    if app_host not in APP_HOSTS:
        raise LabError(f"{app_host!r} has no Docker engine of its own; app hosts are {', '.join(APP_HOSTS)}")
    return f"unix://{_engine(app_host).socket}"


def main_docker_host() -> str:
    """The Docker endpoint of the engine that runs the lab hosts themselves."""
    return f"unix://{_engine('main').socket}"


@dataclass(frozen=True)
class _Engine:
    name: str  # "main" or an app host
    socket: Path
    pidfile: Path
    data_root: Path
    exec_root: Path
    log: Path


def _engine(name: str) -> _Engine:
    run = run_dir()
    sock_dir = run if name == "main" else run / name
    return _Engine(
        name=name,
        socket=sock_dir / "docker.sock",
        pidfile=sock_dir / "docker.pid",
        data_root=state_dir() / "engines" / name,
        exec_root=run / "exec" / name,
        log=state_dir() / "logs" / f"dockerd-{name}.log",
    )


def _cgroup_parent() -> str:
    """One cgroup subtree per lab (a lab with another RUNBOOK_LAB_RUN_DIR must not touch this one's)."""
    if run_dir() == Path("/run/runbook-lab"):
        return CGROUP_PARENT
    return f"{CGROUP_PARENT}-{hashlib.sha256(str(run_dir()).encode()).hexdigest()[:8]}"


def _engines() -> list[_Engine]:
    return [_engine("main"), *(_engine(h) for h in APP_HOSTS)]


# ---------------------------------------------------------------------------------------------- public API


@_reported
def up(progress: Progress = print) -> LabStatus:
    """Bring the lab up (idempotent: only what is missing is built, started or created)."""
    return _bring_up(progress, fresh=False)


def _bring_up(progress: Progress, fresh: bool) -> LabStatus:
    _preflight()
    with _locked():
        _prepare_dirs()
        _ensure_ssh_key(progress)
        _sync_host_files()
        for eng in _engines():
            _start_engine(eng, progress)
        main = _client(_engine("main"))
        try:
            _ensure_host_image(main, progress)
            if fresh:
                for name in APP_HOSTS:
                    client = _client(_engine(name))
                    try:
                        _remove_containers(client, None, progress)
                        with contextlib.suppress(Exception):
                            client.volumes.prune()
                        _prune_dangling(client)
                    finally:
                        client.close()
                _remove_containers(main, LABEL, progress)
                _prune_dangling(main)  # host images of an older recipe
            _ensure_app_images(main, progress)  # (again after a drill retagged lab/backend:*)
            created = _ensure_hosts(main, progress)
            _wait_hosts(main, created, progress)
            started = _ensure_backends(progress)
            _wait_backends(started, progress)
        finally:
            main.close()
        # under the lock: another process's reset must not run between the work and this check
        st = status()
    bad = [h.name for h in st.hosts if not (h.container == "running" and h.ssh_ok)]
    if bad:
        raise LabError(f"lab hosts not reachable over ssh: {', '.join(bad)}; run `runbook lab reset`")
    return st


@_reported
def down(progress: Progress = print) -> None:
    """Remove every lab container, stop every lab dockerd, unmount and remove the runtime directory."""
    _require_root()
    with _locked():
        for eng in reversed(_engines()):  # app engines first: their containers, then the hosts
            if _engine_alive(eng):
                client = _client(eng)
                label = None if eng.name != "main" else LABEL
                _remove_containers(client, label, progress)
                client.close()
            _stop_engine(eng, progress)
        _cleanup_runtime(progress)
    progress("lab is down")


@_reported
def status() -> LabStatus:
    main = _engine("main")
    alive = _engine_alive(main)
    image_built = any(state_dir().glob("cache/host-*.tar"))
    containers: dict[str, str] = {}
    if alive:
        client = _client(main)
        try:
            image_built = image_built or _image_exists(client, HOST_IMAGE)
            for c in client.containers.list(all=True, filters={"label": LABEL}):
                containers[c.name] = str(c.status)
        finally:
            client.close()

    def one(name: str) -> HostStatus:
        state = containers.get(CONTAINER_PREFIX + name, "absent") if alive else "absent"
        ok = _ssh_ok(name, timeout=5)
        return HostStatus(name=name, address=LAB_HOSTS[name], container=state, ssh_ok=ok)

    with ThreadPoolExecutor(max_workers=len(LAB_HOSTS)) as pool:
        hosts = list(pool.map(one, LAB_HOSTS))
    return LabStatus(daemon_running=alive, image_built=image_built, hosts=hosts, ssh_key=ssh_key_path())


@_reported
def reset(progress: Progress = print) -> LabStatus:
    """Back to the initial state: hosts recreated from the cached image, backends on v1, shop reseeded."""
    st = _bring_up(progress, fresh=True)
    progress("lab reset to its initial state")
    return st


def ssh(host: str, command: list[str]) -> int:
    """Open a shell on a lab host (no command) or run a command there; returns the exit status.

    Several words are quoted for the remote shell (`["echo", "a b"]` prints `a b`); a single word is passed
    as a shell command line (`["docker ps | wc -l"]`), like ssh does.
    """
    if host not in LAB_HOSTS:
        raise LabError(f"unknown lab host {host!r}; hosts are {', '.join(LAB_HOSTS)}")
    if not ssh_key_path().exists():
        raise LabError("the lab has no SSH key yet: run `runbook lab up` first")
    _need("ssh", "openssh-client")
    argv = _ssh_argv(host, interactive=not command)
    if not command:
        return subprocess.call(argv)
    remote = command[0] if len(command) == 1 else shlex.join(command)
    return subprocess.call([*argv, "--", remote])


def ssh_argv(host: str) -> list[str]:
    """The ssh command line (without the remote command) that reaches a lab host as root."""
    return _ssh_argv(host, interactive=False)


# ----------------------------------------------------------------------------------------------- preflight


def _require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (it starts dockerd and builds images): run it as root or with sudo")


def _need(binary: str, package: str) -> str:
    path = shutil.which(binary) or next(
        (str(p) for d in ("/usr/sbin", "/sbin", "/usr/bin") if (p := Path(d) / binary).exists()), None
    )
    if not path:
        raise LabError(f"`{binary}` not found: install it with `apt-get install -y {package}`")
    return path


def _preflight() -> None:
    _require_root()
    _need("dockerd", "docker.io")
    _need("containerd", "containerd")
    _need("runc", "runc")
    _need("docker-init", "tini")
    _need("ssh", "openssh-client")
    _need("ssh-keygen", "openssh-client")
    if not any(state_dir().glob("cache/host-*.tar")):
        _need("debootstrap", "debootstrap")


def _docker_cli() -> Path:
    """The machine's docker client, mounted read-only into every host (Debian's docker.io ships it)."""
    for cand in ("/usr/bin/docker", shutil.which("docker")):
        if cand and Path(cand).exists():
            return Path(cand).resolve()
    raise LabError("`docker` client not found: install it with `apt-get install -y docker.io`")


def _check_ports_free(names: list[str]) -> None:
    for name in names:
        addr = LAB_HOSTS[name]
        ports = [SSH_PORT]
        if name in APP_HOSTS:
            ports.append(APP_PORT)
        elif name == "db":
            ports += [PG_PORT, REDIS_PORT]
        elif name == "lb":
            ports.append(LB_PORT)
        for port in ports:
            if name in APP_HOSTS and port == APP_PORT:
                continue  # the app host's backend may run already (its engine outlives the host container)
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                # like the daemons do: connections in TIME_WAIT do not block a new listener
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((addr, port))
                except OSError as exc:
                    raise LabError(
                        f"{addr}:{port} (lab host {name}) is already in use by another process: "
                        f"stop it (see `ss -ltnp`) and run `runbook lab up` again ({exc.strerror})"
                    ) from None


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    state_dir().mkdir(parents=True, exist_ok=True)
    with open(state_dir() / "lab.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _prepare_dirs() -> None:
    for d in ("ssh", "cache", "engines", "hostfiles", "logs"):
        (state_dir() / d).mkdir(parents=True, exist_ok=True)
    (state_dir() / "ssh").chmod(0o700)
    run_dir().mkdir(parents=True, exist_ok=True)
    for name in APP_HOSTS:
        (run_dir() / name).mkdir(exist_ok=True)


def _ensure_ssh_key(progress: Progress) -> None:
    key = ssh_key_path()
    if key.exists() and key.with_suffix(".pub").exists():
        return
    progress(f"generating the lab SSH key {key}")
    key.unlink(missing_ok=True)
    key.with_suffix(".pub").unlink(missing_ok=True)
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "runbook-lab", "-f", str(key)], "ssh-keygen")
    key.chmod(0o600)


def _sync_host_files() -> None:
    dest = state_dir() / "hostfiles"
    for name in HOST_FILES:
        src = RECIPES_DIR / name
        data = src.read_bytes()
        target = dest / name
        if not target.exists() or target.read_bytes() != data:
            tmp = target.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.chmod(0o755 if name.endswith(".sh") else 0o644)
            tmp.replace(target)
    pub = ssh_key_path().with_suffix(".pub").read_bytes()
    keys = dest / "authorized_keys"
    if not keys.exists() or keys.read_bytes() != pub:
        keys.write_bytes(pub)
        keys.chmod(0o644)


def _run(argv: list[str], what: str, timeout: float = 600) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise LabError(f"{what}: `{argv[0]}` not found") from None
    except subprocess.TimeoutExpired:
        raise LabError(f"{what} did not finish within {int(timeout)} s") from None
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        raise LabError(f"{what} failed: {lines[-1] if lines else f'exit status {proc.returncode}'}")
    return proc.stdout


# ------------------------------------------------------------------------------------------------- engines


def _client(eng: _Engine, timeout: int = 120) -> Any:
    import docker  # imported lazily: `runbook` without the lab must not need it

    try:
        return docker.DockerClient(base_url=f"unix://{eng.socket}", version="auto", timeout=timeout)
    except docker.errors.DockerException as exc:
        raise LabError(f"cannot talk to the lab's {eng.name} dockerd at {eng.socket}: {exc}") from None


def _engine_alive(eng: _Engine) -> bool:
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


def _read_pid(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _pid_alive(pid) else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (our own exited child) counts as gone
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def _start_engine(eng: _Engine, progress: Progress) -> None:
    if _engine_alive(eng):
        return
    dockerd = _need("dockerd", "docker.io")
    pid = _read_pid(eng.pidfile)
    if pid is not None:  # a dockerd of ours that does not answer: wait a little, then replace it
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not _engine_alive(eng):
            time.sleep(0.5)
        if _engine_alive(eng):
            return
        _terminate(pid, STOP_TIMEOUT)
    _clear_dead_engine(eng, progress)
    progress(f"starting dockerd ({eng.name}) on {eng.socket}")
    for d in (eng.socket.parent, eng.data_root, eng.exec_root, eng.log.parent):
        d.mkdir(parents=True, exist_ok=True)
    eng.socket.unlink(missing_ok=True)
    eng.pidfile.unlink(missing_ok=True)
    config = eng.exec_root.parent / f"daemon-{eng.name}.json"
    config.write_text(json.dumps({"log-driver": "json-file", "log-opts": {"max-size": "10m", "max-file": "2"}}))
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
        "--cgroup-parent", f"/{_cgroup_parent()}/{eng.name}",
        "--config-file", str(config),
    ]  # fmt: skip
    env = {**os.environ, "DOCKER_HOST": "", "XDG_RUNTIME_DIR": ""}
    env.pop("DOCKER_HOST")
    env.pop("XDG_RUNTIME_DIR")
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
    deadline = time.monotonic() + DOCKERD_TIMEOUT
    while time.monotonic() < deadline:
        if _engine_alive(eng):
            return
        if proc.poll() is not None:
            raise LabError(f"dockerd ({eng.name}) failed to start: {_last_error(eng.log)} (log: {eng.log})")
        time.sleep(0.2)
    raise LabError(
        f"dockerd ({eng.name}) did not answer on {eng.socket} within {int(DOCKERD_TIMEOUT)} s (log: {eng.log})"
    )


def _clear_dead_engine(eng: _Engine, progress: Progress) -> None:
    """What a dockerd that died leaves behind: its containers (holding the lab's ports), its containerd and
    shims, mounts and a stale containerd pidfile (which a new dockerd would trust)."""
    orphans = _cgroup_pids(eng.name)
    if orphans:
        progress(f"ending {len(orphans)} leftover processes of {eng.name}'s containers")
        for pid in orphans:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    for pid in _lab_processes(str(eng.exec_root) + "/"):
        _terminate(pid, 5)
    for mp in _lab_mounts(str(eng.exec_root)):
        subprocess.run(["umount", "-l", mp], capture_output=True, check=False)
    shutil.rmtree(eng.exec_root, ignore_errors=True)


def _last_error(log: Path) -> str:
    try:
        lines = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    for line in reversed(lines[-40:]):
        if "level=fatal" in line or "level=error" in line or "failed to start" in line:
            msg = line.split('msg="', 1)[-1].rstrip('"')
            return msg[:300]
    return lines[-1][:300] if lines else "no output"


def _terminate(pid: int, timeout: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _pid_alive(pid):
        time.sleep(0.1)


def _stop_engine(eng: _Engine, progress: Progress) -> None:
    pid = _read_pid(eng.pidfile)
    if pid is not None:
        progress(f"stopping dockerd ({eng.name})")
        _terminate(pid, STOP_TIMEOUT)
    proc = _DOCKERDS.pop(eng.name, None)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    eng.socket.unlink(missing_ok=True)
    eng.pidfile.unlink(missing_ok=True)


def _lab_processes(*markers: str) -> list[int]:
    """Processes left behind by lab engines (containerd, shims): their command line names a lab directory."""
    markers = markers or (str(run_dir()) + "/", str(state_dir() / "engines") + "/")
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(m in cmd for m in markers):
            found.append(int(proc.name))
    return found


def _lab_mounts(*roots: str) -> list[str]:
    roots = roots or (str(run_dir()), str(state_dir() / "engines"))
    points = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        parts = line.split()
        if len(parts) > 4:
            mp = parts[4].replace("\\040", " ")
            if any(mp == r or mp.startswith(r + "/") for r in roots):
                points.append(mp)
    return sorted(points, key=len, reverse=True)


def _lab_cgroups() -> list[Path]:
    """The lab's cgroup directories (every controller), deepest first."""
    root = Path("/sys/fs/cgroup")
    found: list[Path] = []
    parent = _cgroup_parent()
    for top in [root / parent, *root.glob(f"*/{parent}")]:
        if top.is_dir():
            found += [p for p in top.rglob("*") if p.is_dir()] + [top]
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def _cgroup_pids(engine: str | None = None) -> set[int]:
    pids: set[int] = set()
    for cg in _lab_cgroups():
        if engine is not None and engine not in cg.parts[cg.parts.index(_cgroup_parent()) :]:
            continue
        with contextlib.suppress(OSError, ValueError):
            pids |= {int(x) for x in (cg / "cgroup.procs").read_text().split()}
    return pids


def _cleanup_runtime(progress: Progress) -> None:
    # containers whose dockerd died: their processes are still in the lab's cgroups
    pids = _cgroup_pids()
    if pids:
        progress(f"ending {len(pids)} leftover lab container processes")
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    for pid in _lab_processes():
        progress(f"ending leftover lab process {pid}")
        _terminate(pid, 5)
    deadline = time.monotonic() + 10
    while _cgroup_pids() and time.monotonic() < deadline:
        time.sleep(0.1)
    for cg in _lab_cgroups():
        with contextlib.suppress(OSError):
            cg.rmdir()
    for mp in _lab_mounts():
        subprocess.run(["umount", "-l", mp], capture_output=True, check=False)
    left = _lab_mounts()
    if left:
        raise LabError(f"could not unmount {left[0]} (and {len(left) - 1} more): unmount it by hand")
    shutil.rmtree(run_dir(), ignore_errors=True)


# -------------------------------------------------------------------------------------------------- images


def _recipe_hash(files: tuple[str, ...]) -> str:
    h = hashlib.sha256()
    for name in files:
        h.update(name.encode() + b"\0" + (RECIPES_DIR / name).read_bytes() + b"\0")
    return h.hexdigest()[:12]


def _image_exists(client: Any, name: str) -> bool:
    import docker

    try:
        client.images.get(name)
    except docker.errors.ImageNotFound:
        return False
    return True


def _image_label(client: Any, name: str, key: str) -> str | None:
    import docker

    try:
        img = client.images.get(name)
    except docker.errors.ImageNotFound:
        return None
    labels = (img.attrs.get("Config") or {}).get("Labels") or {}
    value = labels.get(key)
    return str(value) if value is not None else None


def _import(client: Any, tarball: Path, name: str, changes: list[str]) -> None:
    repo, tag = name.rsplit(":", 1)
    try:
        out = client.api.import_image(src=str(tarball), repository=repo, tag=tag, changes=changes)
    except Exception as exc:
        raise LabError(f"docker import of {tarball} as {name} failed: {exc}") from None
    if "errorDetail" in str(out):
        raise LabError(f"docker import of {tarball} as {name} failed: {str(out).strip()[:300]}")


def _ensure_host_image(client: Any, progress: Progress) -> None:
    recipe = _recipe_hash(HOST_RECIPE)
    if _image_label(client, HOST_IMAGE, "runbook.lab.recipe") == recipe:
        return
    cache = state_dir() / "cache"
    tarball = cache / f"host-{recipe}.tar"
    if not tarball.exists():
        _need("debootstrap", "debootstrap")
        progress(f"building the lab host image with debootstrap (once; a few minutes) -> {tarball}")
        _run_streaming([str(RECIPES_DIR / "build-host-image.sh"), str(tarball)], "building the host image", progress)
        for old in cache.glob("host-*.tar"):
            if old != tarball:
                old.unlink()
    progress(f"importing {HOST_IMAGE}")
    _import(
        client,
        tarball,
        HOST_IMAGE,
        [
            'ENTRYPOINT ["/bin/bash", "/etc/runbook-lab/host-init.sh"]',
            "ENV LANG=C.UTF-8",
            f"LABEL runbook.lab.recipe={recipe}",
        ],
    )


def _run_streaming(argv: list[str], what: str, progress: Progress, timeout: float = 1800) -> None:
    tail: list[str] = []
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except OSError as exc:
        raise LabError(f"{what}: cannot run {argv[0]}: {exc.strerror}") from None
    assert proc.stdout is not None
    start = time.monotonic()
    for line in proc.stdout:
        line = line.rstrip()
        if line.startswith("[") and "]" in line:
            progress(line)
        tail = [*tail[-20:], line]
        if time.monotonic() - start > timeout:
            proc.kill()
            raise LabError(f"{what} did not finish within {int(timeout)} s")
    if proc.wait() != 0:
        last = next((t for t in reversed(tail) if t.strip()), f"exit status {proc.returncode}")
        raise LabError(f"{what} failed: {last}")


def _ensure_app_images(main: Any, progress: Progress) -> None:
    recipe = _recipe_hash(APP_RECIPE)
    if any(_image_label(main, f"{APP_IMAGE}:{v}", "runbook.lab.recipe") != recipe for v in APP_VERSIONS):
        outdir = state_dir() / "cache" / f"app-{recipe}"
        if not all((outdir / f"backend-{v}.tar").exists() for v in APP_VERSIONS):
            _need("cc", "gcc libc6-dev")
            _need("busybox", "busybox-static")
            progress("building the fixture app images lab/backend:v1 and :v2")
            outdir.mkdir(parents=True, exist_ok=True)
            _run([str(RECIPES_DIR / "build-app-images.sh"), str(outdir)], "building the fixture app")
            for old in (state_dir() / "cache").glob("app-*"):
                if old != outdir:
                    shutil.rmtree(old, ignore_errors=True)
        for v in APP_VERSIONS:
            _import(
                main,
                outdir / f"backend-{v}.tar",
                f"{APP_IMAGE}:{v}",
                [
                    'CMD ["/app/server"]',
                    "WORKDIR /app",
                    f"LABEL runbook.lab.recipe={recipe}",
                    f"LABEL org.opencontainers.image.version={v}",
                    "LABEL org.opencontainers.image.title=lab-backend",
                ],
            )
    for name in APP_HOSTS:
        client = _client(_engine(name))
        try:
            for v in APP_VERSIONS:
                ref = f"{APP_IMAGE}:{v}"
                want = main.images.get(ref).id
                try:
                    have = client.images.get(ref).id
                except Exception:
                    have = None
                if have == want:
                    continue
                progress(f"loading {ref} into {name}'s engine")
                data = main.api.get_image(ref)
                for msg in client.api.load_image(data):
                    if isinstance(msg, dict) and msg.get("error"):
                        raise LabError(f"loading {ref} into {name}'s engine failed: {msg['error']}")
        finally:
            client.close()


# --------------------------------------------------------------------------------------------------- hosts


def _ensure_hosts(main: Any, progress: Progress) -> list[str]:
    """Create (or recreate) every host container that is not running; returns the names created."""
    import docker

    existing: dict[str, Any] = {}
    for c in main.containers.list(all=True, filters={"label": LABEL}):
        existing[c.name] = c
    missing = []
    for name in LAB_HOSTS:
        c = existing.get(CONTAINER_PREFIX + name)
        if c is not None and c.status == "running":
            continue
        if c is not None:
            with contextlib.suppress(docker.errors.NotFound):
                c.remove(force=True)
        missing.append(name)
    if not missing:
        return []
    _check_ports_free(missing)
    hostfiles = state_dir() / "hostfiles"
    cli = _docker_cli()
    for name in missing:
        progress(f"starting lab host {name} ({LAB_HOSTS[name]})")
        volumes: dict[str, dict[str, str]] = {
            str(hostfiles): {"bind": "/etc/runbook-lab", "mode": "ro"},
            str(cli): {"bind": "/usr/bin/docker", "mode": "ro"},
        }
        if name in APP_HOSTS:
            sock_dir = run_dir() / name
            volumes[str(sock_dir)] = {"bind": f"/run/runbook-lab/{name}", "mode": "rw"}
        try:
            main.containers.run(
                HOST_IMAGE,
                name=CONTAINER_PREFIX + name,
                hostname=name,
                network_mode="host",
                init=True,
                detach=True,
                environment={"LAB_HOST": name, "LAB_ADDR": LAB_HOSTS[name]},
                labels={LABEL: "1", f"{LABEL}.host": name},
                extra_hosts=dict(LAB_HOSTS),  # the hosts know each other by name
                volumes=volumes,
                tmpfs={"/tmp": "rw,exec,mode=1777"},
                stop_signal="SIGTERM",
            )
        except docker.errors.DockerException as exc:
            raise LabError(f"cannot start lab host {name}: {exc}") from None
    return missing


def _prune_dangling(client: Any) -> None:
    with contextlib.suppress(Exception):
        client.images.prune(filters={"dangling": True})


def _exec_ok(container: Any, argv: list[str]) -> bool:
    try:
        code, _ = container.exec_run(argv)
    except Exception:
        return False
    return int(code) == 0


def _wait_hosts(main: Any, names: list[str], progress: Progress) -> None:
    import docker

    deadline = time.monotonic() + HOST_TIMEOUT
    if names:
        progress(f"waiting for {', '.join(names)}")
    pending = list(names or LAB_HOSTS)  # nothing created: check that every host still answers
    while pending:
        for name in list(pending):
            try:
                c = main.containers.get(CONTAINER_PREFIX + name)
            except docker.errors.NotFound:
                raise LabError(f"lab host {name} vanished while starting; run `runbook lab reset`") from None
            if c.status not in ("running", "created"):
                logs = c.logs(tail=5).decode(errors="replace").strip().splitlines()
                raise LabError(f"lab host {name} exited while starting: {logs[-1] if logs else c.status}")
            if not _exec_ok(c, ["test", "-e", "/run/runbook-lab.ready"]):
                continue
            if not _tcp_ok(LAB_HOSTS[name], SSH_PORT) or not _ssh_ok(name, timeout=10):
                continue
            if name == "db" and not _pg_ok():
                continue
            if name == "lb" and not _tcp_ok(LAB_HOSTS[name], LB_PORT):
                continue
            pending.remove(name)
        if not pending:
            return
        if time.monotonic() > deadline:
            raise LabError(
                f"lab hosts {', '.join(pending)} not ready within {int(HOST_TIMEOUT)} s "
                f"(see `docker -H {main_docker_host()} logs {CONTAINER_PREFIX}{pending[0]}`)"
            )
        time.sleep(0.3)


def _tcp_ok(addr: str, port: int, timeout: float = 2) -> bool:
    try:
        with socket.create_connection((addr, port), timeout=timeout):
            return True
    except OSError:
        return False


def _ssh_argv(host: str, interactive: bool) -> list[str]:
    return [
        "ssh",
        "-i", str(ssh_key_path()),
        "-p", str(SSH_PORT),
        "-o", "StrictHostKeyChecking=no",
        "-o", "UserKnownHostsFile=/dev/null",
        "-o", "LogLevel=ERROR",
        "-o", "IdentitiesOnly=yes",
        *(["-t"] if interactive else ["-o", "BatchMode=yes"]),
        f"root@{LAB_HOSTS[host]}",
    ]  # fmt: skip


def _ssh_ok(host: str, timeout: float) -> bool:
    if not ssh_key_path().exists() or not _tcp_ok(LAB_HOSTS[host], SSH_PORT, timeout=min(timeout, 2)):
        return False
    argv = [*_ssh_argv(host, interactive=False), "-o", f"ConnectTimeout={int(timeout)}", "true"]
    try:
        return subprocess.run(argv, capture_output=True, timeout=timeout + 5, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _pg_ok() -> bool:
    try:
        import psycopg
    except ImportError:
        return _tcp_ok(LAB_HOSTS["db"], PG_PORT)
    try:
        with psycopg.connect(
            host=LAB_HOSTS["db"],
            port=PG_PORT,
            user=DB_USER,
            password=DB_PASSWORD,
            dbname=DB_NAME,
            connect_timeout=3,
        ) as conn:
            conn.execute("SELECT count(*) FROM wallet").fetchone()
        return True
    except Exception:
        return False


def _remove_containers(client: Any, label: str | None, progress: Progress) -> None:
    import docker

    filters = {"label": label} if label else {}
    containers = client.containers.list(all=True, filters=filters)
    if containers:
        progress(f"removing {', '.join(c.name for c in containers)}")

    def rm(c: Any) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            c.remove(force=True)

    with ThreadPoolExecutor(max_workers=max(1, len(containers))) as pool:
        list(pool.map(rm, containers))


# ------------------------------------------------------------------------------------------------ backends


def _ensure_backends(progress: Progress) -> list[str]:
    """Start the `backend` service container (v1) on every app host engine where it is absent."""
    import docker

    started = []
    for name in APP_HOSTS:
        client = _client(_engine(name))
        try:
            try:
                client.containers.get(APP_CONTAINER)
                continue
            except docker.errors.NotFound:
                pass
            progress(f"starting {APP_CONTAINER} ({APP_IMAGE}:v1) on {name}")
            listen = f"{LAB_HOSTS[name]}:{APP_PORT}"
            try:
                client.containers.run(
                    f"{APP_IMAGE}:v1",
                    name=APP_CONTAINER,
                    detach=True,
                    network_mode="host",
                    restart_policy={"Name": "unless-stopped"},
                    environment={"APP_LISTEN": listen, "APP_ENV": "lab"},
                    labels={LABEL: "1"},
                    healthcheck={
                        "test": ["CMD-SHELL", "wget -q -O- http://$APP_LISTEN/health"],
                        "interval": 2_000_000_000,
                    },
                )
            except docker.errors.DockerException as exc:
                raise LabError(f"cannot start {APP_CONTAINER} on {name}: {exc}") from None
            started.append(name)
        finally:
            client.close()
    return started


def _http_health(addr: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://{addr}:{APP_PORT}/health", timeout=2) as resp:
            return int(resp.status), resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return int(exc.code), ""
    except OSError:
        return 0, ""


def _wait_backends(names: list[str], progress: Progress) -> None:
    if not names:
        return
    progress(f"waiting for {APP_CONTAINER} on {', '.join(names)}")
    deadline = time.monotonic() + APP_TIMEOUT
    pending = list(names)
    while pending:
        for name in list(pending):
            code, _ = _http_health(LAB_HOSTS[name])
            if code == 200:
                pending.remove(name)
        if not pending:
            return
        if time.monotonic() > deadline:
            raise LabError(
                f"{APP_CONTAINER} on {', '.join(pending)} not healthy within {int(APP_TIMEOUT)} s "
                f"(see `docker -H {docker_host(pending[0])} logs {APP_CONTAINER}`)"
            )
        time.sleep(0.3)
