"""Errors the CLI turns into one clear message instead of a traceback.

UsageError -> exit code 2 (the user asked for something that cannot be done as written).
BenchError -> exit code 1 (the environment or data is not what it must be).
Terminated -> exit code 143 (SIGTERM, handled like Ctrl-C; see ``sigterm_as_interrupt``).
"""

from __future__ import annotations

import contextlib
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
