"""Where one cell of a sweep stands: done, failed, stale or pending.

One answer for `bench status` (in-process sweeps from ``plan.json``, SLURM and local sweeps from
their submission records) and for the launcher's wait loop, using the record validation that the
planner and `bench report` use (``ResultStore.read`` -> ``results.validate.record_problem``):

* ``done``: a sound ``ok`` record of exactly this cell (its ``cell_id``, which covers the cell's
  inputs);
* ``failed``: no such record, but a sound failure record of this cell;
* ``stale``: a record file in the cell's place that does not count (damaged, warned about once,
  or the record of other inputs); ``bench run`` computes the cell again, so it is pending work;
* ``pending``: nothing written yet.
"""

from __future__ import annotations

from pathlib import Path

DONE, FAILED, STALE, PENDING = "done", "failed", "stale", "pending"


def is_entry(cell: dict) -> bool:
    """A submission record's cell entry ({id, label, result, failed}) rather than a planned cell."""
    return {"id", "result", "failed"} <= set(cell)


def cell_state(store, cell: dict) -> str:
    """``cell``: a planned cell (plan.json, the planner) or a submission record's entry, whose
    ``result``/``failed`` paths are relative to the store's output folder."""
    from results.records import cell_id

    if is_entry(cell):
        cid = cell["id"]
        result, failed = store.output / cell["result"], store.output / cell["failed"]
        rec = store.read(result) if result.is_file() else None
        if rec is not None and rec["status"] == "ok" and rec.get("cell_id", cid) == cid:
            return DONE
    else:
        cid = cell_id(cell)
        result, failed = store.path_for(cell), store.failed_path_for(cell)
        if store.exists(cell):  # also finds a record in the older folder layout
            return DONE
    failure = store.read(failed) if failed.is_file() else None
    if (failure is not None and failure["status"] == "failed"
            and failure.get("cell_id", cid) == cid):
        return FAILED
    return STALE if Path(result).is_file() or Path(failed).is_file() else PENDING
