"""Runs you can watch and share: `bench status` from the recorded plan, two processes sharing
one output's work, the progress line for log files, a failing cell."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_reliability import _SPY, BASE, _leftovers, _records

GRID = ["--datasets", "eurosat", "--methods", "zero_shot,linear_probe", "--shots", "1",
        "--device", "cpu"]


def test_status_tells_done_failed_running_and_pending_from_the_plan(run_cli, miniroot, tmp_path):
    from bench.locks import CellLocks
    from results.records import cell_id
    from results.store import ResultStore

    out = tmp_path / "out"
    code, _, err = run_cli(*BASE, "--data-root", miniroot, *GRID, "--seeds", "1,2",
                           "--output", out)
    assert code == 0, err
    plan = json.loads((out / "plan.json").read_text())
    assert len(plan["cells"]) == 4
    code, text, _ = run_cli("status", out)
    assert code == 0 and "4 cells: 4 done, 0 failed, 0 running, 0 pending" in text

    # As after a kill: one record gone and nobody on it, one gone and held by a live process,
    # one failed.
    store = ResultStore(out)
    a, b, c = plan["cells"][:3]
    store.path_for(a).unlink()
    store.path_for(b).unlink()
    failed = json.loads(store.path_for(c).read_text())
    store.path_for(c).unlink()
    failed.update(status="failed", error={"type": "RuntimeError", "message": "boom",
                                         "traceback": ""})
    failed.pop("metrics", None)
    store.failed_path_for(c).write_text(json.dumps(failed))
    with CellLocks(out / "locks") as locks:
        assert locks.try_acquire(cell_id(b)) is None
        code, text, _ = run_cli("status", out, "--cells")
    assert code == 1
    assert "4 cells: 1 done, 1 failed, 1 running, 1 pending" in text
    assert f"running: 1 cell(s) held by pid {os.getpid()}" in text
    assert "RuntimeError: boom" in text and "pending cells (1):" in text
    assert "eurosat/zero_shot/k1/s" in text or "eurosat/linear_probe/k1/s" in text

    code, text, _ = run_cli("status", out)  # the lock is gone: nobody runs the pending cells
    assert code == 1 and "0 running, 2 pending" in text
    assert "rerun the same `bench run` command to resume" in text


def test_damaged_plan_is_one_clear_error(run_cli, tmp_path):
    (tmp_path / "plan.json").write_text("{not json")
    code, _, err = run_cli("status", tmp_path)
    assert code == 2 and "plan.json is damaged" in err and "Traceback" not in err


@pytest.mark.slow
def test_two_concurrent_runs_share_one_datasets_seeds(miniroot, tmp_path):
    """One dataset, four seeds: the second process takes the seed groups the first does not
    hold (before, the first locked the whole dataset up front and the second did nothing)."""
    out = tmp_path / "out"
    spy = tmp_path / "spy.py"
    spy.write_text(_SPY)
    (tmp_path / "barrier").mkdir()
    env = {**os.environ, "SPY_LOG": str(tmp_path / "computed.log"),
           "SPY_BARRIER": str(tmp_path / "barrier"), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    argv = [sys.executable, str(spy)] + BASE + ["--data-root", str(miniroot), *GRID,
                                               "--seeds", "1,2,3,4", "--output", str(out)]
    procs = [subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, results):
        assert p.returncode == 0, err
    lines = (tmp_path / "computed.log").read_text().split()
    pids, cells = lines[0::2], lines[1::2]
    recs = _records(out)
    assert len(recs) == 8 and all(r["status"] == "ok" for r in recs.values())
    assert sorted(cells) == sorted(recs)  # each cell computed exactly once
    assert len(set(pids)) == 2  # both did work on the one dataset
    # a seed's cells ran in one process (its view store is shared by them)
    by_seed = {}
    for pid, cid in zip(pids, cells):
        by_seed.setdefault(recs[cid]["seed"], set()).add(pid)
    assert all(len(p) == 1 for p in by_seed.values())
    assert _leftovers(out) == []


def test_progress_line_counts_and_estimates():
    from bench.progress import LogProgress, log_progress

    t = [100.0]
    p = LogProgress(10, interval=0, stream=io.StringIO(), now=lambda: t[0])
    assert p.line() == "bench: progress: 0/10 cells; elapsed 0s, estimate after the first cell"
    p.at("eurosat", "coop")
    t[0] += 40
    p.finished()
    p.finished(failed=True)
    p.skipped(3)
    assert p.line() == ("bench: progress: 2/10 cells (1 failed, 3 done before or by another "
                        "process), now eurosat / coop; elapsed 40s, about 1m40s left")

    class Tty(io.StringIO):
        def isatty(self):
            return True

    assert log_progress(5, 30, Tty()).interval == 0  # a terminal has its own progress bars
    assert log_progress(5, 30, io.StringIO()).interval == 30


@pytest.mark.slow
def test_progress_lines_appear_in_a_log_file(miniroot, tmp_path):
    log = tmp_path / "run.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with open(log, "w") as fh:
        code = subprocess.call([sys.executable, "-m", "bench", *BASE, "--data-root",
                                str(miniroot), *GRID, "--seeds", "1,2", "--output",
                                str(tmp_path / "out"), "--progress-every", "0.2"],
                               stderr=fh, stdout=subprocess.DEVNULL, env=env)
    text = log.read_text()
    assert code == 0, text
    lines = [ln for ln in text.splitlines() if ln.startswith("bench: progress: ")]
    assert lines, text  # one every 0.2 s while it runs (a fast run may finish before the first)
    assert all("/4 cells" in ln and "elapsed" in ln for ln in lines)
    assert lines[-1].startswith("bench: progress: 4/4 cells") and "now eurosat / " in lines[-1]


def test_progress_every_must_not_be_negative(run_cli, miniroot, tmp_path):
    code, _, err = run_cli(*BASE, "--data-root", miniroot, *GRID, "--output", tmp_path / "o",
                           "--progress-every", "-1")
    assert code == 2 and "--progress-every must be 0 (never) or a number of seconds" in err
    assert not (tmp_path / "o").exists()


def test_a_failing_cell_is_recorded_and_the_others_run(run_cli, miniroot, tmp_path,
                                                       monkeypatch):
    """A method raising inside one cell (bad config values are refused at plan time, so the
    failure is injected into the method)."""
    from methods import METHODS

    entry = METHODS.entry("linear_probe")
    real = entry.obj

    def flaky(task):
        if task.shots == 2:
            raise RuntimeError("injected failure")
        return real(task)

    monkeypatch.setattr(entry, "obj", flaky)
    out = tmp_path / "out"
    code, _, err = run_cli(*BASE, "--data-root", miniroot, "--datasets", "eurosat", "--methods",
                           "zero_shot,linear_probe", "--shots", "1,2", "--seeds", "1",
                           "--output", out)
    assert code == 1 and "1 cell(s) failed" in err and "rerun to retry them" in err
    recs = _records(out, failed=True)
    failed = [r for r in recs.values() if r["status"] == "failed"]
    assert len(recs) == 4 and len(failed) == 1
    assert failed[0]["shots"] == 2 and "injected failure" in failed[0]["error"]["traceback"]
    assert _leftovers(out) == []


def test_progress_line_moves_during_a_long_encode_and_its_estimate_holds():
    """Issue 27: 2 of 6 cells done in a minute, then a 3,200-image pass at 1.5 img/s. The line
    says how far the pass is; the estimate follows the pass and falls as it goes (it was the
    elapsed time over the cells done, which grew from 3 to 19 minutes)."""
    from bench.progress import LogProgress

    t = [0.0]
    p = LogProgress(6, interval=0, stream=io.StringIO(), now=lambda: t[0])
    p.at("eurosat", "coop")
    t[0] = 30.0
    p.finished()
    t[0] = 60.0
    p.finished()
    p.encoding("eurosat seed 1: 64 img x 50 epochs", 3200)
    assert p.line() == ("bench: progress: 2/6 cells, now eurosat / coop; encoding eurosat seed "
                        "1: 64 img x 50 epochs: 0/3,200 images (starting); elapsed 1m00s, about "
                        "2m00s left")
    estimates = []
    for now in (600.0, 900.0, 1200.0):
        t[0] = now
        p.encoded(int(1.5 * (now - 60.0)) - p.pass_done)
        line = p.line()
        estimates.append(line.rsplit("about ", 1)[1])
    assert line == ("bench: progress: 2/6 cells, now eurosat / coop; encoding eurosat seed 1: 64 "
                    "img x 50 epochs: 1,710/3,200 images (1.5 img/s, about 16m33s more); "
                    "elapsed 20m00s, about 16m33s left")
    assert estimates == ["26m33s left", "21m33s left", "16m33s left"]  # falling, not growing
    p.encoding_done()
    t[0] = 1300.0
    # past the mean for the current cell: the three cells not started yet at the mean
    assert "encoding" not in p.line() and p.line().endswith("about 1m30s left")
    p.encoding("x", 10)
    p.finished()  # a pass cut by a failure does not linger in the next lines
    assert "encoding" not in p.line()


def test_encoding_passes_report_to_the_progress_meter(tiny_backbone, miniroot, tmp_path):
    from bench.features import DatasetFeatures, FeatureCache
    from datasets_registry import DATASETS

    calls = []

    class Meter:
        def encoding(self, desc, total):
            calls.append(("start", desc, total))

        def encoded(self, n):
            calls.append(("batch", n))

        def encoding_done(self):
            calls.append(("done",))

    splits = DATASETS.get("eurosat").load(miniroot)
    feats = DatasetFeatures(tiny_backbone, splits, FeatureCache(tmp_path), batch_size=4,
                            progress=False)
    feats.meter = Meter()
    feats.eval_features("test", list(range(len(splits.test))))
    assert calls[0] == ("start", "eurosat test", 6) and calls[-1] == ("done",)
    assert [c[1] for c in calls[1:-1]] == [4, 2]
    calls.clear()
    feats.eval_features("test", [0, 1])  # from the cache: no pass
    assert calls == []
