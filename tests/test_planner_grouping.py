"""The planner without any launcher: grouping cells into jobs and skipping cells already done."""

from __future__ import annotations

import pickle
from collections import Counter

import pytest

from bench.config import MethodSpec
from bench.base.errors import UsageError
from bench.planner import GROUPINGS, Job, expand_cells, plan
from results.records import cell_id
from results.store import ResultStore

BACKBONES = [("bench-test-tiny", "none"), ("bench-test-tiny", "/w/other.pt")]
DATASETS = ["eurosat", "dtd"]
METHODS = [MethodSpec("zero_shot"), MethodSpec("linear_probe")]
SHOTS = [1, 2, 4]
SEEDS = [1, 2]
N = len(BACKBONES) * len(DATASETS) * len(METHODS) * len(SHOTS) * len(SEEDS)  # 48


@pytest.fixture(scope="module")
def cells():
    return expand_cells(BACKBONES, DATASETS, METHODS, SHOTS, SEEDS)


def _plan(cells, tmp_path, **kw):
    return plan(cells, data_root="/data", output=str(tmp_path), cache_dir=str(tmp_path / "cache"),
                device="cpu", **kw)


def _ok(store, cell):
    store.write({**cell, "status": "ok", "metrics": {"top1": 1.0, "mean_per_class": 1.0, "n_test": 100}})


def test_expand_is_the_full_grid_with_unique_cells(cells):
    assert len(cells) == N
    assert len({cell_id(c) for c in cells}) == N


def test_default_groups_by_backbone_and_dataset(cells, tmp_path):
    jobs = _plan(cells, tmp_path)
    assert len(jobs) == len(BACKBONES) * len(DATASETS)
    seen = Counter()
    for job in jobs:
        assert {(c["backbone"], c["pretrained"], c["dataset"]) for c in job.cells} == {
            (job.backbone, job.pretrained, job.dataset)}
        assert len(job.cells) == len(METHODS) * len(SHOTS) * len(SEEDS)
        seen.update(cell_id(c) for c in job.cells)
        assert job.output == str(tmp_path) and job.data_root == "/data" and job.device == "cpu"
    assert len(seen) == N and set(seen.values()) == {1}  # every cell in exactly one job
    # jobs follow the grid order, and so do the cells inside a job
    order = [cell_id(c) for c in cells]
    flat = [cell_id(c) for j in jobs for c in j.cells]
    assert flat == order


@pytest.mark.parametrize("group_by,n_jobs,per_job", [
    ("backbone", 2, 24), ("dataset", 4, 12), ("method", 8, 6), ("cell", 48, 1)])
def test_finer_and_coarser_groupings(cells, tmp_path, group_by, n_jobs, per_job):
    jobs = _plan(cells, tmp_path, group_by=group_by)
    assert len(jobs) == n_jobs
    assert {len(j.cells) for j in jobs} == {per_job}
    assert sorted(cell_id(c) for j in jobs for c in j.cells) == sorted(cell_id(c) for c in cells)
    for job in jobs:  # a job never mixes the fields it is grouped by
        for field in GROUPINGS[group_by]:
            assert len({str(c[field]) for c in job.cells}) == 1, (group_by, field)


def test_backbone_grouping_spans_datasets(cells, tmp_path):
    job = _plan(cells, tmp_path, group_by="backbone")[0]
    assert {c["dataset"] for c in job.cells} == set(DATASETS)
    assert "eurosat" in job.key and "dtd" in job.key


def test_unknown_grouping_is_a_usage_error(cells, tmp_path):
    with pytest.raises(UsageError, match="unknown grouping 'datset'"):
        _plan(cells, tmp_path, group_by="datset")


def test_skip_existing(cells, tmp_path):
    store = ResultStore(tmp_path)
    done = cells[:5]  # the first five cells of the first (backbone, dataset)
    for c in done:
        _ok(store, c)
    failed = cells[5]
    store.write({**failed, "status": "failed", "error": {"type": "E", "message": "m"}})
    jobs = _plan(cells, tmp_path)
    planned = [cell_id(c) for j in jobs for c in j.cells]
    assert len(planned) == N - len(done)
    assert not {cell_id(c) for c in done} & set(planned)
    assert cell_id(failed) in planned  # a failed cell is retried
    # skip_done=False plans everything again
    assert sum(len(j.cells) for j in _plan(cells, tmp_path, skip_done=False)) == N


def test_a_group_with_every_cell_done_is_no_job(cells, tmp_path):
    store = ResultStore(tmp_path)
    first = (cells[0]["backbone"], cells[0]["pretrained"], cells[0]["dataset"])
    for c in cells:
        if (c["backbone"], c["pretrained"], c["dataset"]) == first:
            _ok(store, c)
    jobs = _plan(cells, tmp_path)
    assert len(jobs) == 3
    assert first not in {(j.backbone, j.pretrained, j.dataset) for j in jobs}
    for c in cells:
        _ok(store, c)
    assert _plan(cells, tmp_path) == []


def test_another_config_is_another_cell(tmp_path):
    """A result with other config values does not satisfy a cell (the config is in its id)."""
    store = ResultStore(tmp_path)
    base = expand_cells(BACKBONES[:1], ["dtd"], [MethodSpec("linear_probe")], [1], [1])
    assert len(_plan(base, tmp_path)) == 1  # planning fingerprints the cell's inputs
    _ok(store, base[0])
    other = expand_cells(BACKBONES[:1], ["dtd"], [MethodSpec("linear_probe")], [1], [1],
                         {"linear_probe": {"max_iter": 10}})
    assert _plan(base, tmp_path) == []
    assert len(_plan(other, tmp_path)) == 1


def test_jobs_pickle_and_have_their_own_options(cells, tmp_path):
    opts = {"batch_size": 8}
    jobs = _plan(cells, tmp_path, options=opts)
    back = pickle.loads(pickle.dumps(jobs))
    assert [j.key for j in back] == [j.key for j in jobs]
    assert back[0].cells == jobs[0].cells and isinstance(back[0], Job)
    jobs[0].options["batch_size"] = 99
    assert jobs[1].options["batch_size"] == 8 and opts["batch_size"] == 8
