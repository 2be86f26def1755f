"""Reaching a lab host as root over SSH with the lab's key: the ssh command line, a shell, a remote command."""

from __future__ import annotations

import shlex
import subprocess

from runner.errors import LabError
from runner.lab.layout import LAB_HOSTS, SSH_PORT, ssh_key_path
from runner.lab.preflight import need


def ssh_argv(host: str, *, interactive: bool = False) -> list[str]:
    """The ssh command line (without the remote command) that reaches a lab host as root."""
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


def ssh(host: str, command: list[str]) -> int:
    """Open a shell on a lab host (no command) or run a command there; returns the exit status.

    Several words are quoted for the remote shell (`["echo", "a b"]` prints `a b`); a single word is passed
    as a shell command line (`["docker ps | wc -l"]`), like ssh does.
    """
    if host not in LAB_HOSTS:
        raise LabError(f"unknown lab host {host!r}; hosts are {', '.join(LAB_HOSTS)}")
    if not ssh_key_path().exists():
        raise LabError("the lab has no SSH key yet: run `runbook lab up` first")
    need("ssh", "openssh-client")
    argv = ssh_argv(host, interactive=not command)
    if not command:
        return subprocess.call(argv)
    remote = command[0] if len(command) == 1 else shlex.join(command)
    return subprocess.call([*argv, "--", remote])
