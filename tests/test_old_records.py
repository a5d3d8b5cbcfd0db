"""Records written by earlier code stay readable, keep their identity and count as done.

tests/data/records-base/: written by the code this layout started from (commit ccf715d: a demo
zero-shot, linear-probe and CoOp record, and a failed record of a plugin method that raises);
tests/data/records-main/: written by main after issue 30 (records with a ``predictions`` block
this code does not know; their .pred.npz files are left out). Each folder is an output folder as
`bench run` wrote it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from results.records import CELL_KEYS, PROTOCOL_KEYS, cell_id
from results.store import ResultStore
from results.validate import record_problem

DATA = Path(__file__).parent / "data"
FOLDERS = ["records-base", "records-main"]


@pytest.fixture(params=FOLDERS)
def output(request, tmp_path):
    return Path(shutil.copytree(DATA / request.param, tmp_path / request.param))


def _files(output: Path) -> list[Path]:
    return sorted((output / "results").rglob("*.json"))


def test_every_old_record_is_read_sound_with_its_own_id(output):
    store = ResultStore(output)
    records = list(store.iter_records(include_failed=True))
    assert len(records) == len(_files(output)) and store.damaged == {}
    assert {r["status"] for r in records} == {"ok", "failed"}
    for rec in records:
        assert record_problem(rec) is None
        assert cell_id(rec) == rec["cell_id"]  # the identity hash never changes


def test_their_done_cells_are_skipped_and_failed_ones_rerun(output):
    """A cell rebuilt from its keys (what the planner makes) finds its old record."""
    store = ResultStore(output)
    for path in _files(output):
        rec = json.loads(path.read_text())
        cell = {k: rec[k] for k in (*CELL_KEYS, *PROTOCOL_KEYS, "inputs") if k in rec}
        assert store.exists(cell) == (rec["status"] == "ok"), path.name


def test_the_api_reads_them(output):
    import bench

    cells = bench.cells(output)
    assert len(cells) == len(_files(output))
    ok = cells[cells["status"] == "ok"]
    assert ok["top1"].notna().all() and cells[cells["status"] == "failed"]["top1"].isna().all()
    summary = bench.summary(output)
    assert set(summary["method"]) == set(cells["method"])
