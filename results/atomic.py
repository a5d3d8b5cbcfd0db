"""Crash-safe file writes: write to a temporary file in the same folder, fsync, rename.

A reader never sees a partial file: it sees the old file, the new file, or no file. A writer
that fails (disk full, permission, ...) removes its temporary file before the error goes on.
Temporary files are named ``.<name>~<host>~<pid>~<random>.tmp``; every reader ignores them, and
``clean_temp_files`` removes those left by killed writers: written by a process of this host
that is gone, or (another host, or a name it cannot parse) older than ``max_age_s``.

A full disk (``ENOSPC``, or ``EDQUOT`` for a quota) becomes :class:`DiskFull`, an ``OSError``
that names the file and the mount point to free space on; a folder that cannot be written
(permissions, an immutable folder, a read-only file system) becomes :class:`NotWritable`.

Files end with mode ``0666 & ~umask``, as ``open()`` would create them (``mkstemp`` makes
``0600`` files, which collaborators on a shared cluster could not read).
"""

from __future__ import annotations

import errno
import json
import os
import socket
import tempfile
import time
from pathlib import Path

TMP_SUFFIX = ".tmp"
SPACE_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_HOST = socket.gethostname().replace("~", "-")


class DiskFull(OSError):
    """No space left (or over quota) while writing ``path``."""

    def __init__(self, path: Path, cause: OSError):
        super().__init__(cause.errno, cause.strerror or os.strerror(cause.errno or 0), str(path))
        self.path = Path(path)

    @property
    def mount(self) -> Path:
        return mount_point(self.path)

    def advice(self) -> str:
        return (f"disk full writing {self.path}: free space on {self.mount} (or write to another "
                f"folder with --output / --cache-dir), then rerun the same command to resume; "
                f"results written so far are intact")


class NotWritable(PermissionError):
    """``path`` cannot be written: permission denied, immutable folder or read-only mount."""

    exit_code = 2

    def __init__(self, path: Path, cause: OSError):
        super().__init__(cause.errno, cause.strerror or os.strerror(cause.errno or 0), str(path))
        self.path = Path(path)

    def advice(self) -> str:
        return (f"cannot write {self.path} ({self.strerror}): choose a folder you can write to "
                f"(--output, --cache-dir or --out), or make {self.path.parent} writable")


def is_not_writable(exc: BaseException) -> bool:
    return isinstance(exc, PermissionError) or (isinstance(exc, OSError)
                                                and exc.errno == errno.EROFS)


def _project_error(path: Path, exc: BaseException) -> BaseException | None:
    """DiskFull / NotWritable for ``exc`` raised while writing ``path``; None for others."""
    if isinstance(exc, (DiskFull, NotWritable)):
        return None
    if is_disk_full(exc):
        return DiskFull(path, exc)
    if is_not_writable(exc):
        return NotWritable(path, exc)
    return None


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (``os.umask`` sets it,
    briefly, for every thread)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a new file gets from ``open()``: ``0666`` less the umask."""
    return 0o666 & ~current_umask()


def mount_point(path: Path) -> Path:
    p = Path(os.path.abspath(path))
    while not p.exists() and p != p.parent:
        p = p.parent
    while not os.path.ismount(p) and p != p.parent:
        p = p.parent
    return p


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in SPACE_ERRNOS


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}~{_HOST}~{os.getpid()}~",
                                   suffix=TMP_SUFFIX, dir=path.parent)
    except OSError as exc:
        raise (_project_error(path, exc) or exc) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fchmod(fh.fileno(), file_mode())
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        mapped = _project_error(path, exc)
        if mapped is not None:
            raise mapped from None
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True) + "\n")


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def _writer_gone(name: str, age_s: float, max_age_s: float) -> bool:
    parts = name[1:-len(TMP_SUFFIX)].rsplit("~", 3)
    if len(parts) == 4 and parts[1] == _HOST and parts[2].isdigit():
        return not pid_alive(int(parts[2])) or age_s > max_age_s
    return age_s > max_age_s


def clean_temp_files(folder: Path, max_age_s: float = 6 * 3600) -> int:
    """Remove temporary files left by killed writers; returns how many were removed.

    A temporary file of a live writer on this host is kept (it is about to be renamed), and so
    is a young one from another host (its writer may be alive there).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    n, now = 0, time.time()
    for p in folder.rglob(f".*{TMP_SUFFIX}"):
        try:
            if _writer_gone(p.name, now - p.stat().st_mtime, max_age_s):
                p.unlink()
                n += 1
        except FileNotFoundError:
            pass
    return n


def read_json(path: Path) -> dict | None:
    """A JSON object from ``path``; None when the file is missing, unreadable or not an object."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
