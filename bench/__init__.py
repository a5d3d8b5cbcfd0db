"""bench: a few-shot adaptation benchmark for CLIP models (CoOp protocol).

The Python API (bench/api.py, the core the command line calls): ``bench.Sweep(...)`` and its
``plan()``, ``bench.execute``, ``bench.cells`` (one row per record), ``bench.summary`` (the
frame `bench report` prints), ``bench.report``, ``bench.plot``, and the short forms
``bench.run(...)`` (plan + execute + summary) and ``bench.load(output)`` (the summary); and
``bench.compare(output, a, b)``, `bench compare` as a frame. They are
imported on first use, so that ``import bench`` (and the command line) stays free of pandas and
torch.

Importing bench sets the reproducibility policy (bench/base/determinism.py; ``BENCH_DETERMINISM``,
default ``portable``) in the environment, before torch computes anything, so that every process
that computes (the CLI, a notebook, submitit's jobs, benchmark scripts) runs the same kernels.
"""

from bench.base import determinism as _determinism

_determinism.apply_at_import()

__version__ = "0.1.0"
API = ("Sweep", "execute", "cells", "summary", "report", "plot", "run", "load", "compare")
__all__ = [*API, "__version__"]


def __getattr__(name):
    if name in API:
        from bench import api

        return getattr(api, name)
    raise AttributeError(f"module 'bench' has no attribute {name!r}")
