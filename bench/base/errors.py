"""Errors the CLI turns into one clear message instead of a traceback.

UsageError -> exit code 2 (the user asked for something that cannot be done as written).
BenchError -> exit code 1 (the environment or data is not what it must be).
Terminated -> exit code 143 (SIGTERM, handled like Ctrl-C; see ``sigterm_as_interrupt``).
"""

from __future__ import annotations

import contextlib
import difflib
import signal
import threading


class BenchError(Exception):
    """A failure with a message meant for the user (exit code 1)."""

    exit_code = 1


class UsageError(BenchError):
    """Bad command-line input or configuration (exit code 2)."""

    exit_code = 2


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived. A KeyboardInterrupt, so that everything that cleans up after Ctrl-C
    (lock release in ``CellLocks.__exit__``, DataLoader workers, temporary files) does the same,
    and so that ``except Exception`` (a failing cell) does not swallow it."""

    exit_code = 128 + signal.SIGTERM


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread.

    Only for the in-process run path: submitit installs its own SIGTERM/SIGUSR2 handlers in
    its jobs (checkpoint and requeue under SLURM) and they never run this. Off the main thread
    (where Python cannot install handlers), or when SIGTERM already has a handler or is
    ignored (someone else owns it), nothing changes.
    """
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
        yield
        return

    def handler(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def did_you_mean(name: str, known, n: int = 1, cutoff: float = 0.6,
                 prefix: str = " Did you mean") -> str:
    """``prefix + " 'a' or 'b'?"`` naming the closest of ``known`` to ``name``, or "" if none is
    close. A name that differs only by case or by '-' for '_' (``gpus-per-job``) comes first."""
    known = sorted(str(k) for k in known)
    spelled = str(name).lower().replace("-", "_")
    exact = [k for k in known if k.lower().replace("-", "_") == spelled and k != name]
    close = exact + [c for c in difflib.get_close_matches(str(name), known, n=n, cutoff=cutoff)
                     if c not in exact]
    if not close:
        return ""
    return f"{prefix} {' or '.join(repr(c) for c in close[:n])}?"
