"""A cell's lifecycle: its base record, few-shot subset and Task, the fit (seeded, on the fit
threads), the evaluation, and the record written (or the cell recorded as failed)."""

from __future__ import annotations

import datetime
import json
import platform
import socket
import sys
import time
import traceback
from functools import lru_cache
from pathlib import Path

import torch

from bench.base import determinism
from bench.evaluate import InvalidResult, check_info, evaluate_cell
from bench.identity import sampler_of
from bench.protocols import BaseNovel, protocol_of
from bench.runner.context import Context, DatasetDataError, views_of
from bench.sweep import DEFAULT_FIT_THREADS
from bench.threads import encode_threads, torch_threads
from bench.views import CachedViews, FixedViews, NoViews, cached_salt
from datasets_registry.fewshot import FewShotSubset, seed_everything
from methods import METHODS
from methods.base import FeatureSplit, Task
from methods.tuning import EncoderTask, is_encoder
from bench.encoder_cells import ImageTargets, check_frozen, encoder_task, test_inputs
from results.atomic import DiskFull, NotWritable, atomic_write_json
from results.facts import record_facts
from results.store import ResultStore
from results.validate import record_problem


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


def fit_threads(options: dict, device: torch.device) -> int | None:
    """Threads for fitting and evaluating a cell on a CPU (bench.threads); None on a GPU."""
    if device.type != "cpu":
        return None
    n = options.get("fit_threads", DEFAULT_FIT_THREADS)
    return int(n) if n else None


def base_record(cell, backbone) -> dict:
    policy = (cell.get("inputs") or {}).get("determinism") or determinism.requested()
    return {**cell, "weights": backbone.fingerprint, "versions": versions(),
            "determinism": determinism.describe(policy, backbone.device, encode_threads()),
            "host": socket.gethostname(),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "timings": {}}


def run_cell(cell, ctx: Context, backbone, test_feats, test_labels,
             store: ResultStore) -> dict:
    record = base_record(cell, backbone)
    try:
        enc0 = ctx.features.encode_seconds
        task = prepare_cell(cell, record, ctx, backbone, store)
        fit = METHODS.get(cell["method"])
        fitted, fit_s = timed_fit(ctx, backbone, cell["seed"], lambda: fit(task))
        if isinstance(task, EncoderTask):
            check_frozen(backbone)
        finish_cell(cell, record, ctx, task, fitted, fit_s,
                    ctx.features.encode_seconds - enc0, test_feats, test_labels)
    except (DiskFull, NotWritable, DatasetDataError):
        raise  # not the cell's fault: the run (disk, permissions) or the dataset (run_dataset)
    except Exception as exc:  # noqa: BLE001 - a failing cell must not stop the job
        cell_failed(cell, record, exc)
    return record


def prepare_cell(cell, record: dict, ctx: Context, backbone, store: ResultStore) -> Task:
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


def timed_fit(ctx: Context, backbone, seed: int, fit):
    """``fit()`` on the fit threads, seeded; (its result, seconds). Images it caused to be
    encoded (the dataset's eval-transform train/val union, on first use) are not fitting."""
    seed_everything(seed)
    enc1, t = ctx.features.encode_seconds, time.perf_counter()
    with torch_threads(fit_threads(ctx.job.options, backbone.device)):
        fitted = fit()
    return fitted, time.perf_counter() - t - (ctx.features.encode_seconds - enc1)


def finish_cell(cell, record: dict, ctx: Context, task: Task, fitted, fit_s: float,
                encode_s: float, test_feats, test_labels) -> None:
    """Evaluate the fitted cell and fill its record; what the method returned is checked first
    (bench.evaluate.InvalidResult: the cell fails, nothing is recorded as a number)."""
    info = check_info(fitted.info)
    record["timings"]["fit_s"] = round(fit_s, 4)
    if encode_s:
        record["timings"]["encode_s"] = round(encode_s, 4)
    threads = fit_threads(ctx.job.options, task.device)
    t = time.perf_counter()
    kept: dict = {}  # per-image predictions, written beside the record (results/predictions.py)
    scored = ctx
    if isinstance(task, EncoderTask):  # the test images, through the cell's own model
        scored, test_feats = ImageTargets(ctx), test_inputs(ctx)
    with torch_threads(threads):
        evaluations, primary, digest = evaluate_cell(cell, scored, fitted, test_feats,
                                                     test_labels, task.device, keep=kept)
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
    views = task.train if isinstance(task, EncoderTask) else task.train_views
    record["views"] = views.describe()
    facts = record_facts(cell["method"], METHODS.entry(cell["method"]).extra.get("facts"),
                         cell["config"])
    if facts is not None:  # what decides whether two rows may be ranked (results/facts.py)
        record["facts"] = facts
    record["status"] = "ok"
    record["_predictions"] = kept  # not a record field: ResultStore.write stores it as a file
    problem = record_problem(record)  # what `bench report` would refuse is not written as ok
    if problem is not None:
        raise InvalidResult(f"the result is not a sound record: {problem}")


def write_record(store: ResultStore, cell, record: dict) -> None:
    """Write a cell's record; one that cannot be written as JSON (a value of a plugin's) fails
    its cell instead of stopping the run."""
    predictions = record.pop("_predictions", None)
    try:
        store.write(record, predictions=predictions)
    except (TypeError, ValueError) as exc:
        if record.get("status") != "ok":
            raise
        cell_failed(cell, record, InvalidResult(f"the result cannot be written as JSON: {exc}"))
        store.write(record)


# What only a result has: a failed record keeps none of it (the failure may have come after the
# evaluation, from what was to be recorded).
RESULT_FIELDS = ("metrics", "evaluations", "logits_sha256", "selected", "features", "views",
                 "facts", "_predictions")


def cell_failed(cell, record: dict, exc: Exception) -> None:
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


def _build_task(cell, ctx: Context, backbone, classnames, subset: FewShotSubset) -> Task:
    if is_encoder(METHODS.entry(cell["method"])):  # images, not features (methods/tuning.py)
        return encoder_task(cell, ctx, backbone, classnames, subset)
    cfg = cell["config"]
    train_pos = ctx.positions("train", subset.train)
    val_pos = ctx.positions("val", subset.val)
    train = FeatureSplit(lambda: ctx.eval_rows("train", train_pos).to(backbone.device),
                         torch.tensor([l for _, l in subset.train], device=backbone.device))
    val = FeatureSplit(lambda: ctx.eval_rows("val", val_pos).to(backbone.device),
                       torch.tensor([l for _, l in subset.val], device=backbone.device))
    views = views_of(cell)
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
