"""Joint fits: cells that differ only in shots trained together (bench.joint, --joint-fits),
each evaluated and recorded as its own cell."""

from __future__ import annotations

import sys

from bench.runner import cell as lifecycle
from bench.runner.cell import base_record, cell_failed, finish_cell, prepare_cell, timed_fit
from bench.runner.context import Context, DatasetDataError
from methods import METHODS
from methods._training import OptimConfig, total_steps
from methods.base import Task
from results.atomic import DiskFull, NotWritable
from results.store import ResultStore


def run_joint(cells, ctx: Context, backbone, test_feats, test_labels,
              store: ResultStore) -> list[dict]:
    """Cells that differ only in shots, fitted together (bench.joint); each evaluated and
    recorded as its own cell, its ``timings.fit_s`` the share of the joint fit in proportion to
    its steps. If the joint fit fails, every cell runs alone: a problem of the joint pass (its
    memory, say) costs time, never a result."""
    records = [base_record(cell, backbone) for cell in cells]
    failure = None
    try:
        enc0 = ctx.features.encode_seconds
        tasks = [prepare_cell(c, r, ctx, backbone, store) for c, r in zip(cells, records)]
        together = METHODS.entry(cells[0]["method"]).extra["fit_together"]
        fitted, fit_s = timed_fit(ctx, backbone, cells[0]["seed"], lambda: together(tasks))
    except (DiskFull, NotWritable, DatasetDataError):
        raise
    except Exception as exc:  # noqa: BLE001 - the cells still run, one by one
        failure = f"{type(exc).__name__}: {exc}"
    if failure is not None:  # outside the handler: the failed fit's tensors are freed first
        c = cells[0]
        print(f"bench: warning: joint fit of {c['dataset']}/{c['method']}/s{c['seed']} shots "
              f"{','.join(str(x['shots']) for x in cells)} failed ({failure}); fitting each "
              f"cell alone", file=sys.stderr)
        return [lifecycle.run_cell(cell, ctx, backbone, test_feats, test_labels, store)
                for cell in cells]
    encode_s = ctx.features.encode_seconds - enc0
    steps = [_steps(task) for task in tasks]
    group = {"cells": len(cells), "shots": [c["shots"] for c in cells],
             "prompts": sum(len(t.classnames) for t in tasks), "fit_s": round(fit_s, 4)}
    for i, (cell, record, task) in enumerate(zip(cells, records, tasks)):
        try:
            record["joint_fit"] = group
            finish_cell(cell, record, ctx, task, fitted[i], fit_s * steps[i] / sum(steps),
                        encode_s if i == 0 else 0.0, test_feats, test_labels)
        except (DiskFull, NotWritable, DatasetDataError):
            raise
        except Exception as exc:  # noqa: BLE001
            cell_failed(cell, record, exc)
    return records


def _steps(task: Task) -> int:
    """Training steps of a cell (at least 1, so every cell gets a share of a joint fit)."""
    return max(1, total_steps(len(task.train), OptimConfig.from_config(task.config)))
