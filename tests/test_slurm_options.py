"""SLURM options (flags over the sweep YAML's `slurm:` mapping), sbatch script contents and the
status helpers; none of this needs a SLURM cluster."""

from __future__ import annotations

import argparse
import json

import pytest

from bench.base.errors import UsageError
from bench.slurm import (DEFAULT_TIME, SLURM_YAML_KEYS, _expand_slurm_ids, _make_executor,
                         add_slurm_arguments, parse_sbatch_args, parse_time_minutes,
                         slurm_options)


def parse(*argv):
    p = argparse.ArgumentParser()
    add_slurm_arguments(p)
    return p.parse_args(list(argv))


def test_defaults():
    opts = slurm_options(parse(), {})
    assert opts["time_min"] == parse_time_minutes(DEFAULT_TIME) == 240
    assert opts["partition"] is None and opts["sbatch_args"] == []
    assert opts["additional_parameters"] == {}
    args = parse()
    assert args.no_wait is False and args.wait is True


def test_no_wait_sets_both_spellings():
    args = parse("--no-wait")
    assert args.no_wait is True and args.wait is False


def test_flags_win_over_yaml():
    sweep = {"slurm": {"partition": "gpu", "account": "lab", "time": 90, "cpus_per_job": 8,
                       "gpus_per_job": 1, "mem": "32G", "array_parallelism": 4,
                       "sbatch_args": ["--constraint=a100"], "qos": "high"}}
    opts = slurm_options(parse("--partition", "debug", "--time", "1:00:00",
                               "--sbatch-arg=--exclusive", "--sbatch-arg", "--gres gpu:2"), sweep)
    assert opts["partition"] == "debug" and opts["account"] == "lab" and opts["qos"] == "high"
    assert opts["time_min"] == 60 and opts["cpus_per_job"] == 8 and opts["gpus_per_job"] == 1
    assert opts["mem"] == "32G" and opts["array_parallelism"] == 4
    assert opts["additional_parameters"] == {"exclusive": True, "gres": "gpu:2"}


@pytest.mark.parametrize("value,minutes", [(90, 90), ("90", 90), ("1:30:00", 90),
                                           ("2-00:00", 2880), ("1-12:00:00", 2160),
                                           ("45:00", 45), ("2-3", 3060)])
def test_time_formats(value, minutes):
    assert parse_time_minutes(value) == minutes


@pytest.mark.parametrize("sweep,message", [
    ({"slurm": {"partitoin": "gpu"}}, "unknown key 'slurm.partitoin'; did you mean 'partition'"),
    ({"slurm": {"gpus-per-job": 1}}, "did you mean 'gpus_per_job'"),
    ({"slurm": {"time": "soon"}}, "slurm.time: 'soon' is not a time limit"),
    ({"slurm": {"time": 0}}, "must be positive"),
    ({"slurm": {"cpus_per_job": 0}}, "slurm.cpus_per_job: expected a whole number of CPUs"),
    ({"slurm": {"gpus_per_job": "two"}}, "slurm.gpus_per_job: expected a whole number"),
    ({"slurm": {"array_parallelism": True}}, "slurm.array_parallelism"),
    ({"slurm": {"mem": "lots"}}, "slurm.mem: expected a memory size"),
    ({"slurm": {"partition": ["a", "b"]}}, "slurm.partition: expected a partition name"),
    ({"slurm": {"sbatch_args": [1]}}, "slurm.sbatch_args: expected a list"),
    ({"slurm": {"sbatch_args": ["-C a100"]}}, "give long sbatch options"),
    ({"slurm": {"sbatch_args": ["--array=0-3"]}}, "--array is set by bench/submitit"),
    ({"slurm": "gpu"}, "'slurm' must be a mapping"),
])
def test_bad_yaml_values_are_usage_errors(sweep, message):
    with pytest.raises(UsageError, match=None) as err:
        slurm_options(parse(), sweep)
    assert message in str(err.value)


def test_bad_flag_names_the_flag():
    with pytest.raises(UsageError, match="--time: '3 hours'"):
        slurm_options(parse("--time", "3 hours"), {})
    with pytest.raises(UsageError, match="--cpus-per-job"):
        slurm_options(parse("--cpus-per-job", "0"), {})


def test_every_yaml_key_has_a_flag():
    args = parse()
    for key in SLURM_YAML_KEYS:
        assert hasattr(args, key), key


def test_mem_units():
    assert slurm_options(parse("--mem", "16gb"), {})["mem"] == "16G"
    assert slurm_options(parse(), {"slurm": {"mem": 4000}})["mem"] == "4000M"


def test_sbatch_args_parsing():
    assert parse_sbatch_args(["--constraint=a100 --exclusive", "--mail-type END"]) == {
        "constraint": "a100", "exclusive": True, "mail_type": "END"}


def test_sbatch_script_has_the_options(tmp_path, monkeypatch):
    """What submitit would hand sbatch, without submitting."""
    monkeypatch.setattr("shutil.which", lambda name: "/usr/bin/" + name)
    opts = slurm_options(parse("--partition", "gpu", "--account", "lab", "--qos", "high",
                               "--time", "2:00:00", "--gpus-per-job", "1", "--cpus-per-job",
                               "6", "--mem", "24G", "--array-parallelism", "3",
                               "--sbatch-arg=--constraint=a100"), {})
    ex = _make_executor("slurm", tmp_path, opts)
    text = ex._executor._make_submission_file_text("python -m x", "uid")
    for line in ("--partition=gpu", "--account=lab", "--qos=high", "--time=120",
                 "--gpus-per-node=1", "--cpus-per-task=6", "--mem=24G", "--constraint=a100",
                 "--job-name=bench"):
        assert line in text, f"{line} not in\n{text}"


def test_expand_array_ids():
    assert _expand_slurm_ids("12_3") == ["12_3"]
    assert _expand_slurm_ids("12_[1-3,5%2]") == ["12_1", "12_2", "12_3", "12_5"]
    assert _expand_slurm_ids("12") == ["12"]


def test_status_of_an_inprocess_sweep(tmp_path, capsys):
    from bench.cli import main
    from results.store import ResultStore

    store = ResultStore(tmp_path)
    base = {"backbone": "m", "pretrained": None, "dataset": "dtd", "method": "zero_shot",
            "variant": None, "config": {}, "shots": 1}
    store.write({**base, "seed": 1, "status": "ok",
                 "metrics": {"top1": 50.0, "mean_per_class": 50.0, "n_test": 100}})
    store.write({**base, "seed": 2, "status": "failed",
                 "error": {"type": "ValueError", "message": "boom", "traceback": "Tb line"}})
    assert main(["status", str(tmp_path), "--tracebacks"]) == 1
    out = capsys.readouterr().out
    assert "1 cells done, 1 failed" in out and "dtd/zero_shot/k1/s2: ValueError: boom" in out
    assert "| Tb line" in out


def test_status_of_a_recorded_submission(tmp_path, capsys):
    """A local submission whose process is gone: done, failed and lost cells, the failed task."""
    from bench.cli import main
    from results.atomic import atomic_write_json

    from results.records import cell_id

    (tmp_path / "results").mkdir()
    done = {"backbone": "m", "pretrained": None, "dataset": "dtd", "method": "m",
            "variant": None, "config": {}, "shots": 1, "seed": 1, "status": "ok",
            "metrics": {"top1": 50.0, "mean_per_class": 50.0, "n_test": 100}}
    (tmp_path / "results" / "a.json").write_text(json.dumps({**done, "cell_id": cell_id(done)}))
    failed = {**done, "seed": 2, "status": "failed", "error": {"type": "KeyError", "message": "x"}}
    del failed["metrics"]
    (tmp_path / "results" / "b.failed.json").write_text(
        json.dumps({**failed, "cell_id": cell_id(failed)}))
    # a done or failure record must be a sound record of its cell's own (bench.cell_state)
    ids = {1: cell_id(done), 2: cell_id(failed), 3: "c-id"}
    cells = [{"id": ids[i], "label": f"dtd/m/k1/s{i}", "result": f"results/{n}.json",
              "failed": f"results/{n}.failed.json"} for i, n in ((1, "a"), (2, "b"), (3, "c"))]
    log = tmp_path / "99_0_log.err"
    log.write_text("Traceback ...\nMemoryError: killed\n")
    atomic_write_json(tmp_path / "sweep" / "submissions" / "20250101T000000-99.json", {
        "launcher": "local", "submitted": "2025-01-01T00:00:00+00:00", "array_id": None,
        "submitit_dir": str(tmp_path), "tasks": [{
            "index": 0, "job_id": "999999999", "key": "m|none|dtd|m", "stdout": "o",
            "stderr": str(log), "result_pickle": str(tmp_path / "none.pkl"), "cells": cells}]})
    assert main(["status", str(tmp_path), "--cells"]) == 1
    out = capsys.readouterr().out
    assert "3 cells: 1 done, 1 failed, 1 pending" in out
    assert "999999999 LOST" in out and str(log) in out and "MemoryError: killed" in out
    assert "dtd/m/k1/s2: KeyError: x" in out
    assert "1 pending cell(s) belong to tasks that are no longer running" in out


def test_job_function_checkpoints_the_same_job():
    """On a time limit or preemption submitit resubmits what checkpoint() returns: the same
    job, which then skips the cells already written."""
    from submitit.helpers import Checkpointable, DelayedSubmission

    from bench.planner import Job
    from bench.slurm import BenchJob

    fn = BenchJob()
    job = Job("m", None, "dtd", "/d", "/o", "/c", "cpu", [{"dataset": "dtd", "method": "x"}], {})
    assert isinstance(fn, Checkpointable)
    delayed = fn.checkpoint(job)
    assert isinstance(delayed, DelayedSubmission)
    assert delayed.function is fn and delayed.args == (job,)
    import pickle

    assert pickle.loads(pickle.dumps(delayed)).args[0].key == job.key
