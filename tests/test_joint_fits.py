"""`bench run --joint-fits`: the cells of a seed that differ only in shots are fitted together
(bench/joint.py), each recorded as its own cell with the same result as alone."""

from __future__ import annotations

import json

import pytest

from bench.joint import (CPU_JOINT_PROMPTS, DEFAULT_JOINT_PROMPTS, check_option, fit_units,
                         joint_limit)
from methods import METHODS


class _Device:
    def __init__(self, kind):
        self.type = kind


def _cell(method="coop", shots=1, seed=1, **config):
    return {"backbone": "b", "pretrained": None, "dataset": "dtd", "method": method,
            "variant": "default", "shots": shots, "seed": seed,
            "config": {"n_ctx": 16, "csc": False, "class_chunk": None, "epochs": 10 * shots,
                       **config}}


def test_joint_limit_follows_the_device():
    assert joint_limit("auto", _Device("cuda")) == DEFAULT_JOINT_PROMPTS
    assert joint_limit(None, _Device("cuda")) == DEFAULT_JOINT_PROMPTS
    assert joint_limit("auto", _Device("cpu")) == CPU_JOINT_PROMPTS < DEFAULT_JOINT_PROMPTS
    assert joint_limit("off", _Device("cuda")) == 0
    assert joint_limit("on", _Device("cpu")) == DEFAULT_JOINT_PROMPTS
    assert joint_limit(300, _Device("cpu")) == 300
    assert joint_limit(0, _Device("cuda")) == 0
    # YAML reads a bare on / off as True / False
    assert [check_option(v) for v in ("auto", "on", "off", 0, "512", -1, "x", True, False)] == \
        ["auto", "on", "off", 0, 512, None, None, "on", "off"]


def test_fit_units_group_the_shot_counts_of_a_joinable_method():
    cells = [_cell("zero_shot", 1)] + [_cell(shots=k) for k in (1, 2, 4, 8, 16)] + \
            [_cell(shots=k, csc=True) for k in (1, 2)] + [_cell(shots=k, n_ctx=4) for k in (1, 2)]
    shots = lambda units: [[(c["method"], c["shots"]) for c in u] for u in units]
    # 100 classes, 250 prompts: two cells a pass, the most shots first
    units = fit_units(cells, 250, 100)
    assert shots(units) == [[("zero_shot", 1)], [("coop", 16), ("coop", 8)],
                            [("coop", 4), ("coop", 2)], [("coop", 1)],
                            [("coop", 1)], [("coop", 2)],  # csc: one context per class, alone
                            [("coop", 2), ("coop", 1)]]    # another n_ctx: its own group
    assert shots(fit_units(cells, 1024, 100))[1] == [("coop", k) for k in (16, 8, 4, 2, 1)]
    assert all(len(u) == 1 for u in fit_units(cells, 1024, 1000))  # ImageNet: one a pass
    assert all(len(u) == 1 for u in fit_units(cells, 0, 10))        # off
    assert sorted(map(id, sum(units, []))) == sorted(map(id, cells))
    # other seeds never share a pass
    assert all(len(u) == 1 for u in fit_units([_cell(seed=1), _cell(seed=2)], 1024, 10))


def test_sweep_yaml_joint_fits_off_is_off(tmp_path, run_cli):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("joint_fits: off\n")  # YAML 1.1: the boolean False
    code, _, err = run_cli("run", "--config", sweep, "--output", tmp_path / "o", "--dry-run")
    assert code == 0, err


def _run(run_cli, miniroot, out, *flags):
    code, _, err = run_cli("run", "--data-root", miniroot, "--datasets", "dtd", "--methods",
                           "coop,kgcoop,zero_shot", "--shots", "1,2,4", "--seeds", "1",
                           "--backbone", "bench-test-tiny", "--pretrained", "none",
                           "--device", "cpu", "--set", "epochs=2", "--set", "batch_size=2", "--output", out,
                           "--quiet",
                           *flags)
    assert code == 0, err
    records = {}
    for path in (out / "results").rglob("*.json"):
        rec = json.loads(path.read_text())
        records[(rec["method"], rec["shots"])] = rec
    return records, err


def test_joint_fits_from_the_cli_give_the_one_by_one_results(tmp_path, miniroot, run_cli):
    alone, _ = _run(run_cli, miniroot, tmp_path / "alone", "--joint-fits", "off")
    joint, _ = _run(run_cli, miniroot, tmp_path / "joint", "--joint-fits", "1024")
    assert alone.keys() == joint.keys() and len(joint) == 9
    for key, rec in joint.items():
        assert rec["status"] == "ok", rec.get("error")
        assert rec["metrics"] == pytest.approx(alone[key]["metrics"], abs=1e-9), key
        assert "joint_fit" not in alone[key]
    for method in ("coop", "kgcoop"):
        group = joint[(method, 1)]["joint_fit"]
        assert group["cells"] == 3 and group["shots"] == [4, 2, 1]
        fits = [joint[(method, k)]["timings"]["fit_s"] for k in (1, 2, 4)]
        assert sum(fits) == pytest.approx(group["fit_s"], abs=1e-3)
        assert fits[0] < fits[2]  # shares in proportion to steps
        assert all(joint[(method, k)]["joint_fit"] == group for k in (2, 4))
    assert "joint_fit" not in joint[("zero_shot", 1)]


def test_a_failing_joint_fit_falls_back_to_one_by_one(tmp_path, miniroot, run_cli,
                                                      monkeypatch):
    def broken(tasks):
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setitem(METHODS.entry("coop").extra, "fit_together", broken)
    records, err = _run(run_cli, miniroot, tmp_path / "o", "--joint-fits", "1024")
    assert "joint fit of dtd/coop/s1 shots 4,2,1 failed" in err and "alone" in err
    assert all(r["status"] == "ok" for r in records.values())
    assert all("joint_fit" not in records[("coop", k)] for k in (1, 2, 4))
    assert records[("kgcoop", 1)]["joint_fit"]["cells"] == 3


@pytest.mark.parametrize("value", ["sometimes", "-3"])
def test_bad_joint_fits_is_a_usage_error(tmp_path, run_cli, value):
    code, _, err = run_cli("run", "--joint-fits", value, "--output", tmp_path, "--dry-run")
    assert code == 2 and "--joint-fits" in err and "Traceback" not in err
