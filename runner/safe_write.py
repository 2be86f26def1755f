"""The one way the runner writes a file on the control node: never through a symlink, never half written.

A temporary file is created with O_EXCL|O_NOFOLLOW in the target's own directory, its mode set on the descriptor,
its bytes fsynced, then renamed over the target and the directory fsynced. A target that is a symlink or not a
regular file is refused, so a planted link in a shared report directory cannot redirect the write.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path


class UnsafeTarget(OSError):
    """The target path is a symlink or not a regular file."""


def write_bytes(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    path = Path(path)
    _refuse_unsafe(path)
    directory = path.parent
    temp = directory / f".{path.name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    os.close(fd)
    try:
        _refuse_unsafe(path)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    _fsync_dir(directory)


def write_text(path: Path, text: str, *, mode: int = 0o600) -> None:
    write_bytes(path, text.encode("utf-8"), mode=mode)


def _refuse_unsafe(path: Path) -> None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISREG(info.st_mode):
        raise UnsafeTarget(f"refusing to write {path}: it is a symlink or not a regular file")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
