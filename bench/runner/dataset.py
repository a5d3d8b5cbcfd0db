"""The cells of one dataset in a job: claimed a seed at a time, its context built once, each
fit unit (a cell, or a joint fit) run and recorded; a data problem fails the dataset's cells
with one message."""

from __future__ import annotations

import sys
import time
import traceback

from bench.base.errors import BenchError
from bench.joint import fit_units, joint_limit
from bench.locks import CellLocks
from bench.runner import cell as lifecycle
from bench.runner.cell import base_record, write_record
from bench.runner.claims import Claims
from bench.runner.context import Context, DatasetDataError, extract, plan_views, views_of
from bench.runner.joint import run_joint
from results.records import cell_id
from results.store import ResultStore


def run_dataset(job, get_backbone, dataset_name, cells, store: ResultStore, locks: CellLocks,
                counts, progress=None) -> None:
    """Run the cells of one dataset that no other process holds, claiming one seed's cells at a
    time and releasing each lock once its record is written.

    A data problem (unreadable split file or image, ...) fails every cell of the dataset not yet
    done or held elsewhere, with one message; the job goes on with its other datasets.
    """
    # By seed: the protocol's view store of a seed is built for its first cell and freed after
    # its last, so one seed's store is in memory at a time; claiming a seed's cells together
    # keeps that sharing when several processes run on one output.
    claims = Claims(dataset_name, sorted(cells, key=lambda c: c["seed"]), store, locks,
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
                    ctx = Context(job, backbone, dataset_name)
                    ctx.features.meter = progress  # progress lines during long encodes
                    # every planned cell's subsets: the eval-transform union is encoded once
                    test_feats, test_labels = extract(ctx, cells, views_of=mine)
                except BenchError as exc:
                    fail_dataset(dataset_name, exc, mine + claims.claim_rest(seed), backbone,
                                 store, locks, counts, progress)
                    return
                setup_s = time.perf_counter() - t0
            else:
                try:
                    plan_views(ctx, mine)
                except BenchError as exc:
                    fail_dataset(dataset_name, DatasetDataError(str(exc)),
                                 mine + claims.claim_rest(seed), backbone, store, locks, counts,
                                 progress)
                    return
            limit = joint_limit(job.options.get("joint_fits"), backbone.device)
            for unit in fit_units(mine, limit, len(ctx.splits.classnames)):
                if progress is not None:
                    progress.at(dataset_name, unit[0]["method"])
                try:
                    if len(unit) == 1:
                        records = [lifecycle.run_cell(unit[0], ctx, backbone, test_feats,
                                                      test_labels, store)]
                    else:
                        records = run_joint(unit, ctx, backbone, test_feats, test_labels, store)
                except DatasetDataError as exc:
                    # Train/val images unreadable: these cells fail, and so does every later
                    # cell that reads them (the error is kept, not retried); the others still run.
                    fail_dataset(dataset_name, exc, unit, backbone, store, locks, counts,
                                 progress, announce=not ctx.data_errors)
                    ctx.data_errors.append(exc)
                    continue
                finally:
                    for cell in unit:
                        views = views_of(cell)
                        if views["mode"] == "online":
                            ctx.done_reading(views["transform"], cell["seed"])
                for cell, record in zip(unit, records):
                    record["timings"]["job_setup_s"] = round(setup_s, 3)
                    write_record(store, cell, record)
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


def fail_dataset(dataset, exc: BenchError, cells, backbone, store: ResultStore,
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
        record = base_record(cell, backbone)
        record["status"] = "failed"
        record["error"] = {"type": type(exc).__name__, "message": str(exc), "traceback": "",
                           "scope": "dataset"}
        store.write(record)
        locks.release(cell_id(cell))
        counts["failed"] += 1
        if progress is not None:
            progress.finished(failed=True)
