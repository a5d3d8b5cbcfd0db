"""Per-cell lock files, so that two processes on one output folder never run the same cell.

A lock is ``OUTPUT/locks/<cell id>.lock``, created with ``O_CREAT | O_EXCL`` (atomic on local
file systems and on NFS v3+), holding the owner's host, pid, process start time, a random token
and when it was taken. The owner touches its locks every ``heartbeat_s`` seconds while it holds
them, and removes each lock once the cell's record is written.

A lock is *stale*, and is taken over, when its owner is gone:

* same host: the pid is not alive, or it is alive but started at another time (pid reused);
* another host (a shared file system): the lock has not been touched for ``stale_after_s``
  seconds (default 600; ``BENCH_LOCK_STALE_S`` changes it);
* unreadable or empty (the owner was killed between creating and writing it) and older than
  a few seconds.

Taking over goes through a short-lived ``<lock>.break`` file, also created with ``O_EXCL``, so
two processes that find the same stale lock do not both break it (and break each other's new
lock). The worst case left (a break file owner stalled for a minute) runs a cell twice: records
are written atomically and are identical, so nothing is corrupted.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from results.atomic import DiskFull, is_disk_full, pid_alive

HOST = socket.gethostname()
DEFAULT_STALE_S = 600.0
DEFAULT_HEARTBEAT_S = 60.0
_BREAK_STALE_S = 60.0
_UNWRITTEN_GRACE_S = 5.0


def process_start(pid: int) -> str | None:
    """The start time of ``pid`` (clock ticks since boot, from /proc), or None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


@dataclass
class Holder:
    """Who holds a lock, as read from its file."""

    host: str
    pid: int
    start: str | None
    token: str
    taken: float

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.taken))
        return f"pid {self.pid} on {self.host} since {when}"


def read_holder(path: Path) -> Holder | None:
    try:
        info = json.loads(Path(path).read_text())
        return Holder(str(info["host"]), int(info["pid"]), info.get("start"), str(info["token"]),
                      float(info["taken"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _age(path: Path) -> float | None:
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None


def is_stale(path: Path, stale_after_s: float) -> bool:
    holder = read_holder(path)
    age = _age(path)
    if age is None:
        return False  # released meanwhile: not ours to break, just retry
    if holder is None:
        return age > _UNWRITTEN_GRACE_S
    if holder.host == HOST:
        if not pid_alive(holder.pid):
            return True
        start = process_start(holder.pid)
        return holder.start is not None and start is not None and start != holder.start
    return age > stale_after_s


class CellLocks:
    """The locks this process holds in one ``locks`` folder, kept fresh by a heartbeat thread."""

    def __init__(self, folder: Path, stale_after_s: float | None = None,
                 heartbeat_s: float = DEFAULT_HEARTBEAT_S):
        self.folder = Path(folder)
        if stale_after_s is None:
            stale_after_s = float(os.environ.get("BENCH_LOCK_STALE_S", DEFAULT_STALE_S))
        self.stale_after_s = stale_after_s
        self.heartbeat_s = heartbeat_s
        self.held: dict[str, tuple[Path, str]] = {}  # name -> (path, token)
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._me = {"host": HOST, "pid": os.getpid(), "start": process_start(os.getpid())}

    def path(self, name: str) -> Path:
        return self.folder / f"{name}.lock"

    # -- taking and giving back -------------------------------------------------------------

    def try_acquire(self, name: str) -> Holder | None:
        """Take the lock ``name``; returns None on success, else who holds it (alive)."""
        path = self.path(name)
        for _ in range(5):
            token = uuid.uuid4().hex
            if self._create(path, token):
                with self._guard:
                    self.held[name] = (path, token)
                self._start_heartbeat()
                return None
            if is_stale(path, self.stale_after_s):
                self._break(path)
                continue
            holder = read_holder(path)
            if holder is not None:
                return holder
            time.sleep(0.05)  # just created by someone, not yet written: look again
        return read_holder(path) or Holder("?", 0, None, "", time.time())

    def release(self, name: str) -> None:
        with self._guard:
            entry = self.held.pop(name, None)
        if entry is None:
            return
        path, token = entry
        holder = read_holder(path)
        if holder is not None and holder.token == token:  # never remove someone else's lock
            path.unlink(missing_ok=True)

    def release_all(self) -> None:
        for name in list(self.held):
            self.release(name)
        self._stop.set()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.release_all()

    # -- housekeeping -----------------------------------------------------------------------

    def clean_stale(self) -> int:
        """Remove every stale lock in the folder (left by killed processes); returns how many."""
        n = 0
        if not self.folder.is_dir():
            return 0
        for path in self.folder.glob("*.lock"):
            if is_stale(path, self.stale_after_s) and self._break(path):
                n += 1
        for path in self.folder.glob("*.lock.break"):
            age = _age(path)
            if age is not None and age > _BREAK_STALE_S:
                path.unlink(missing_ok=True)
        return n

    def _create(self, path: Path, token: str) -> bool:
        body = json.dumps({**self._me, "token": token, "taken": time.time()}).encode()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            return False
        except OSError as exc:
            raise (DiskFull(path, exc) if is_disk_full(exc) else exc) from None
        try:
            os.write(fd, body)
            os.fsync(fd)
        except OSError as exc:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise (DiskFull(path, exc) if is_disk_full(exc) else exc) from None
        os.close(fd)
        return True

    def _break(self, path: Path) -> bool:
        """Remove the stale lock ``path`` unless another process is already breaking it."""
        brk = path.with_name(path.name + ".break")
        age = _age(brk)
        if age is not None and age > _BREAK_STALE_S:
            brk.unlink(missing_ok=True)
        try:
            os.close(os.open(brk, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            time.sleep(0.05)
            return False
        try:
            before = read_holder(path)
            if is_stale(path, self.stale_after_s) and read_holder(path) == before:
                path.unlink(missing_ok=True)
                return True
            return False
        finally:
            brk.unlink(missing_ok=True)

    def _start_heartbeat(self) -> None:
        if self._thread is not None:
            if self._thread.is_alive() and not self._stop.is_set():
                return
            self._thread.join()
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="bench-lock-heartbeat",
                                        daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            with self._guard:
                paths = [p for p, _ in self.held.values()]
            for p in paths:
                try:
                    os.utime(p)
                except OSError:
                    pass
