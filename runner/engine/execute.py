"""Run a rendered project with ansible-runner in a private run directory."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
    """Remove what may hold secrets once the run is over (and the environment files of a call that never
    finished, e.g. killed with the control node)."""
    for name in ("extravars", "passwords", "ssh_key", "envvars", "settings", "cmdline"):
        with contextlib.suppress(FileNotFoundError):
            (private_dir / "env" / name).unlink()
    for artifacts in (private_dir / "artifacts").glob("*"):
        remove_environment_files(artifacts)


# What ansible-playbook needs of the caller's environment: home, user, locale, temporary directory, the SSH agent
# and Kerberos ticket, proxies and CA bundles (a verify step may check from the control node), Ansible's own
# settings. Anything else (PGPASSWORD, RUNBOOK_SMTP_PASSWORD, cloud keys) never reaches Ansible, its modules or
# ansible-runner's files.
_NEEDED_NAMES = frozenset(
    {"HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "SSH_AUTH_SOCK", "KRB5CCNAME"}
    | {"SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE"}
    | {f"{name}{suffix}" for name in ("http", "https", "no", "all") for suffix in ("_proxy", "_PROXY")}
)
_NEEDED_PREFIXES = ("LC_", "ANSIBLE_")
# artifacts/<ident>/ files in which ansible-runner writes the whole environment of the call
_ENVIRONMENT_FILES = ("command", "env.list")


def needed_environment(prepared: dict[str, str], ours: dict[str, str]) -> dict[str, str]:
    """The environment ansible-runner prepared for ansible-playbook (a copy of the caller's, plus its own
    variables and ours), less what it copied from the caller that Ansible does not need."""
    return {
        name: value
        for name, value in prepared.items()
        if name in ours
        or name in _NEEDED_NAMES
        or name.startswith(_NEEDED_PREFIXES)
        or os.environ.get(name) != value  # set by ansible-runner itself (its callback plugin, artifact dir)
    }


def remove_environment_files(artifact_dir: Path) -> None:
    for name in _ENVIRONMENT_FILES:
        with contextlib.suppress(FileNotFoundError):
            (artifact_dir / name).unlink()


def run_ansible(envvars: dict[str, str], **kwargs: Any) -> Any:
    """ansible_runner.run(envvars=envvars, **kwargs) with only the environment Ansible needs (envvars and
    needed_environment), no env/ files written for it, and nothing of the environment left once the call ends.

    ansible-runner has no option not to copy the caller's environment; it reports the status `starting` with the
    prepared config before it writes artifacts/<ident>/command and starts ansible-playbook, so that is where the
    environment is cut down."""
    artifact_dirs: list[Path] = []

    def on_status(status: dict[str, Any], runner_config: Any) -> None:
        if status.get("status") == "starting":
            runner_config.env = needed_environment(runner_config.env, envvars)
            artifact_dirs.append(Path(runner_config.artifact_dir))

    try:
        return ansible_runner.run(**kwargs, envvars=envvars, status_handler=on_status, suppress_env_files=True)
    finally:
        for artifact_dir in artifact_dirs:
            remove_environment_files(artifact_dir)


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


@contextmanager
def cancel_on_signals(cancel: threading.Event) -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP (the terminal went away) set `cancel`, which asks ansible-runner to stop the call;
    never a traceback. The modules on the hosts then stop their own work (their session is gone)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        cancel.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


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
        "settings": {"suppress_ansible_output": True, "job_timeout": int(timeout_s) if timeout_s else 0},
    }
    if tags:
        kwargs["tags"] = ",".join(tags)
    if limit:
        kwargs["limit"] = limit
    if cmdline:
        kwargs["cmdline"] = cmdline
    try:
        runner = run_ansible(ansible_env(private_dir / "project" / "ansible.cfg", roles_paths), **kwargs)
    except Exception as exc:  # ansible-runner raises plain exceptions when it cannot start
        raise ExecutionError(f"could not start ansible-playbook: {exc}") from exc
    return PlaybookOutcome(status=str(runner.status), rc=int(runner.rc if runner.rc is not None else -1))


def first_error_line(rc: int, private_dir: Path) -> str:
    """ansible-playbook failed before any task ran (bad inventory, syntax): its own error line, from its output."""
    stdout_files = sorted((private_dir / "artifacts").glob("*/stdout"), key=lambda p: p.stat().st_mtime)
    if stdout_files:
        output = stdout_files[-1].read_text(errors="replace").splitlines()
        lines = [line for line in output if "ERROR" in line] or [line for line in output if line.strip()]
        if lines:
            return lines[-1].strip()
    return f"ansible-playbook exited {rc} before running any task"


__all__ = [
    "PlaybookOutcome",
    "cancel_on_signals",
    "first_error_line",
    "needed_environment",
    "prepare_private_dir",
    "remove_environment_files",
    "run_ansible",
    "run_playbook",
    "scrub_private_dir",
    "service_ansible_cfg",
    "write_extravars",
]
