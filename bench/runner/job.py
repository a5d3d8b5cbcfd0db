"""The job function: every launcher (in-process, submitit local, SLURM) runs ``run_job``.

Per dataset in the job: load the backbone and the dataset once, get test features and the
few-shot train/val/view features for all cells from the cache (extracting what is missing, once),
then for each cell: sample the few-shot subset, build the Task, fit, evaluate on the test
features, write the result. A cell that raises becomes a failed record with its traceback and
the job goes on; a data problem found while loading or extracting (bad split file, unreadable
image) fails every cell of that dataset with one message, and the job goes on with the next.

Several processes may share one output folder and share its work: a process claims the cells
of one (dataset, seed) at a time as it goes (the per-seed view store stays shared by the cells of
that seed), each cell under its lock (``bench.locks``); a cell held by another live process is
left to it, so two processes on one output finish sooner than one and no cell runs twice.
Locks and temporary files of killed processes are cleaned up when a job starts. A full disk stops the job
with one message (``BenchError``); every record already written stays intact.
"""

from __future__ import annotations

import logging
import socket
from collections import defaultdict
from pathlib import Path

import torch

from bench.backbone import Backbone
from bench.base import determinism
from bench.base.errors import BenchError
from bench.locks import CellLocks
from bench.runner.dataset import run_dataset
from results.atomic import DiskFull, NotWritable, clean_temp_files
from results.store import ResultStore


log = logging.getLogger("bench.runner")


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BenchError(f"--device {name}: CUDA is not available on {socket.gethostname()}; "
                         f"use --device cpu")
    return dev


def run_job(job, progress=None) -> dict:
    """Run every cell of ``job`` (a bench.planner.Job); returns counts of cells done, failed,
    skipped (a result exists) and locked (another live process holds the cell's lock), and
    ``encode_s``, the seconds spent encoding images, and ``damaged_shards``, the (path, why) of
    the damaged feature cache shards deleted. ``progress`` (a bench.progress.LogProgress,
    or the job's ``progress`` attribute) is told where the run is and each cell finished."""
    progress = progress if progress is not None else getattr(job, "progress", None)
    counts = {"done": 0, "failed": 0, "skipped": 0, "locked": 0, "encode_s": 0.0,
              "view_encodes": 0, "damaged_shards": []}
    store = ResultStore(job.output)
    locks = CellLocks(store.output / "locks")
    _clean_leftovers(job, locks)
    by_dataset: dict[str, list[dict]] = defaultdict(list)
    for cell in job.cells:
        if store.exists(cell):
            counts["skipped"] += 1
        else:
            by_dataset[cell["dataset"]].append(cell)
    if progress is not None and counts["skipped"]:
        progress.skipped(counts["skipped"])
    if not by_dataset:
        return counts
    device = _device(job.device)
    _determinism(job, device)
    torch.set_grad_enabled(True)
    loaded: list = []

    def backbone():  # loaded when this process first claims a cell
        if not loaded:
            loaded.append(Backbone(job.backbone, job.pretrained, device))
        return loaded[0]

    try:
        with locks:
            for dataset, cells in by_dataset.items():
                run_dataset(job, backbone, dataset, cells, store, locks, counts, progress)
    except (DiskFull, NotWritable) as exc:
        raise BenchError(exc.advice()) from None
    return counts


def _determinism(job, device: torch.device) -> str:
    """Put the job's reproducibility policy in effect (bench.base.determinism) and check it is: the
    CPU part was set when bench was imported, in this process or the one that launched it."""
    policy = determinism.apply(job.options.get("determinism"))
    determinism.check(policy)
    determinism.apply_torch(policy, device)
    return policy


def _clean_leftovers(job, locks: CellLocks) -> None:
    """Temporary files and locks left by killed processes (live writers' files are kept)."""
    output = Path(job.output)
    n_tmp = clean_temp_files(output)
    cache = Path(job.cache_dir)
    if output.resolve() not in cache.resolve().parents:
        n_tmp += clean_temp_files(cache)
    n_locks = locks.clean_stale()
    if n_tmp or n_locks:
        log.info("removed %d temporary file(s) and %d stale lock(s) left by killed runs",
                 n_tmp, n_locks)
