"""A progress line for logs: when stderr is not a terminal (nohup, tmux logs, SLURM), an
in-process run prints one plain line every ``interval`` seconds::

    bench: progress: 12/450 cells (1 failed), now demo_digits / coop; elapsed 5m02s, about 12m30s left

and while images are being encoded (which can be most of a run: the test set, the views of a
seed), what the encoding pass has done::

    bench: progress: 2/6 cells, now eurosat / coop; encoding eurosat seed 1: 64 img x 200 epochs:
    1,216/3,200 images (1.5 img/s, about 22m02s more); elapsed 9m00s, about 22m02s left

The estimate is the mean time per cell this process finished (up to the last one finished),
times the cells left, less the time already spent on the current cell, but at least that mean
times the cells not started yet and, while a pass encodes, at least what the pass still needs
at its measured rate. So it does not grow while a long pass
runs (it did when it was the elapsed time over the cells done). Cells left to another process on
the same output are not counted as left.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time

DEFAULT_INTERVAL_S = 30.0


def clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class LogProgress:
    """Counts cells and prints :meth:`line` every ``interval`` seconds from a daemon thread
    while used as a context manager."""

    def __init__(self, total: int, interval: float = DEFAULT_INTERVAL_S, stream=None,
                 now=time.monotonic):
        self.total, self.interval = total, interval
        self.stream = stream if stream is not None else sys.stderr
        self.now = now
        self.t0 = now()
        self.done = self.failed = self.elsewhere = 0
        self.where = ""
        self.t_last = self.t0  # when the last cell finished
        self.pass_desc: str | None = None  # the encoding pass running now (encode_files)
        self.pass_total = self.pass_done = 0
        self.pass_t0 = self.t0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def at(self, dataset: str, method: str) -> None:
        self.where = f"{dataset} / {method}"
        self.pass_desc = None  # passes run inside a cell's step: a pass a failure cut is over

    def finished(self, failed: bool = False) -> None:
        self.done += 1
        self.failed += failed
        self.t_last = self.now()
        self.pass_desc = None

    # an encoding pass (bench.features.encode_files) reports here
    def encoding(self, desc: str, total: int) -> None:
        self.pass_desc, self.pass_total, self.pass_done = desc, total, 0
        self.pass_t0 = self.now()

    def encoded(self, n: int) -> None:
        self.pass_done += n

    def encoding_done(self) -> None:
        self.pass_desc = None

    def _pass(self, now: float) -> tuple[str, float | None]:
        """The encoding pass in words, and the seconds it still needs (None: not known)."""
        if self.pass_desc is None:
            return "", None
        done, total = self.pass_done, self.pass_total
        took = now - self.pass_t0
        if not done or took <= 0:
            return f"; encoding {self.pass_desc}: 0/{total:,} images (starting)", None
        rate = done / took
        more = (total - done) / rate
        return (f"; encoding {self.pass_desc}: {done:,}/{total:,} images ({rate:.3g} img/s, "
                f"about {clock(more)} more)"), more

    def skipped(self, n: int = 1) -> None:
        """Cells done before or left to another process: not this run's to wait for."""
        self.elsewhere += n

    def line(self) -> str:
        now = self.now()
        elapsed = now - self.t0
        left = max(0, self.total - self.done - self.elsewhere)
        encoding, pass_left = self._pass(now)
        if self.done and left:
            per_cell = (self.t_last - self.t0) / self.done
            # the cells left, less the time the current one has taken so far; at least the
            # cells not started yet, and at least what the running encoding pass still needs
            estimate = max(per_cell * left - (now - self.t_last), per_cell * (left - 1),
                           pass_left or 0.0)
            eta = f"about {clock(estimate)} left"
        elif left:
            eta = "estimate after the first cell"
        else:
            eta = "finishing"
        extra = [f"{self.failed} failed"] if self.failed else []
        if self.elsewhere:
            extra.append(f"{self.elsewhere} done before or by another process")
        extra_txt = f" ({', '.join(extra)})" if extra else ""
        where = f", now {self.where}" if self.where else ""
        return (f"bench: progress: {self.done}/{self.total} cells{extra_txt}{where}{encoding}; "
                f"elapsed {clock(elapsed)}, {eta}")

    def __enter__(self):
        if self.interval > 0:
            self._thread = threading.Thread(target=self._loop, name="bench-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            try:  # the tally at the end, so a log always ends with where the run stopped
                print(self.line(), file=self.stream, flush=True)
            except (OSError, ValueError):
                pass

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                print(self.line(), file=self.stream, flush=True)
            except (OSError, ValueError):  # the log went away: stop printing, not the run
                return


def log_progress(total: int, interval: float, stream=None) -> LogProgress:
    """A LogProgress that prints only when ``stream`` (stderr) is not a terminal."""
    stream = stream if stream is not None else sys.stderr
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    return LogProgress(total, 0 if tty else interval, stream)


SLOW_S = 1.0  # how long a quiet step may take before it says what it is doing


@contextlib.contextmanager
def note_if_slow(message: str, after: float | None = None, stream=None):
    """Print ``bench: <message>`` on stderr once the block has run ``after`` seconds (default
    :data:`SLOW_S`) without finishing, so a user knows what the command is waiting for; a fast
    block prints nothing."""
    stream = stream if stream is not None else sys.stderr

    def say():
        try:
            print(f"bench: {message}", file=stream, flush=True)
        except (OSError, ValueError):
            pass

    timer = threading.Timer(SLOW_S if after is None else after, say)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
