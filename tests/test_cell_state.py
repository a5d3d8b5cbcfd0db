"""One cell-state function (bench.cell_state) for `bench status` of every kind of sweep, the
SLURM/local sweep status and the launcher's wait loop: done / failed / stale / pending from the
shared record validation, never from a file merely being there."""

from __future__ import annotations

import json

import pytest

from bench.cell_state import DONE, FAILED, PENDING, STALE, cell_state
from bench.slurm import sweep_status
from bench.slurm.wait import _cell_counts
from results.atomic import atomic_write_json
from results.records import cell_id
from results.store import ResultStore
from tests.test_records import cell, ok


def failure(c):
    return {**c, "status": "failed", "error": {"type": "ValueError", "message": "boom"}}


def entry(store, c):
    """The cell as a submission record lists it."""
    return {"id": cell_id(c), "label": f"s{c['seed']}",
            "result": str(store.path_for(c).relative_to(store.output)),
            "failed": str(store.failed_path_for(c).relative_to(store.output))}


def _damage(path):
    rec = json.loads(path.read_text())
    rec["metrics"]["top1"] = 999.0
    path.write_text(json.dumps(rec))


def _garble(path):
    path.write_text('{"status": "fai')


# seed -> how the store is set up for that cell, and the state every caller must see
CASES = {
    1: ("nothing written", PENDING),
    2: ("ok record", DONE),
    3: ("failure record", FAILED),
    4: ("ok record, damaged", STALE),
    5: ("ok record of other inputs", STALE),
    6: ("failure record, not JSON", STALE),
    7: ("failure record of other inputs", STALE),
    8: ("damaged ok record beside a sound failure", FAILED),
}


@pytest.fixture()
def sweep(tmp_path):
    store = ResultStore(tmp_path / "out")
    cells = {s: cell(seed=s, inputs={"split": "now"}) for s in CASES}
    other = {s: {**cells[s], "inputs": {"split": "before"}} for s in CASES}
    store.write(ok(cells[2]))
    store.write(failure(cells[3]))
    store.write(ok(cells[4]))
    _damage(store.path_for(cells[4]))
    store.write(ok(other[5]))
    store.write(failure(cells[6]))
    _garble(store.failed_path_for(cells[6]))
    store.write(failure(other[7]))
    store.write(failure(cells[8]))
    atomic_write_json(store.path_for(cells[8]), {**ok(cells[8]), "cell_id": cell_id(cells[8])})
    _damage(store.path_for(cells[8]))
    return store, cells


@pytest.mark.parametrize("seed", sorted(CASES))
def test_each_state_for_planned_cells_and_submission_entries(sweep, seed):
    store, cells = sweep
    expected = CASES[seed][1]
    assert cell_state(ResultStore(store.output), cells[seed]) == expected, CASES[seed][0]
    assert cell_state(ResultStore(store.output), entry(store, cells[seed])) == expected


def test_sweep_status_and_the_wait_loop_agree_with_it(sweep):
    store, cells = sweep
    entries = [entry(store, c) for c in cells.values()]
    record = {"launcher": "local", "submitted": "2025-01-01T00:00:00+00:00", "array_id": None,
              "submitit_dir": str(store.output), "tasks": [{
                  "index": 0, "job_id": "999999999", "key": "k", "stdout": "o", "stderr": "e",
                  "result_pickle": str(store.output / "none.pkl"), "cells": entries}]}
    atomic_write_json(store.output / "sweep" / "submissions" / "20250101T000000-9.json", record)
    st = sweep_status(store.output, with_jobs=False)
    by_seed = lambda cs: sorted(int(c["label"][1:]) for c in cs)  # noqa: E731
    assert by_seed(st["done"]) == [2]
    assert by_seed(st["failed"]) == [3, 8]
    assert by_seed(st["stale"]) == [4, 5, 6, 7]
    assert by_seed(st["pending"]) == [1, 4, 5, 6, 7]
    assert _cell_counts(store.output, record) == (1, 2, 5)


def test_in_process_status_uses_it(sweep, capsys):
    from bench.cli import main

    store, cells = sweep
    atomic_write_json(store.output / "plan.json",
                      {"created": "2025-01-01T00:00:00", "cells": list(cells.values())})
    assert main(["status", str(store.output), "--cells"]) == 1
    out = capsys.readouterr().out
    assert "8 cells: 1 done, 2 failed, 0 running, 5 pending" in out
