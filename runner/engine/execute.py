"""Run a rendered project with ansible-runner in a private run directory."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ansible_runner

from runner.errors import ExecutionError
from runner.paths import COLLECTIONS_DIR


@dataclass(frozen=True)
class PlaybookOutcome:
    status: str  # successful | failed | canceled | timeout
    rc: int


def prepare_private_dir(private_dir: Path, project_files: dict[str, str], extravars: str) -> None:
    """project/ holds the rendered files; env/extravars (0600) the operator values, removed after the run."""
    project = private_dir / "project"
    project.mkdir(parents=True, exist_ok=True)
    for name, text in project_files.items():
        (project / name).write_text(text, encoding="utf-8")
    write_extravars(private_dir, extravars)


def write_extravars(private_dir: Path, extravars: str) -> None:
    """env/extravars, created 0600 (it holds secret params until scrub_private_dir)."""
    env = private_dir / "env"
    env.mkdir(parents=True, exist_ok=True)
    fd = os.open(env / "extravars", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(extravars)


def scrub_private_dir(private_dir: Path) -> None:
    """Remove what may hold secrets once the run is over."""
    for name in ("extravars", "passwords", "ssh_key"):
        with contextlib.suppress(FileNotFoundError):
            (private_dir / "env" / name).unlink()


def ansible_env(config: Path, roles_paths: list[Path] | None = None) -> dict[str, str]:
    """Environment for ansible-playbook: our config, collections and roles first, whatever the caller's
    ANSIBLE_* variables say (a molecule or CI environment sets ANSIBLE_COLLECTIONS_PATH, which would otherwise
    hide the product's collection)."""
    def joined(ours: list[str], variable: str) -> str:
        theirs = [p for p in os.environ.get(variable, "").split(os.pathsep) if p]
        return os.pathsep.join(dict.fromkeys([*ours, *theirs]))

    env = {
        "ANSIBLE_CONFIG": str(config),
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_DEPRECATION_WARNINGS": "0",
        "ANSIBLE_COLLECTIONS_PATH": joined([str(COLLECTIONS_DIR)], "ANSIBLE_COLLECTIONS_PATH"),
        # the venv's ansible-playbook, also when the venv is not activated
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin"),
    }
    if roles_paths is not None:
        env["ANSIBLE_ROLES_PATH"] = joined([str(p) for p in roles_paths], "ANSIBLE_ROLES_PATH")
    return env


def service_ansible_cfg() -> str:
    """ansible.cfg of the runner's own small playbooks (leases, backups status): collections, no facts, pipelining."""
    return "\n".join(
        [
            "[defaults]",
            f"collections_path = {COLLECTIONS_DIR}",
            "gathering = explicit",
            "forks = 25",
            "interpreter_python = auto_silent",
            "retry_files_enabled = False",
            "timeout = 20",
            "",
            "[ssh_connection]",
            "pipelining = True",
            "ssh_args = -o ControlMaster=auto -o ControlPersist=120s -o ServerAliveInterval=15",
            "",
        ]
    )


def run_playbook(
    private_dir: Path,
    playbook: str,
    inventory: Path,
    event_handler: Callable[[dict[str, Any]], bool],
    *,
    tags: list[str] | None = None,
    limit: str | None = None,
    check: bool = False,
    cancel: threading.Event | None = None,
    timeout_s: float | None = None,
    ident: str | None = None,
    roles_paths: list[Path] | None = None,
) -> PlaybookOutcome:
    cmdline = "--check --diff" if check else None
    kwargs: dict[str, Any] = {
        "private_data_dir": str(private_dir),
        "playbook": playbook,
        "inventory": str(inventory.resolve()),
        "event_handler": event_handler,
        "cancel_callback": (lambda: cancel.is_set()) if cancel is not None else (lambda: False),
        "quiet": True,
        "ident": ident,
        "envvars": ansible_env(private_dir / "project" / "ansible.cfg", roles_paths),
        "settings": {"suppress_ansible_output": True, "job_timeout": int(timeout_s) if timeout_s else 0},
    }
    if tags:
        kwargs["tags"] = ",".join(tags)
    if limit:
        kwargs["limit"] = limit
    if cmdline:
        kwargs["cmdline"] = cmdline
    try:
        runner = ansible_runner.run(**kwargs)
    except Exception as exc:  # ansible-runner raises plain exceptions when it cannot start
        raise ExecutionError(f"could not start ansible-playbook: {exc}") from exc
    return PlaybookOutcome(status=str(runner.status), rc=int(runner.rc if runner.rc is not None else -1))


__all__ = [
    "PlaybookOutcome",
    "prepare_private_dir",
    "run_playbook",
    "scrub_private_dir",
    "service_ansible_cfg",
    "write_extravars",
]
