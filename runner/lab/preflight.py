"""What the machine must offer before the lab starts: root, the Debian packages it runs, free ports."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

from runner.errors import LabError
from runner.lab.layout import LAB_HOSTS, LB_PORT, PG_PORT, REDIS_PORT, SSH_PORT, state_dir


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (it starts dockerd and builds images): run it as root or with sudo")


def need(binary: str, package: str) -> str:
    """The path of a program the lab runs, or a LabError naming the package to install."""
    path = shutil.which(binary) or next(
        (str(p) for d in ("/usr/sbin", "/sbin", "/usr/bin") if (p := Path(d) / binary).exists()), None
    )
    if not path:
        raise LabError(f"`{binary}` not found: install it with `apt-get install -y {package}`")
    return path


def preflight() -> None:
    require_root()
    need("dockerd", "docker.io")
    need("containerd", "containerd")
    need("runc", "runc")
    need("docker-init", "tini")
    need("ssh", "openssh-client")
    need("ssh-keygen", "openssh-client")
    if not any(state_dir().glob("cache/host-*.tar")):
        need("debootstrap", "debootstrap")


def docker_cli() -> Path:
    """The machine's docker client, mounted read-only into every host (Debian's docker.io ships it)."""
    for cand in ("/usr/bin/docker", shutil.which("docker")):
        if cand and Path(cand).exists():
            return Path(cand).resolve()
    raise LabError("`docker` client not found: install it with `apt-get install -y docker.io`")


def check_ports_free(names: list[str]) -> None:
    """Refuse to start hosts whose address and port another process of the machine already listens on."""
    for name in names:
        for port in _host_ports(name):
            _check_port_free(name, LAB_HOSTS[name], port)


def _host_ports(name: str) -> list[int]:
    # an app host's backend may run already (its engine outlives the host container): its port is not checked
    if name == "db":
        return [SSH_PORT, PG_PORT, REDIS_PORT]
    if name == "lb":
        return [SSH_PORT, LB_PORT]
    return [SSH_PORT]


def _check_port_free(name: str, addr: str, port: int) -> None:
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
