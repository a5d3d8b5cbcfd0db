"""How many CPU threads torch uses for fitting and for encoding images.

Fitting on frozen features is many small tensor operations (a 1024-d adapter on a batch of 32, a
demo text tower): on a CPU their multi-threading overhead outweighs the work, and when another
process holds a core, threads that wait for each other make it far worse (CLIP-Adapter's
4-epoch demo fit: 0.2 s on one thread, 4.8 s on two with the other core busy; LP++ 300 steps:
0.02 s vs 3 s). Image encoding (convolutions, large matmuls) does gain from every core. So on a
CPU the runner fits and evaluates with ``fit_threads`` threads (default 1; ``bench run
--fit-threads``) and encodes with torch's default, restored around each encoding pass. The
count is recorded in every result (``timings.fit_threads``): a different thread count may change
the last bits of a floating-point result.
"""

from __future__ import annotations

import contextlib

import torch


def encode_threads() -> int:
    """The thread count image encoding uses: torch's count when the process started."""
    return _START


_START = torch.get_num_threads()


@contextlib.contextmanager
def torch_threads(n: int | None):
    """torch's intra-op thread count set to ``n`` inside the block (None or 0: unchanged)."""
    if not n:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)
