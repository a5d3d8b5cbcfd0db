"""Crash-safe file writes: write to a temporary file in the same folder, fsync, rename.

A reader never sees a partial file: it sees the old file, the new file, or no file. A writer
that fails (disk full, permission, ...) removes its temporary file before the error goes on.
Temporary files are named ``.<name>~<host>~<pid>~<random>.tmp``; every reader ignores them, and
``clean_temp_files`` removes those left by killed writers: written by a process of this host
that is gone, or (another host, or a name it cannot parse) older than ``max_age_s``.

A full disk (``ENOSPC``, or ``EDQUOT`` for a quota) becomes :class:`DiskFull`, an ``OSError``
that names the file and the mount point to free space on.
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
        raise (DiskFull(path, exc) if is_disk_full(exc) else exc) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if is_disk_full(exc) and not isinstance(exc, DiskFull):
            raise DiskFull(path, exc) from None
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
