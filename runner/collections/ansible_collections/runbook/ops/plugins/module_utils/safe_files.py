# -*- coding: utf-8 -*-
# Copyright: runbook-runner maintainers
# License: Apache-2.0
"""The one way the runbook.ops modules write a file on a host: never through a symlink, never half written.
Standard library only; the same rules as the runner's own writer on the control node (runner/safe_write.py).

write_file makes a temporary file under a random name with O_EXCL|O_NOFOLLOW in the target's own directory, sets
its owner and mode on the descriptor (those given, else the replaced file's), fsyncs it, renames it over the
target and fsyncs the directory; every step is relative to one descriptor of that directory, so the directory
cannot be swapped underneath. A target that is a symlink or not a regular file is refused (UnsafePath, nothing
written), before the temporary file is made and again just before the rename.

ensure_dir makes a directory the product owns (a backup, snapshot or state directory) and refuses one that is a
symlink or not a directory, so a link planted there cannot send the product's files elsewhere.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import errno
import os
import secrets
import stat

TEMP_SUFFIX = ".tmp"
_ATTEMPTS = 8
_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a fifo"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


class UnsafePath(OSError):
    """A path the product would write is a symlink or not a regular file (or, for a directory, not a directory)."""


def _kind(mode):
    if stat.S_ISLNK(mode):
        return "a symlink"
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _refuse(path, info):
    if info is not None and not stat.S_ISREG(info.st_mode):
        raise UnsafePath("refusing to write %s: it is %s" % (path, _kind(info.st_mode)))


def _lstat_at(name, dir_fd):
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _temp_name(name):
    return ".%s.%s%s" % (name, secrets.token_hex(6), TEMP_SUFFIX)


def check_target(path):
    """Refuse (UnsafePath) a path that exists and is a symlink or not a regular file; a missing one is fine."""
    _refuse(path, _lstat_at(path, None))


def write_file(path, data, mode=None, uid=None, gid=None, replace=True):
    """Write bytes to path atomically. mode/uid/gid: those given, else the replaced file's (a new file: 0600 and
    the writer's owner). With replace=False the file is published only if nothing is at path (FileExistsError)."""
    directory, name = os.path.split(os.path.abspath(path))
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        old = _lstat_at(name, dir_fd)
        _refuse(path, old)
        mode = mode if mode is not None else (stat.S_IMODE(old.st_mode) if old is not None else 0o600)
        owner = (uid, gid) if uid is not None and gid is not None else (
            (old.st_uid, old.st_gid) if old is not None else None)
        temp = _write_temp(dir_fd, name, data, mode, owner)
        try:
            _publish(dir_fd, temp, name, path, replace)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=dir_fd)
            raise
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _open_temp(dir_fd, name):
    for _ in range(_ATTEMPTS):
        temp = _temp_name(name)
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                         dir_fd=dir_fd)
        except FileExistsError:  # something (perhaps a planted link) has that name: never follow it, pick another
            continue
        return fd, temp
    raise FileExistsError(errno.EEXIST, "no free temporary name for %s after %d attempts" % (name, _ATTEMPTS))


def _write_temp(dir_fd, name, data, mode, owner):
    """A fully written, fsynced temporary file next to `name` with its owner and mode; its name."""
    fd, temp = _open_temp(dir_fd, name)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if owner is not None:
            _set_owner(fd, owner)
        os.fchmod(fd, mode)  # after fchown, which clears set-id bits
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(temp, dir_fd=dir_fd)
        raise
    os.close(fd)
    return temp


def _set_owner(fd, owner):
    info = os.fstat(fd)
    if (info.st_uid, info.st_gid) == tuple(owner):
        return
    try:
        os.fchown(fd, owner[0], owner[1])
    except PermissionError:
        pass  # not root: the file keeps the writing user's ownership


def _publish(dir_fd, temp, name, path, replace):
    if not replace:
        os.link(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)  # EEXIST if anything is there
        os.unlink(temp, dir_fd=dir_fd)
        return
    _refuse(path, _lstat_at(name, dir_fd))  # again: a link may have been swapped in while the data was written
    os.replace(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def ensure_dir(path, mode, set_mode=False):
    """Make a directory the product owns with exactly `mode` (missing parents as os.makedirs makes them); refuse
    one that is a symlink or not a directory. An existing one keeps its mode unless set_mode. True when made."""
    created = False
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)  # parents as os.makedirs makes them
        try:
            os.mkdir(path, mode)  # never follows a link at path: EEXIST
            created = True
        except FileExistsError:
            pass  # made meanwhile: checked below like any existing one
        info = os.lstat(path)
    _refuse_dir(path, info)
    if created or set_mode:
        set_mode_of(path, mode, directory=True)
    if created:
        fsync_dir(os.path.dirname(os.path.abspath(path)))
    return created


def check_dir(path):
    """Refuse (UnsafePath) a path that exists and is a symlink or not a directory; a missing one is fine."""
    _refuse_dir(path, _lstat_at(path, None))


def _refuse_dir(path, info):
    if info is not None and not stat.S_ISDIR(info.st_mode):
        what = "it is a symlink" if stat.S_ISLNK(info.st_mode) else "it is not a directory"
        raise UnsafePath("refusing to use directory %s: %s" % (path, what))


def set_mode_of(path, mode, directory=False):
    """chmod through a descriptor opened without following a link (a link at path is refused)."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_DIRECTORY if directory else os.O_NONBLOCK)
    fd = _open_no_link(path, flags)
    try:
        if not directory:
            _refuse(path, os.fstat(fd))
        if stat.S_IMODE(os.fstat(fd).st_mode) != mode:
            os.fchmod(fd, mode)
    finally:
        os.close(fd)


def open_lock_file(path, mode=0o644):
    """A descriptor of the lock file at path (created empty when missing, never truncated), for flock; a link or
    anything but a regular file there is refused."""
    fd = _open_no_link(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, mode)
    try:
        _refuse(path, os.fstat(fd))
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_no_link(path, flags, mode=0o600):
    try:
        return os.open(path, flags, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePath("refusing to write %s: it is a symlink" % path)
        raise


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
