"""Atomic file writes: a crash, a full disk or a kill never leaves a partial file
under the final name, and the previous file stays intact until the new one is
committed. Saving writes files, never anything else: a symbolic link is followed
(the link stays, its target is replaced atomically), anything that is not a regular
file is refused, missing parent directories are created (as Keras does), and every
error names the path the caller gave, never the temp file.

A write goes to ``<dir>/.<name>.<16 hex digits>.tmp`` in the destination's directory
(so ``os.replace`` never crosses file systems), is flushed and fsynced, then renamed
over ``<dir>/<name>`` with ``os.replace`` (atomic on POSIX and Windows), and the
directory is fsynced so the rename itself survives a power loss. A writer killed
before the rename leaves only its temp file, which readers never look at; the next
committed write of the same file removes it once it is :data:`STALE_AFTER` seconds
old, and :func:`clean_stale_temps` removes such files on demand.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import stat
import time

_TEMP = re.compile(r"^\.(?P<name>.+)\.[0-9a-f]{16}\.tmp$")
# a temp file of the same final name untouched this long is a killed writer's: the
# next committed write removes it (a live writer touches its temp file as it writes)
STALE_AFTER = 600.0


def temp_path(path: str) -> str:
    """A fresh temp file name next to ``path``: ``<dir>/.<name>.<random>.tmp``."""
    directory, name = os.path.split(os.path.abspath(path))
    return os.path.join(directory, f".{name}.{secrets.token_hex(8)}.tmp")


def atomic_write(path, parts) -> None:
    """Writes the byte buffers ``parts`` in order to ``path`` atomically.

    Args:
        path: destination file (str or path-like). A symbolic link is followed: the
            link stays and its target is replaced. Missing parent directories are
            created.
        parts: an iterable of bytes-like objects (bytes, memoryview, contiguous
            NumPy arrays viewed as bytes).

    Raises:
        IsADirectoryError / FileExistsError: ``path`` (or the link's target) is a
            directory, or another thing that is not a regular file (a FIFO, a
            device, a socket); nothing is written.
        OSError: the original error (disk full, permission denied, ...) of any
            failed step, its ``filename`` set to ``path`` as given; the temp file
            is removed and an existing file at ``path`` is left byte-identical.
    """
    given = os.fspath(path)
    try:
        _write_to(_target(given), parts)
    except OSError as exc:  # name the path given, not the temp or resolved one
        if exc.filename2 is not None and exc.errno is not None:
            raise type(exc)(exc.errno, exc.strerror, given) from exc
        exc.filename = given
        raise


def _target(given: str) -> str:
    """The regular file to replace: ``given`` with symbolic links resolved, its
    directory created; refuses a directory or any other non-regular file."""
    target = os.path.realpath(given)
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None and not stat.S_ISREG(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else _kind(mode)
        error = IsADirectoryError if stat.S_ISDIR(mode) else FileExistsError
        raise error(
            errno.EISDIR if stat.S_ISDIR(mode) else errno.EEXIST,
            f"refusing to replace {kind}: saving writes only regular files",
            given,
        )
    os.makedirs(os.path.dirname(target), exist_ok=True)
    return target


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return "something that is not a regular file"


def _write_to(target: str, parts) -> None:
    temp = temp_path(target)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    fd = os.open(temp, flags, 0o666)  # the umask applies, as for open(path, "wb")
    try:
        _write_and_sync(fd, parts)
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    directory, name = os.path.split(target)
    fsync_directory(directory)
    with contextlib.suppress(OSError):  # housekeeping: never fails a committed write
        clean_stale_temps(directory, name, min_age=STALE_AFTER)


def _write_and_sync(fd: int, parts) -> None:
    """Writes every part to ``fd``, fsyncs and closes it (closed on errors too)."""
    try:
        for part in parts:
            view = memoryview(part).cast("B")
            while view:
                view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise
    os.close(fd)


def fsync_directory(directory: str) -> None:
    """Fsyncs a directory so a rename in it is durable; a no-op where directories
    cannot be opened (Windows) or the file system does not support it."""
    if os.name == "nt":
        return
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def clean_stale_temps(directory, name: str | None = None, min_age: float = 0.0):
    """Removes temp files left in ``directory`` by writers that were killed.

    Only regular files named like this module's temp files (``.<name>.<16 hex
    digits>.tmp``) are removed; nothing else is touched. A writer that is still
    running in another process may own a fresh temp file: ``min_age`` spares files
    modified less than that many seconds ago.

    Args:
        directory: the directory to clean (str or path-like).
        name: only the temp files of this final file name (e.g.
            ``"model.safetensors"``); None: all of them. Default: None.
        min_age: seconds since the last modification below which a temp file is
            kept. Default: 0.

    Returns: the removed paths, sorted.
    """
    directory = os.fspath(directory)
    now, removed = time.time(), []
    for entry in os.listdir(directory):
        match = _TEMP.match(entry)
        if match is None or (name is not None and match["name"] != name):
            continue
        full = os.path.join(directory, entry)
        with contextlib.suppress(FileNotFoundError):
            info = os.lstat(full)
            if stat.S_ISREG(info.st_mode) and now - info.st_mtime >= min_age:
                os.unlink(full)
                removed.append(full)
    return sorted(removed)
