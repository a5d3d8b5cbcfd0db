"""benchmarks/grid.py: the generated stand-ins load through the registered datasets, and the
projection's arithmetic (plan counts, cost model, prediction) on hand-computed cases."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

import grid  # noqa: E402
import grid_data  # noqa: E402


def test_scaled_sizes():
    s = grid_data.scaled(grid_data.BY_NAME["imagenet"], 0.01, cap=200)
    assert (s.classes, s.train_per_class, s.val_per_class, s.test) == (10, 200, 0, 500)
    e = grid_data.scaled(grid_data.BY_NAME["eurosat"], 0.01, cap=200)
    assert (e.classes, e.test) == (2, 81)  # at least 2 classes
    d = grid_data.scaled(grid_data.BY_NAME["dtd"], 1.0, cap=200)
    assert (d.classes, d.train_per_class, d.val_per_class, d.test) == (47, 60, 24, 1692)
    with pytest.raises(ValueError):
        grid_data.scaled(grid_data.BY_NAME["dtd"], 0)


@pytest.mark.parametrize("name", ["dtd", "fgvc_aircraft", "imagenet", "stanford_cars"])
def test_generated_dataset_loads(tmp_path, name):
    from PIL import Image

    from datasets_registry import DATASETS

    spec = grid_data.Scaled(name, 3, 4, 2, 7, (48, 32))
    written = grid_data.write_dataset(tmp_path, spec, distinct=2)
    splits = DATASETS.get(name).load(tmp_path)
    # real class names (real prompt lengths), as the dataset's loader reads them
    assert splits.classnames == ["tench", "goldfish", "great white shark"]
    assert len(set(grid_data.class_names(1000))) == 1000
    assert len(splits.test) == 7
    assert len(splits.train) == 12
    if name != "imagenet":
        assert len(splits.val) == 6
    assert written == 12 + 7 + (0 if name == "imagenet" else 6)
    rel = splits.train[0][0]
    with Image.open(splits.image_dir / rel) as im:
        assert im.size == (48, 32)
    # every listed file exists and is a JPEG
    for rel, _ in splits.train + splits.test:
        assert (splits.image_dir / rel).read_bytes()[:2] == b"\xff\xd8"
    assert grid_data.write_dataset(tmp_path, spec, distinct=2) == 0  # reused


def _cells(methods, dataset, shots, seeds):
    from methods import METHODS

    names = METHODS.select(methods)
    return grid.grid_cells([dataset], names, shots, seeds, "bench-test-tiny", None)[dataset]


def test_plan_counts_coop_by_hand():
    # pool of 2 per class = the 2-shot subset is every image; the 1-shot subset is inside it.
    # CoOp trains 1-shot for 50 epochs, 2-shot for 100: each image's crops = 100 epochs.
    s = grid_data.Scaled("dtd", 5, 2, 4, 30, (64, 64))
    counts = grid.plan_counts(s, _cells("coop", "dtd", [1, 2], [1]))
    assert counts["epoch_views"] == 5 * 2 * 100
    assert counts["fixed_views"] == 0
    assert counts["test"] == 30
    units = {c["shots"]: c["fit"]["units"] for c in counts["cells"]}
    # steps = epochs x ceil(n_train / 32), times the 5 classes the text encoder runs over
    assert units == {1: 50 * 1 * 5, 2: 100 * 1 * 5}
    assert {c["shots"]: c["fit"]["steps"] for c in counts["cells"]} == {1: 50, 2: 100}
    assert all(c["eval"]["test_classes"] == 30 * 5 for c in counts["cells"])


def test_plan_counts_fixed_views_per_seed():
    # Tip-Adapter: 10 fixed views of each train image, per seed; pool 1 per class = 1-shot
    # subset is every image, the same for both seeds
    s = grid_data.Scaled("dtd", 4, 1, 1, 8, (64, 64))
    counts = grid.plan_counts(s, _cells("tip_adapter", "dtd", [1], [1, 2]))
    assert counts["fixed_views"] == 2 * 4 * 10
    assert counts["fixed_first"] == 4 * 10
    assert counts["eval_union"] == 4 + 4  # train images + val images


def test_fit_features_by_kind_of_method():
    coop = grid.fit_features("coop", {"epochs": {"by_shots": {4: 100}}, "batch_size": 32}, 4,
                             n_train=40, n_val=16, classes=10)
    assert coop == {"cell": 1.0, "steps": 200, "step_classes": 2000, "units": 2000}
    cocoop = grid.fit_features("cocoop", {"epochs": 10, "batch_size": 1}, 4, 40, 16, 10)
    assert cocoop["steps"] == 400 and cocoop["units"] == 10 * 40 * 10
    adapter = grid.fit_features("clip_adapter_visual", {"epochs": 50, "batch_size": 32}, 1,
                                10, 10, 10)
    assert adapter["units"] == adapter["steps"] == 50
    probe = grid.fit_features("linear_probe", {"max_iter": 1000}, 4, 40, 16, 10)
    assert probe == {"cell": 1.0, "image_classes": 400, "classes": 10, "units": 400}


def test_reuse_without_a_run_says_so(tmp_path):
    proc = subprocess.run([sys.executable, str(BENCH / "grid.py"), "--scale", "0.01",
                           "--datasets", "dtd", "--methods", "zero_shot", "--reuse",
                           "--work", str(tmp_path), "--backbone", "bench-test-tiny"],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 1
    assert "--reuse" in proc.stderr and "run without --reuse first" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_nnls_recovers_a_cost_model():
    rows = [{"cell": 1.0, "steps": n, "units": 99} for n in (10, 20, 40, 80)]
    coef = grid.nnls(rows, [0.5 + 0.01 * r["steps"] for r in rows])
    assert coef["cell"] == pytest.approx(0.5) and coef["steps"] == pytest.approx(0.01)
    assert "units" not in coef
    # a negative slope is not a cost: clamped to 0, the constant takes the mean
    coef = grid.nnls([{"cell": 1.0, "steps": 1}, {"cell": 1.0, "steps": 2}], [2.0, 1.0])
    assert coef["steps"] == 0 and coef["cell"] == pytest.approx(1.5)


def test_predict_sums_phases():
    # dtd files are 640x480 = 0.3072 megapixels
    model = {"encode": {"eval": 0.01, "eval_px": 0.0, "view": 0.001, "view_px": 0.01,
                        "setup_dtd": 2.0},
             "fit": {"coop": {"cell": 1.0, "steps": 0.5}},
             "eval": {"coop": {"cell": 0.1}}}
    cells = [{"method": "coop", "fit": {"cell": 1.0, "steps": 10, "units": 7},
              "eval": {"cell": 1.0, "test_classes": 3}},
             {"method": "coop", "fit": {"cell": 1.0, "steps": 20, "units": 7},
              "eval": {"cell": 1.0, "test_classes": 3}}]
    counts = {"dtd": {"test": 1000, "eval_union": 100, "epoch_views": 4000, "fixed_views": 1000,
                      "cells": cells}}
    p = grid.predict(model, counts)["phases"]
    assert p["test encoding"] == pytest.approx(2.0 + 10.0)
    assert p["train views"] == pytest.approx(1.0 + 5000 * (0.001 + 0.01 * 0.3072))
    assert p["fits"] == pytest.approx(2 * 1.0 + 0.5 * 30)
    assert p["evaluation"] == pytest.approx(0.2)
    assert p["total"] == pytest.approx(sum(p[k] for k in grid.PHASES))


@pytest.mark.parametrize("argv, message", [
    (["--scale", "2"], "--scale/--scales"),
    (["--datasets", "dtd,mnist"], "unknown mnist"),
    (["--shots", "1,x"], "--shots/--seeds"),
])
def test_usage_errors(argv, message):
    proc = subprocess.run([sys.executable, str(BENCH / "grid.py"), *argv], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_plan_counts_match_the_runner(tmp_path):
    """The projection's per-epoch view count is the number of crops the runner encodes."""
    from bench.planner import plan
    from bench.runner import run_job

    spec = grid_data.Scaled("dtd", 3, 5, 2, 6, (40, 40))
    grid_data.write_dataset(tmp_path / "data", spec, distinct=1)
    from methods import METHODS

    names = METHODS.select("clip_adapter_visual")
    cells = grid.grid_cells(["dtd"], names, [1, 2], [1], "bench-test-tiny",
                            ["epochs=2"])["dtd"]
    for c in cells:  # different epochs per shot count, so max-over-cells matters
        c["config"] = {**c["config"], "epochs": 2 if c["shots"] == 1 else 3}
    counts = grid.plan_counts(spec, cells)
    jobs = plan(cells, data_root=str(tmp_path / "data"), output=str(tmp_path / "out"),
                cache_dir=str(tmp_path / "cache"), device="cpu",
                options={"batch_size": 16, "workers": 0, "cache_dtype": "float32",
                         "autocast": "off", "progress": False})
    done = run_job(jobs[0])
    assert done["done"] == len(cells) == 2
    assert done["view_encodes"] == counts["epoch_views"]
    assert counts["epoch_views"] > 0
