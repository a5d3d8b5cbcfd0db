"""The core API (bench/api.py): a Sweep from Python values, planned and executed without the
command line; the per-cell frame; the CLI and the API agree on their options."""

from __future__ import annotations

import math

import pytest

from results.store import ResultStore
from tests.conftest import TINY


def test_a_sweep_takes_every_run_flag_and_nothing_else():
    """bench.Sweep's fields are `bench run`'s flags (by destination), so neither side can gain
    an option the other lacks (--no-wait is ``wait``; --include is the CLI's global flag)."""
    from bench.api import sweep_fields
    from bench.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")  # noqa: SLF001
    dests = {a.dest for a in sub.choices["run"]._actions if a.option_strings} - {"help"}  # noqa: SLF001
    assert set(sweep_fields()) == (dests - {"dry_run", "no_wait"}) | {"wait"}


def test_run_plans_and_executes_without_an_argv(miniroot, tmp_path, monkeypatch):
    """bench.run builds no command line: with the parser unavailable it still runs, resumes,
    and returns the summary."""
    import bench
    import bench.cli

    def no_parser(*args, **kwargs):
        raise AssertionError("bench.run built an argv")

    monkeypatch.setattr(bench.cli, "build_parser", no_parser)
    kwargs = dict(methods="zero_shot", datasets="dtd", shots=[1], seeds=[1, 2],
                  output=tmp_path / "o", data_root=miniroot, backbone=TINY, pretrained="none")
    frame = bench.run(**kwargs)
    assert list(frame["dataset"]) == ["dtd", "average"] and (frame["n"] == 2).all()
    plan = bench.Sweep(**kwargs).plan()
    assert (len(plan.cells), plan.n_done, plan.n_todo) == (2, 2, 0)
    outcome = bench.execute(plan)
    assert (outcome.cells, outcome.done_before, outcome.ran, outcome.code) == (2, 2, 0, 0)


def test_a_sweep_reports_bad_values_like_the_cli(tmp_path):
    import bench
    from bench.base.errors import UsageError

    with pytest.raises(UsageError, match="--shots '1,,2': item 2 is empty"):
        bench.Sweep(shots="1,,2", output=tmp_path).resolve()
    with pytest.raises(UsageError, match="--launcher 'cloud': choose one of inprocess, local"):
        bench.Sweep(launcher="cloud", output=tmp_path).resolve()


def _record(method, seed, status="ok", **extra):
    rec = {"backbone": "RN50", "pretrained": "openai", "dataset": "dtd", "method": method,
           "variant": None, "config": {"lr": 0.002}, "shots": 4, "seed": seed,
           "status": status, "created": "2024-01-01T00:00:00", **extra}
    if status == "ok":
        rec["metrics"] = {"top1": 50.0 + seed, "mean_per_class": 49.0 + seed, "n_test": 100}
    else:
        rec["error"] = {"type": "RuntimeError", "message": "boom", "traceback": ""}
    return rec


def test_cells_is_one_row_per_record_with_its_parts_flattened(tmp_path):
    import bench

    store = ResultStore(tmp_path)
    store.write(_record("linear_probe", 1, selected={"C": 0.5}, timings={"fit_s": 1.5}))
    store.write(_record("linear_probe", 2, selected={"C": 2.0}, timings={"fit_s": 1.0}))
    store.write(_record("zero_shot", 1, status="failed"))
    frame = bench.cells(tmp_path)
    assert len(frame) == 3
    lp = frame[frame["method"] == "linear_probe"].sort_values("seed")
    assert list(lp["top1"]) == [51.0, 52.0] and list(lp["mean_per_class"]) == [50.0, 51.0]
    assert list(lp["selected.C"]) == [0.5, 2.0] and list(lp["timings.fit_s"]) == [1.5, 1.0]
    assert lp["config"].iloc[0] == {"lr": 0.002} and set(lp["protocol"]) == {"fewshot"}
    failed = frame[frame["method"] == "zero_shot"].iloc[0]
    assert failed["status"] == "failed" and math.isnan(failed["top1"])
    assert failed["error"] == "RuntimeError: boom"
    assert list(bench.cells(tmp_path, methods="zero_shot")["method"]) == ["zero_shot"]
    assert len(bench.cells(tmp_path, include_failed=False)) == 2


def test_no_module_of_bench_hides_an_api_name():
    """``bench.execute`` must stay the function once a submodule has been imported."""
    from pathlib import Path

    import bench

    folder = Path(bench.__file__).parent
    assert [n for n in bench.API if (folder / f"{n}.py").exists() or (folder / n).is_dir()] == []


def test_the_notebook_example_runs_on_the_demo_and_resumes(tmp_path, monkeypatch, capsys):
    """examples/notebook.py (README's walk-through) runs as written; a second run runs nothing."""
    import runpy
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "examples" / "notebook.py"
    monkeypatch.setattr(sys, "argv", [str(script), str(tmp_path / "nb")])
    runpy.run_path(str(script), run_name="__main__")
    first = capsys.readouterr().out
    assert "8 cells, 0 done, 8 to run" in first and "ran 8 cells, 0 failed" in first
    assert "| Zero-shot CLIP" in first and "linear probe's C per cell: [" in first
    runpy.run_path(str(script), run_name="__main__")
    assert "8 cells, 8 done, 0 to run" in capsys.readouterr().out
