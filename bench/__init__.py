"""bench: a few-shot adaptation benchmark for CLIP models (CoOp protocol).

``bench.run(...)`` runs a sweep and returns a pandas DataFrame; ``bench.load(output)`` reads an
output folder into the same frame (bench/api.py). Both are imported on first use, so that
``import bench`` (and the command line) stays free of pandas and torch.

Importing bench sets the reproducibility policy (bench/base/determinism.py; ``BENCH_DETERMINISM``,
default ``portable``) in the environment, before torch computes anything, so that every process
that computes (the CLI, a notebook, submitit's jobs, benchmark scripts) runs the same kernels.
"""

from bench.base import determinism as _determinism

_determinism.apply_at_import()

__version__ = "0.1.0"
__all__ = ["run", "load", "__version__"]


def __getattr__(name):
    if name in ("run", "load"):
        from bench import api

        return getattr(api, name)
    raise AttributeError(f"module 'bench' has no attribute {name!r}")
