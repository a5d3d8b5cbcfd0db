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

import datetime
from functools import lru_cache
import hashlib
import json
import logging
import platform
import socket
import sys
import time
import traceback
from collections import defaultdict
from pathlib import Path

import torch

from bench.base import determinism
from bench.backbone import Backbone
from bench.base.errors import BenchError
from bench.evaluate import InvalidResult, Target, check_info, evaluate_cell
from bench.features import DatasetFeatures, FeatureCache
from bench.identity import draw_subset, sampler_of
from bench.joint import fit_units, joint_limit
from bench.protocols import BaseNovel, base_subset, protocol_of
from bench.sweep import DEFAULT_FIT_THREADS
from bench.threads import encode_threads, torch_threads
from bench.views import (CachedViews, EpochViewStore, FixedViews, NoViews, cached_salt,
                         epoch_salt, resolve_views)
from datasets_registry import DATASETS
from datasets_registry.fewshot import FewShotSubset, seed_everything
from methods import METHODS
from methods._training import OptimConfig, total_steps
from methods.base import FeatureSplit, Task
from bench.locks import CellLocks
from results.atomic import DiskFull, NotWritable, atomic_write_json, clean_temp_files
from results.records import cell_id
from results.store import ResultStore
from results.validate import record_problem

log = logging.getLogger(__name__)

# Config keys read by the core (not by the method):
#   feature_mode: online | cached   for methods whose ViewSpec is per_epoch (bench.views)
#   n_views: int                    views per image in cached mode, or a fixed-views method's V
#   fewshot_sampler: dassl | lpclip the few-shot sampler (datasets_registry.fewshot.SAMPLERS)
# (checked at plan time with every method's schema: bench/base/schema.py)


def versions() -> dict:
    """Library versions recorded in every result (a copy: callers may change it)."""
    return dict(_versions())


@lru_cache(maxsize=None)
def _versions() -> dict:
    """scikit-learn's from its package metadata: importing it only to read the version cost
    every run 1.2 s (the others are imported by the run anyway)."""
    from importlib.metadata import PackageNotFoundError, version

    import numpy
    import open_clip
    import torchvision

    from bench import __version__

    try:
        sklearn = version("scikit-learn")
    except PackageNotFoundError:
        sklearn = "not installed"
    return {"bench": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "open_clip": open_clip.__version__,
            "numpy": numpy.__version__, "sklearn": sklearn}


def dataset_features(backbone, splits, cache: FeatureCache, opts: dict) -> DatasetFeatures:
    """The feature extractor of one dataset, with the run's options (batch size, decoding
    workers and where images are decoded, autocast, progress bars)."""
    return DatasetFeatures(
        backbone, splits, cache, batch_size=opts.get("batch_size", 64),
        workers=opts.get("workers", 0), decode=opts.get("decode", "cpu"),
        autocast=_autocast(opts.get("autocast", "auto"), backbone.device),
        progress=opts.get("progress", True))


def fit_threads(options: dict, device: torch.device) -> int | None:
    """Threads for fitting and evaluating a cell on a CPU (bench.threads); None on a GPU."""
    if device.type != "cpu":
        return None
    n = options.get("fit_threads", DEFAULT_FIT_THREADS)
    return int(n) if n else None


def _autocast(option, device: torch.device) -> bool:
    """fp16 autocast for image encoding: 'on', 'off', or 'auto' (on for CUDA; docs/protocol.md §6: the
    original code runs CLIP in fp16 on a GPU). Autocast never applies on a CPU."""
    if option in (True, "on"):
        return True
    return option == "auto" and device.type == "cuda"


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
                _run_dataset(job, backbone, dataset, cells, store, locks, counts, progress)
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


class _Claims:
    """Claiming a dataset's cells as the run goes, one (dataset, seed) group at a time."""

    def __init__(self, dataset: str, cells, store: ResultStore, locks: CellLocks, counts,
                 progress):
        self.dataset, self.store, self.locks = dataset, store, locks
        self.counts, self.progress = counts, progress
        self.groups: dict[int, list[dict]] = defaultdict(list)
        for cell in cells:
            self.groups[cell["seed"]].append(cell)
        self.holders: list = []

    def claim(self, group: list[dict]) -> list[dict]:
        """The cells of ``group`` this process now holds; cells done meanwhile or held by another
        live process are left (and counted). A short-lived claim lock per group keeps two
        processes that reach a group at the same moment from splitting it between them."""
        first = group[0]
        key = f"{first['backbone']}|{first['pretrained']}|{self.dataset}|{first['seed']}"
        claim = "claim-" + hashlib.sha1(key.encode()).hexdigest()[:16]
        deadline = time.monotonic() + 30
        while self.locks.try_acquire(claim) is not None and time.monotonic() < deadline:
            time.sleep(0.02)  # another process is claiming this group: milliseconds
        try:
            return self._claim_cells(group)
        finally:
            self.locks.release(claim)

    def _claim_cells(self, group: list[dict]) -> list[dict]:
        mine = []
        for cell in group:
            holder = self.locks.try_acquire(cell_id(cell))
            if holder is not None:
                self.holders.append(holder)
                self.counts["locked"] += 1
                self._skip()
            elif self.store.exists(cell):  # finished by another process since the plan
                self.locks.release(cell_id(cell))
                self.counts["skipped"] += 1
                self._skip()
            else:
                mine.append(cell)
        return mine

    def claim_rest(self, after_seed) -> list[dict]:
        """Every free cell of the groups after ``after_seed`` (None: all groups)."""
        return [c for seed, group in self.groups.items()
                if after_seed is None or seed > after_seed for c in self.claim(group)]

    def _skip(self) -> None:
        if self.progress is not None:
            self.progress.skipped(1)

    def report(self) -> None:
        if self.holders:
            print(f"bench: {self.dataset}: {len(self.holders)} cell(s) skipped, another bench "
                  f"process is running them ({self.holders[0].describe()})", file=sys.stderr)


class DatasetDataError(BenchError):
    """A dataset's images or files failed while a cell ran: the dataset's cells fail, not one."""


class _Context:
    """What all cells of one (backbone, dataset) share."""

    def __init__(self, job, backbone, dataset_name: str):
        opts = job.options
        self.dataset = DATASETS.get(dataset_name)
        self.splits = self.dataset.load(Path(job.data_root))
        self.features = dataset_features(
            backbone, self.splits,
            FeatureCache(Path(job.cache_dir), opts.get("cache_dtype", "float32")), opts)
        self.position = {s: _positions(self.splits.split(s)) for s in ("train", "val")}
        self.subsets: dict[tuple[int, int, str], FewShotSubset] = {}
        self.union: dict[str, list[int]] = {}  # per split, the positions any cell uses
        self._encoded: set[str] = set()
        self._broken: dict = {}  # split or view store key -> its DatasetDataError
        self.data_errors: list[DatasetDataError] = []
        # The protocol's per-epoch views: per (transform, seed), the epochs each train position
        # is trained on by some cell, the store once built, and how many cells still read it.
        self.epoch_needs: dict[tuple[str, int], dict[int, int]] = defaultdict(dict)
        self.epoch_readers: dict[tuple[str, int], int] = defaultdict(int)
        self.epoch_stores: dict[tuple[str, int], EpochViewStore] = {}
        self.view_encodes = 0  # (image, epoch) crops encoded into the stores
        self.job, self.backbone = job, backbone
        self.targets: dict[str, Target] = {}

    def eval_rows(self, split: str, positions: list[int]) -> torch.Tensor:
        """Eval-transform features of ``positions``; the first call for a split encodes what all
        cells of the dataset need in one pass. A data error here is the dataset's, kept: later
        cells that read the split fail with it at once."""
        if split in self._broken:
            raise self._broken[split]
        try:
            if split not in self._encoded:
                self.features.eval_features(split, self.union.get(split, positions))
                self._encoded.add(split)
            return self.features.eval_features(split, positions)
        except BenchError as exc:
            self._broken[split] = DatasetDataError(str(exc))
            raise self._broken[split] from None

    def subset(self, shots: int, seed: int, sampler: str = "dassl") -> FewShotSubset:
        key = (shots, seed, sampler)
        if key not in self.subsets:
            subset = draw_subset(self.splits, shots, seed, sampler)
            if subset.short_classes:
                note = short_classes_note(self.dataset.display_name, subset, self.splits.classnames)
                print(f"bench: warning: {note}", file=sys.stderr)
            self.subsets[key] = subset
        return self.subsets[key]

    def cell_subset(self, cell) -> FewShotSubset:
        subset = self.subset(cell["shots"], cell["seed"], sampler_of(cell["config"]))
        if protocol_of(cell) == "base2novel":
            return base_subset(subset, BaseNovel(len(self.splits.classnames)))
        return subset

    def target(self, name: str) -> "Target":
        """A transfer protocol's target dataset: its test features (encoded once per job)."""
        if name not in self.targets:
            target = DATASETS.get(name)
            splits = target.load(Path(self.job.data_root))
            extractor = dataset_features(self.backbone, splits, self.features.cache,
                                         self.job.options)
            extractor.meter = self.features.meter
            feats = extractor.eval_features("test", list(range(len(splits.test))))
            self.targets[name] = Target(target, splits, feats,
                                        torch.tensor([lbl for _, lbl in splits.test]))
            self.features.encode_seconds += extractor.encode_seconds
        return self.targets[name]

    def positions(self, split: str, items) -> list[int]:
        return [self.position[split][tuple(it)] for it in items]

    def epoch_views(self, transform: str, seed: int, positions: list[int]):
        """The cell's rows of the (transform, seed) view store, built on first use (every
        (image, epoch) the seed's cells need, encoded once) and freed after its last reader."""
        key = (transform, seed)
        if key in self._broken:
            raise self._broken[key]
        if key not in self.epoch_stores:
            salt = epoch_salt(transform, seed)
            dtype = torch.float16 if self.features.cache.dtype == "float16" else torch.float32

            def encode(pos: list[int], n_epochs: int) -> torch.Tensor:
                return self.features.augmented(
                    pos, range(n_epochs), transform, salt, cache=False,
                    desc=f"{self.splits.name} seed {seed}: {len(pos)} img x {n_epochs} epochs")

            try:
                store = EpochViewStore(self.epoch_needs[key], encode, dtype)
            except BenchError as exc:
                self._broken[key] = DatasetDataError(str(exc))
                raise self._broken[key] from None
            self.epoch_stores[key] = store
            self.view_encodes += store.n_encoded
        return self.epoch_stores[key]

    def done_reading(self, transform: str, seed: int) -> None:
        key = (transform, seed)
        self.epoch_readers[key] -= 1
        if self.epoch_readers[key] <= 0:
            self.epoch_stores.pop(key, None)


def short_classes_note(dataset: str, subset: FewShotSubset, classnames: list[str]) -> str:
    """One line: which classes had fewer images than asked (all of them are then used)."""
    parts = []
    for split, short in subset.short_classes.items():
        want = subset.shots if split == "train" else min(subset.shots, 4)
        names = ", ".join(f"{classnames[label]!r} {n}" for label, n in sorted(short.items())[:3])
        more = f" and {len(short) - 3} more" if len(short) > 3 else ""
        parts.append(f"{len(short)} class(es) of {split} have fewer than {want} distinct "
                     f"images ({names}{more})")
    return (f"{dataset} {subset.shots}-shot seed {subset.seed}: {'; '.join(parts)}; all their "
            f"images are used (CoOp's rule), recorded in the result as fewshot.short_classes")


def _positions(items) -> dict:
    pos: dict = {}
    for i, it in enumerate(items):
        pos.setdefault(tuple(it), i)
    return pos


def _run_dataset(job, get_backbone, dataset_name, cells, store: ResultStore, locks: CellLocks,
                 counts, progress=None) -> None:
    """Run the cells of one dataset that no other process holds, claiming one seed's cells at a
    time and releasing each lock once its record is written.

    A data problem (unreadable split file or image, ...) fails every cell of the dataset not yet
    done or held elsewhere, with one message; the job goes on with its other datasets.
    """
    # By seed: the protocol's view store of a seed is built for its first cell and freed after
    # its last, so one seed's store is in memory at a time; claiming a seed's cells together
    # keeps that sharing when several processes run on one output.
    claims = _Claims(dataset_name, sorted(cells, key=lambda c: c["seed"]), store, locks,
                     counts, progress)
    ctx = None
    try:
        for seed, group in claims.groups.items():
            mine = claims.claim(group)
            if not mine:
                continue
            backbone = get_backbone()
            if ctx is None:
                t0 = time.perf_counter()
                try:
                    ctx = _Context(job, backbone, dataset_name)
                    ctx.features.meter = progress  # progress lines during long encodes
                    # every planned cell's subsets: the eval-transform union is encoded once
                    test_feats, test_labels = _extract(ctx, cells, views_of=mine)
                except BenchError as exc:
                    _fail_dataset(dataset_name, exc, mine + claims.claim_rest(seed), backbone,
                                  store, locks, counts, progress)
                    return
                setup_s = time.perf_counter() - t0
            else:
                try:
                    _plan_views(ctx, mine)
                except BenchError as exc:
                    _fail_dataset(dataset_name, DatasetDataError(str(exc)),
                                  mine + claims.claim_rest(seed), backbone, store, locks, counts,
                                  progress)
                    return
            limit = joint_limit(job.options.get("joint_fits"), backbone.device)
            for unit in fit_units(mine, limit, len(ctx.splits.classnames)):
                if progress is not None:
                    progress.at(dataset_name, unit[0]["method"])
                try:
                    if len(unit) == 1:
                        records = [_run_cell(unit[0], ctx, backbone, test_feats, test_labels,
                                             store)]
                    else:
                        records = _run_joint(unit, ctx, backbone, test_feats, test_labels, store)
                except DatasetDataError as exc:
                    # Train/val images unreadable: these cells fail, and so does every later
                    # cell that reads them (the error is kept, not retried); the others still run.
                    _fail_dataset(dataset_name, exc, unit, backbone, store, locks, counts,
                                  progress, announce=not ctx.data_errors)
                    ctx.data_errors.append(exc)
                    continue
                finally:
                    for cell in unit:
                        views = _views_of(cell)
                        if views["mode"] == "online":
                            ctx.done_reading(views["transform"], cell["seed"])
                for cell, record in zip(unit, records):
                    record["timings"]["job_setup_s"] = round(setup_s, 3)
                    _write_record(store, cell, record)
                    locks.release(cell_id(cell))
                    counts["done" if record["status"] == "ok" else "failed"] += 1
                    if progress is not None:
                        progress.finished(failed=record["status"] != "ok")
    finally:
        claims.report()
        if ctx is not None:
            counts["encode_s"] += ctx.features.encode_seconds  # incl. online views
            counts["view_encodes"] += ctx.view_encodes
            counts["damaged_shards"] += ctx.features.cache.damaged  # (path, why) each


def _views_of(cell) -> dict:
    """The train views a cell gets (planned into ``cell["inputs"]``; resolved here otherwise)."""
    planned = (cell.get("inputs") or {}).get("views")
    if planned:
        return planned
    spec = METHODS.entry(cell["method"]).extra.get("views")
    return resolve_views(spec, cell["config"], cell["seed"])


def _extract(ctx: _Context, cells, views_of=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Extract what the cells need up front, in few large batches; test features/labels.

    Test features once for every cell; V cached or fixed views of the union of the images that
    need them; the protocol's per-epoch views are only planned here (which image for how many
    epochs, per seed) and encoded when the seed's first cell runs (_Context.epoch_views).
    """
    test_feats = ctx.features.eval_features("test", list(range(len(ctx.splits.test))))
    test_labels = torch.tensor([lbl for _, lbl in ctx.splits.test])
    subsets = [ctx.cell_subset(c) for c in cells]
    ctx.union["train"] = sorted({p for s in subsets for p in ctx.positions("train", s.train)})
    ctx.union["val"] = sorted({p for s in subsets for p in ctx.positions("val", s.val)})
    _plan_views(ctx, cells if views_of is None else views_of)
    # Train and val with the eval transform: encoded on first use (see _Context.eval_rows).
    return test_feats, test_labels


def _plan_views(ctx: _Context, cells) -> None:
    """The train views of ``cells`` (the cells this process holds): per-epoch views planned into
    their seed's store (encoded when its first cell runs), cached or fixed views encoded now."""
    subsets = [ctx.cell_subset(c) for c in cells]
    fixed: dict[tuple, set[int]] = defaultdict(set)
    for cell, subset in zip(cells, subsets):
        views = _views_of(cell)
        train_pos = ctx.positions("train", subset.train)
        if views["mode"] == "online":
            key = (views["transform"], cell["seed"])
            needs = ctx.epoch_needs[key]
            for p in train_pos:
                needs[p] = max(needs.get(p, 0), views["epochs"])
            ctx.epoch_readers[key] += 1
        elif views["mode"] in ("cached", "fixed"):
            fixed[(views["transform"], views["n_views"], cell["seed"])].update(train_pos)
    for (transform, n_views, seed), positions in fixed.items():
        ctx.features.augmented(sorted(positions), range(n_views), transform,
                               cached_salt(transform, seed))


def _fail_dataset(dataset, exc: BenchError, cells, backbone, store: ResultStore,
                  locks: CellLocks, counts, progress=None, announce: bool | None = None) -> None:
    """Record ``cells`` as failed by a data error; ``announce``: True prints the error as the
    cause of the cells of the dataset that read that data, None (default) as the cause of
    ``cells``, False prints nothing (already said)."""
    if announce is None:
        print(f"bench: error: {dataset}: {exc}\nbench: {dataset}: its {len(cells)} cell(s) are "
              f"recorded as failed; fix the data and rerun", file=sys.stderr)
    elif announce:
        print(f"bench: error: {dataset}: {exc}\nbench: {dataset}: the cells that read these "
              f"images are recorded as failed; fix the data and rerun", file=sys.stderr)
    for cell in cells:
        record = _base_record(cell, backbone)
        record["status"] = "failed"
        record["error"] = {"type": type(exc).__name__, "message": str(exc), "traceback": "",
                           "scope": "dataset"}
        store.write(record)
        locks.release(cell_id(cell))
        counts["failed"] += 1
        if progress is not None:
            progress.finished(failed=True)


def _base_record(cell, backbone) -> dict:
    policy = (cell.get("inputs") or {}).get("determinism") or determinism.requested()
    return {**cell, "weights": backbone.fingerprint, "versions": versions(),
            "determinism": determinism.describe(policy, backbone.device, encode_threads()),
            "host": socket.gethostname(),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "timings": {}}


def _run_cell(cell, ctx: _Context, backbone, test_feats, test_labels,
              store: ResultStore) -> dict:
    record = _base_record(cell, backbone)
    try:
        enc0 = ctx.features.encode_seconds
        task = _prepare_cell(cell, record, ctx, backbone, store)
        fit = METHODS.get(cell["method"])
        fitted, fit_s = _timed_fit(ctx, backbone, cell["seed"], lambda: fit(task))
        _finish_cell(cell, record, ctx, task, fitted, fit_s,
                     ctx.features.encode_seconds - enc0, test_feats, test_labels)
    except (DiskFull, NotWritable, DatasetDataError):
        raise  # not the cell's fault: the run (disk, permissions) or the dataset (_run_dataset)
    except Exception as exc:  # noqa: BLE001 - a failing cell must not stop the job
        _cell_failed(cell, record, exc)
    return record


def _run_joint(cells, ctx: _Context, backbone, test_feats, test_labels,
               store: ResultStore) -> list[dict]:
    """Cells that differ only in shots, fitted together (bench.joint); each evaluated and
    recorded as its own cell, its ``timings.fit_s`` the share of the joint fit in proportion to
    its steps. If the joint fit fails, every cell runs alone: a problem of the joint pass (its
    memory, say) costs time, never a result."""
    records = [_base_record(cell, backbone) for cell in cells]
    failure = None
    try:
        enc0 = ctx.features.encode_seconds
        tasks = [_prepare_cell(c, r, ctx, backbone, store) for c, r in zip(cells, records)]
        together = METHODS.entry(cells[0]["method"]).extra["fit_together"]
        fitted, fit_s = _timed_fit(ctx, backbone, cells[0]["seed"], lambda: together(tasks))
    except (DiskFull, NotWritable, DatasetDataError):
        raise
    except Exception as exc:  # noqa: BLE001 - the cells still run, one by one
        failure = f"{type(exc).__name__}: {exc}"
    if failure is not None:  # outside the handler: the failed fit's tensors are freed first
        c = cells[0]
        print(f"bench: warning: joint fit of {c['dataset']}/{c['method']}/s{c['seed']} shots "
              f"{','.join(str(x['shots']) for x in cells)} failed ({failure}); fitting each "
              f"cell alone", file=sys.stderr)
        return [_run_cell(cell, ctx, backbone, test_feats, test_labels, store) for cell in cells]
    encode_s = ctx.features.encode_seconds - enc0
    steps = [_steps(task) for task in tasks]
    group = {"cells": len(cells), "shots": [c["shots"] for c in cells],
             "prompts": sum(len(t.classnames) for t in tasks), "fit_s": round(fit_s, 4)}
    for i, (cell, record, task) in enumerate(zip(cells, records, tasks)):
        try:
            record["joint_fit"] = group
            _finish_cell(cell, record, ctx, task, fitted[i], fit_s * steps[i] / sum(steps),
                         encode_s if i == 0 else 0.0, test_feats, test_labels)
        except (DiskFull, NotWritable, DatasetDataError):
            raise
        except Exception as exc:  # noqa: BLE001
            _cell_failed(cell, record, exc)
    return records


def _steps(task: Task) -> int:
    """Training steps of a cell (at least 1, so every cell gets a share of a joint fit)."""
    return max(1, total_steps(len(task.train), OptimConfig.from_config(task.config)))


def _prepare_cell(cell, record: dict, ctx: _Context, backbone, store: ResultStore) -> Task:
    """The cell's few-shot subset (written beside the results, noted in ``record``) and Task."""
    subset = ctx.cell_subset(cell)
    split_path = store.split_path(cell["dataset"], cell["shots"], cell["seed"])
    if sampler_of(cell["config"]) != "dassl":
        split_path = split_path.with_name(
            f"{split_path.stem}-{sampler_of(cell['config'])}{split_path.suffix}")
    if protocol_of(cell) == "base2novel":  # the subset cut to the base classes
        split_path = split_path.with_name(f"{split_path.stem}-base{split_path.suffix}")
    _write_subset(split_path, subset.to_json())
    record["fewshot"] = {"path": str(split_path.relative_to(store.output)),
                         "n_train": len(subset.train), "n_val": len(subset.val),
                         "short_classes": subset.to_json()["short_classes"]}
    if subset.duplicates:  # repeated list entries, each image counted once
        record["fewshot"]["duplicates"] = dict(subset.duplicates)
    classnames = ctx.splits.prompt_classnames
    if protocol_of(cell) == "base2novel":  # the model sees the base classes only
        classnames = BaseNovel(len(classnames)).classnames(classnames)["base"]
    return _build_task(cell, ctx, backbone, classnames, subset)


def _timed_fit(ctx: _Context, backbone, seed: int, fit):
    """``fit()`` on the fit threads, seeded; (its result, seconds). Images it caused to be
    encoded (the dataset's eval-transform train/val union, on first use) are not fitting."""
    seed_everything(seed)
    enc1, t = ctx.features.encode_seconds, time.perf_counter()
    with torch_threads(fit_threads(ctx.job.options, backbone.device)):
        fitted = fit()
    return fitted, time.perf_counter() - t - (ctx.features.encode_seconds - enc1)


def _finish_cell(cell, record: dict, ctx: _Context, task: Task, fitted, fit_s: float,
                 encode_s: float, test_feats, test_labels) -> None:
    """Evaluate the fitted cell and fill its record; what the method returned is checked first
    (bench.evaluate.InvalidResult: the cell fails, nothing is recorded as a number)."""
    info = check_info(fitted.info)
    record["timings"]["fit_s"] = round(fit_s, 4)
    if encode_s:
        record["timings"]["encode_s"] = round(encode_s, 4)
    threads = fit_threads(ctx.job.options, task.device)
    t = time.perf_counter()
    with torch_threads(threads):
        evaluations, primary, digest = evaluate_cell(cell, ctx, fitted, test_feats,
                                                     test_labels, task.device)
    record["timings"]["eval_s"] = round(time.perf_counter() - t, 4)
    if threads:
        record["timings"]["fit_threads"] = threads
    record["metrics"] = evaluations[primary]
    if protocol_of(cell) != "fewshot":
        record["evaluations"] = evaluations
    # A fingerprint of every test prediction: equal across runs iff bit-identical.
    record["logits_sha256"] = digest
    record["selected"] = info
    record["features"] = ctx.features.describe()
    record["views"] = task.train_views.describe()
    record["status"] = "ok"
    problem = record_problem(record)  # what `bench report` would refuse is not written as ok
    if problem is not None:
        raise InvalidResult(f"the result is not a sound record: {problem}")


def _write_record(store: ResultStore, cell, record: dict) -> None:
    """Write a cell's record; one that cannot be written as JSON (a value of a plugin's) fails
    its cell instead of stopping the run."""
    try:
        store.write(record)
    except (TypeError, ValueError) as exc:
        if record.get("status") != "ok":
            raise
        _cell_failed(cell, record, InvalidResult(f"the result cannot be written as JSON: {exc}"))
        store.write(record)


# What only a result has: a failed record keeps none of it (the failure may have come after the
# evaluation, from what was to be recorded).
RESULT_FIELDS = ("metrics", "evaluations", "logits_sha256", "selected", "features", "views")


def _cell_failed(cell, record: dict, exc: Exception) -> None:
    for key in RESULT_FIELDS:
        record.pop(key, None)
    record["status"] = "failed"
    record["error"] = {"type": type(exc).__name__, "message": str(exc),
                       "traceback": "".join(traceback.format_exception(exc))}
    print(f"bench: cell {cell['dataset']}/{cell['method']}/k{cell['shots']}/s{cell['seed']} "
          f"failed: {type(exc).__name__}: {exc}", file=sys.stderr)


def _write_subset(path: Path, subset: dict) -> None:
    """The portable few-shot subset file, rewritten when the split it came from changed."""
    try:
        if json.loads(path.read_text()) == subset:
            return
    except (OSError, ValueError):
        pass
    atomic_write_json(path, subset)


def _build_task(cell, ctx: _Context, backbone, classnames, subset: FewShotSubset) -> Task:
    cfg = cell["config"]
    train_pos = ctx.positions("train", subset.train)
    val_pos = ctx.positions("val", subset.val)
    train = FeatureSplit(lambda: ctx.eval_rows("train", train_pos).to(backbone.device),
                         torch.tensor([l for _, l in subset.train], device=backbone.device))
    val = FeatureSplit(lambda: ctx.eval_rows("val", val_pos).to(backbone.device),
                       torch.tensor([l for _, l in subset.val], device=backbone.device))
    views = _views_of(cell)
    if views["mode"] == "online":
        store = ctx.epoch_views(views["transform"], cell["seed"], train_pos)
        train_views = store.views(train_pos, backbone.device, views)
    elif views["mode"] in ("cached", "fixed"):
        feats = ctx.features.augmented(train_pos, range(views["n_views"]), views["transform"],
                                       cached_salt(views["transform"], cell["seed"]))
        kind = CachedViews if views["mode"] == "cached" else FixedViews
        train_views = kind(feats.to(backbone.device), cell["seed"], views)
    else:
        train_views = NoViews()
    return Task(dataset=cell["dataset"], classnames=classnames, templates=ctx.dataset.templates,
                shots=cell["shots"], seed=cell["seed"], config=cfg, device=backbone.device,
                train=train, val=val, train_views=train_views, backbone=backbone)
