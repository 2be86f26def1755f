"""What the lab keeps on the control node: its directories, its lock, its SSH key and the files every host mounts."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

from runner import safe_write
from runner.lab.commands import run
from runner.lab.layout import APP_HOSTS, HOST_FILES, RECIPES_DIR, Progress, run_dir, ssh_key_path, state_dir


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """One lab action at a time on this machine (up, down and reset of several processes do not interleave)."""
    state_dir().mkdir(parents=True, exist_ok=True)
    with open(state_dir() / "lab.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def prepare_dirs() -> None:
    for d in ("ssh", "cache", "engines", "hostfiles", "logs"):
        (state_dir() / d).mkdir(parents=True, exist_ok=True)
    (state_dir() / "ssh").chmod(0o700)
    run_dir().mkdir(parents=True, exist_ok=True)
    for name in APP_HOSTS:
        (run_dir() / name).mkdir(exist_ok=True)


def ensure_ssh_key(progress: Progress) -> None:
    key = ssh_key_path()
    if key.exists() and key.with_suffix(".pub").exists():
        return
    progress(f"generating the lab SSH key {key}")
    key.unlink(missing_ok=True)
    key.with_suffix(".pub").unlink(missing_ok=True)
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "runbook-lab", "-f", str(key)], "ssh-keygen")
    key.chmod(0o600)


def sync_host_files() -> None:
    """The init script, the shop seed and the lab's public key, as every host mounts them at /etc/runbook-lab."""
    dest = state_dir() / "hostfiles"
    for name in HOST_FILES:
        _write_if_changed(dest / name, (RECIPES_DIR / name).read_bytes(), 0o755 if name.endswith(".sh") else 0o644)
    _write_if_changed(dest / "authorized_keys", ssh_key_path().with_suffix(".pub").read_bytes(), 0o644)


def _write_if_changed(target: Path, data: bytes, mode: int) -> None:
    if not target.exists() or target.read_bytes() != data:
        safe_write.write_bytes(target, data, mode=mode)
