"""The base-to-novel, domain-generalization and cross-dataset protocols (issue 18)."""

from __future__ import annotations

import csv
import io
import json
import math
import shutil

import pytest

from bench.protocols import BaseNovel, base_subset
from datasets_registry import DATASETS
from datasets_registry.fewshot import SAMPLERS

TINY = ("--backbone", "bench-test-tiny", "--pretrained", "none")


def _records(out, protocol=None):
    recs = [json.loads(p.read_text()) for p in sorted((out / "results").rglob("*.json"))]
    return [r for r in recs if protocol is None or r.get("protocol") == protocol]


# ----------------------------------------------------------------------------- the class split
def _cocoop_subsample(train, val, test, subsample):
    """CoCoOp's ``subsample_classes`` (datasets/oxford_pets.py), written out independently:
    the labels present in the (few-shot) train set, sorted, cut at ceil(n / 2)."""
    labels = sorted({label for _, label in train})
    m = math.ceil(len(labels) / 2)
    selected = labels[:m] if subsample == "base" else labels[m:]
    relabel = {y: i for i, y in enumerate(selected)}
    return [[(p, relabel[y]) for p, y in split if y in relabel] for split in (train, val, test)]


@pytest.mark.parametrize("name", ["oxford_pets", "dtd", "eurosat", "caltech101"])
def test_base_novel_split_follows_cocoop_on_the_split_files(miniroot, name):
    splits = DATASETS.get(name).load(miniroot)
    subset = SAMPLERS["dassl"](splits.train, splits.val, 2, 1)
    split = BaseNovel(len(splits.classnames))
    ours = base_subset(subset, split)
    parts = split.test_parts(splits.test)
    for which in ("base", "novel"):
        train, val, test = _cocoop_subsample(subset.train, subset.val, splits.test, which)
        rows, labels = parts[which]
        assert [(splits.test[i][0], y) for i, y in zip(rows, labels)] == test
        if which == "base":
            assert ours.train == train and ours.val == val
    names = split.classnames(splits.classnames)
    assert names["base"] + names["novel"] == splits.classnames
    assert len(names["base"]) == math.ceil(len(splits.classnames) / 2)


PROBE = '''
import json, os
from methods import METHODS
from methods.base import Fitted, PER_EPOCH_VIEWS
from methods.zero_shot import zero_shot

@METHODS.register("probe_seen", new_classes=True, views=PER_EPOCH_VIEWS)
def probe(task):
    seen = {"classnames": task.classnames,
            "train": task.train.labels.tolist(), "val": task.val.labels.tolist(),
            "views": list(task.train_views.for_epoch(0).shape)}
    with open(os.environ["PROBE_OUT"], "a") as f:
        f.write(json.dumps(seen) + "\\n")
    return zero_shot(task)
'''


def test_novel_class_images_never_reach_training(tmp_path, miniroot, run_cli, monkeypatch,
                                                 plugin_state):
    plugin = tmp_path / "probe_plugin.py"
    plugin.write_text(PROBE)
    (tmp_path / "probe_seen.yaml").write_text(
        "defaults:\n  epochs: 2\nschema:\n  epochs: {type: int, min: 1}\n")
    seen_file = tmp_path / "seen.jsonl"
    monkeypatch.setenv("PROBE_OUT", str(seen_file))
    out = tmp_path / "out"
    code, _, err = run_cli("run", "--include", tmp_path, "--protocol", "base2novel",
                           "--data-root", miniroot, "--datasets", "dtd", "--methods",
                           "probe_seen", "--shots", "2", "--seeds", "1", *TINY,
                           "--output", out, "--quiet")
    assert code == 0, err
    splits = DATASETS.get("dtd").load(miniroot)
    m = math.ceil(len(splits.classnames) / 2)
    seen = json.loads(seen_file.read_text())
    assert seen["classnames"] == splits.prompt_classnames[:m]
    assert seen["train"] and max(seen["train"]) < m and max(seen["val"]) < m
    assert seen["views"][0] == len(seen["train"])  # the epoch views: base images only
    (rec,) = _records(out)
    assert rec["protocol"] == "base2novel"
    assert rec["evaluations"]["base"]["n_test"] == sum(1 for _, y in splits.test if y < m)
    assert rec["evaluations"]["novel"]["n_test"] == sum(1 for _, y in splits.test if y >= m)
    subset = json.loads((out / rec["fewshot"]["path"]).read_text())
    assert all(y < m for _, y in subset["train"] + subset["val"])


def test_methods_with_per_class_weights_are_refused(tmp_path, run_cli):
    code, _, err = run_cli("run", "--protocol", "base2novel", "--methods",
                           "zero_shot,linear_probe", "--datasets", "demo_signs", "--shots", "1",
                           "--seeds", "1", "--output", tmp_path / "o", "--dry-run")
    assert code == 2
    assert "linear_probe" in err and "zero_shot" in err.split("Methods that can:")[1]
    assert "Traceback" not in err
    code, _, err = run_cli("run", "--protocol", "base2novel", "--methods", "all", "--datasets",
                           "demo_signs", "--shots", "1", "--seeds", "1", "--output",
                           tmp_path / "o", "--dry-run")
    assert code == 0, err
    assert "left out" in err and "linear_probe" in err.split("left out")[0]
    code, _, err = run_cli("run", "--protocol", "base2novl", "--output", tmp_path / "o",
                           "--dry-run")
    assert code == 2 and "base2novel" in err


def test_base2novel_end_to_end_report_hm(tmp_path, run_cli):
    out = tmp_path / "out"
    code, _, err = run_cli("run", "--protocol", "base2novel", "--methods",
                           "zero_shot,clip_adapter_visual", "--datasets", "demo_signs,demo_digits",
                           "--shots", "2", "--seeds", "1,2", "--output", out, "--quiet",
                           "--set", "epochs=2")
    assert code == 0, err
    recs = _records(out, "base2novel")
    assert len(recs) == 8
    # each record says which settings its method got under the protocol, and from where
    for r in recs:
        info = r["protocol_config"]
        assert info["protocol"] == "base2novel" and info["block"] and info["source"]
        assert info["release_script"] is (r["method"] == "zero_shot")  # CLIP-Adapter: no script
    code, text, err = run_cli("report", out, "--protocol", "base2novel", "--format", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(text)))
    for method in ("zero_shot", "clip_adapter_visual"):
        for ds in ("demo_signs", "demo_digits"):
            mine = [r for r in recs if r["method"] == method and r["dataset"] == ds]
            b = sum(r["evaluations"]["base"]["top1"] for r in mine) / len(mine)
            n = sum(r["evaluations"]["novel"]["top1"] for r in mine) / len(mine)
            got = {r["evaluation"]: float(r["mean"]) for r in rows
                   if r["method"].split(" [")[0].split(":")[0] == method and r["dataset"] == ds}
            assert got["base"] == pytest.approx(b, abs=1e-4)
            assert got["novel"] == pytest.approx(n, abs=1e-4)
            assert got["hm"] == pytest.approx(2 * b * n / (b + n), abs=1e-4)
    # without --protocol, a folder holding only base-to-novel results shows them (issue 27;
    # before: refused), saying so
    code, auto, err = run_cli("report", out)
    assert code == 0 and f"bench: note: {out} holds base2novel results only: showing them (as " \
                         f"with --protocol base2novel)" in err
    code, asked, _ = run_cli("report", out, "--protocol", "base2novel")
    assert code == 0 and auto == asked and "Novel" in auto
    code, _, err = run_cli("report", out, "--protocol", "fewshot")  # asked for: said where
    assert code == 2 and "--protocol base2novel" in err
    code, _, err = run_cli("plot", out, "--out", tmp_path / "plots")  # few-shot curves only
    assert code == 2 and "bench report" in err and "Traceback" not in err
    code, text, err = run_cli("report", out, "--protocol", "base2novel", "--format", "latex")
    assert code == 0 and "Novel" in text and "HM" in text


def test_domain_restricts_columns_like_scoring_the_target_classes(tmp_path, miniroot, run_cli):
    """Zero-shot on ImageNet-A through the domain protocol (the 1000-way classifier's columns of
    A's classes) equals zero-shot scored on A's own class names (the cross-dataset path)."""
    out = tmp_path / "out"
    for protocol in ("domain", "crossdataset"):
        code, _, err = run_cli("run", "--protocol", protocol, "--data-root", miniroot,
                               "--datasets", "imagenet_a,imagenet_r,imagenet_v2", "--methods",
                               "zero_shot", "--shots", "1", "--seeds", "1", *TINY,
                               "--output", out, "--quiet")
        assert code == 0, err
    dom, = _records(out, "domain")
    cross, = _records(out, "crossdataset")
    assert dom["dataset"] == "imagenet" and set(dom["evaluations"]) == {
        "imagenet", "imagenet_a", "imagenet_r", "imagenet_v2"}
    for t in ("imagenet_a", "imagenet_r", "imagenet_v2"):
        n_test = len(DATASETS.get(t).load(miniroot).test)
        assert dom["evaluations"][t]["n_test"] == n_test
        assert dom["evaluations"][t] == cross["evaluations"][t]
    assert dom["inputs"]["targets"]["imagenet_a"]["test"]
    code, text, err = run_cli("report", out, "--protocol", "domain", "--format", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(text)))
    got = {r["dataset"]: float(r["mean"]) for r in rows}
    assert got["imagenet_a"] == pytest.approx(dom["evaluations"]["imagenet_a"]["top1"], abs=1e-4)


def test_transfer_needs_a_trainable_source_and_targets(tmp_path, miniroot, run_cli):
    common = ("--data-root", miniroot, "--methods", "zero_shot", "--output", tmp_path / "o",
              "--dry-run", *TINY)
    code, _, err = run_cli("run", "--protocol", "domain", "--datasets", "dtd", *common)
    assert code == 2 and "crossdataset" in err
    code, _, err = run_cli("run", "--protocol", "domain", "--source", "imagenet_a", *common)
    assert code == 2 and "test-only" in err
    code, _, err = run_cli("run", "--protocol", "crossdataset", "--methods", "linear_probe",
                           "--data-root", miniroot, "--output", tmp_path / "o", "--dry-run",
                           *TINY)
    assert code == 2 and "linear_probe" in err
    code, _, err = run_cli("run", "--source", "imagenet", *common)
    assert code == 2 and "--source" in err


def test_fewshot_identity_is_unchanged_and_protocols_do_not_collide(tmp_path):
    from results.records import CELL_KEYS, cell_id, identity
    from results.store import ResultStore

    cell = {"backbone": "b", "pretrained": "p", "dataset": "d", "method": "m", "variant": None,
            "config": {"a": 1}, "shots": 1, "seed": 1}
    assert set(identity(cell)) == set(CELL_KEYS)
    b2n = {**cell, "protocol": "base2novel"}
    assert cell_id(b2n) != cell_id(cell)
    store = ResultStore(tmp_path)
    assert store._stem(b2n) != store._stem(cell)
    assert store._stem({**cell, "protocol": "domain", "targets": ["x"]}) != \
        store._stem({**cell, "protocol": "domain", "targets": ["x", "y"]})


def test_a_protocol_record_without_its_evaluations_is_damaged():
    from results.validate import record_problem

    good = {"status": "ok", "backbone": "b", "dataset": "d", "method": "m", "config": {},
            "shots": 1, "seed": 1, "protocol": "base2novel",
            "metrics": {"top1": 50.0, "mean_per_class": 50.0, "n_test": 2},
            "evaluations": {"base": {"top1": 50.0, "mean_per_class": 50.0, "n_test": 2},
                            "novel": {"top1": 100.0, "mean_per_class": 100.0, "n_test": 1}}}
    assert record_problem(good) is None
    assert "evaluations" in record_problem({**good, "evaluations": None})
    bad = {**good, "evaluations": {"base": good["metrics"]}}
    assert "base and novel" in record_problem(bad)
    assert "protocol" in record_problem({**good, "protocol": "fewshots"})
    from bench.protocols import PROTOCOLS
    from results.validate import PROTOCOLS as VALIDATED

    assert tuple(PROTOCOLS) == tuple(VALIDATED)


def test_python_api_returns_the_protocol_frame(tmp_path):
    import bench

    frame = bench.run(methods="zero_shot", datasets="demo_signs", shots=[1], seeds=[1],
                      output=tmp_path / "o", protocol="base2novel")
    assert set(frame["evaluation"]) == {"base", "novel", "hm"}
    (rec,) = _records(tmp_path / "o")
    row = frame[(frame.dataset == "demo_signs") & (frame.evaluation == "novel")].iloc[0]
    assert row["mean"] == pytest.approx(rec["evaluations"]["novel"]["top1"], abs=1e-4)


def test_a_missing_target_is_refused_before_anything_runs(tmp_path, miniroot, run_cli):
    root = tmp_path / "data"
    shutil.copytree(miniroot / "imagenet", root / "imagenet")
    code, _, err = run_cli("run", "--protocol", "domain", "--data-root", root, "--datasets",
                           "imagenet_a", "--methods", "zero_shot", "--shots", "1", "--seeds",
                           "1", *TINY, "--output", tmp_path / "o")
    assert code == 2, err
    assert "imagenet_a cannot be read" in err and "bench data check" in err
    assert not (tmp_path / "o" / "results").exists()


def test_published_base2novel_numbers_are_consistent_and_sourced():
    """Every shipped base-to-novel row names its source, and its HM is the harmonic mean of its
    base and novel accuracies (to the published rounding)."""
    from importlib import resources

    folder = resources.files("configs") / "published" / "base2novel"
    rows = [r for f in folder.iterdir() if f.name.endswith(".csv")
            for r in csv.DictReader(io.StringIO(f.read_text()))]
    assert rows
    from methods import METHODS

    for r in rows:
        assert r["source"].strip()
        METHODS.entry(r["method"])  # a method bench has
        b, n, h = float(r["base"]), float(r["novel"]), float(r["hm"])
        assert abs(2 * b * n / (b + n) - h) <= 0.011, r


def test_a_class_specific_context_is_refused_at_plan_time(tmp_path, run_cli):
    """CoOp scores new classes with its unified context; ``coop:csc`` has one context per
    trained class and nothing for an unseen one: refused before anything runs."""
    common = ("--datasets", "demo_signs", "--shots", "1", "--seeds", "1", "--output",
              tmp_path / "o", "--dry-run")
    code, _, err = run_cli("run", "--protocol", "base2novel", "--methods", "coop", *common)
    assert code == 0, err
    code, _, err = run_cli("run", "--protocol", "base2novel", "--methods", "coop:csc", *common)
    assert code == 2 and "coop:csc" in err and "Traceback" not in err
    code, _, err = run_cli("run", "--protocol", "base2novel", "--methods", "kgcoop", "--set",
                           "kgcoop.csc=true", *common)
    assert code == 2 and "kgcoop" in err


# ----------------------------------------------------------------------------- report layouts
def _metrics(correct: int, n: int) -> dict:
    return {"top1": round(100.0 * correct / n, 6), "mean_per_class": 50.0, "n_test": n}


def _synthetic_store(tmp_path):
    """Base-to-novel and domain records written by hand (no run): known accuracies."""
    from results.store import ResultStore

    store = ResultStore(tmp_path / "out")
    base = {"backbone": "RN50-quickgelu", "pretrained": "openai", "variant": None, "config": {},
            "status": "ok", "created": "2026-11-29T00:00:00+00:00"}
    truth = {}
    for m, (b, n) in {"zero_shot": (60, 70), "coop": (80, 50)}.items():
        for ds in ("dtd", "eurosat"):
            for seed, shift in ((1, 0), (2, 10)):
                ev = {"base": _metrics(b + shift, 100), "novel": _metrics(n - shift, 100)}
                store.write({**base, "method": m, "dataset": ds, "shots": 16, "seed": seed,
                             "protocol": "base2novel", "metrics": ev["base"], "evaluations": ev})
            truth[(m, ds)] = (b + 5, n - 5)
        targets = ["imagenet_a", "imagenet_v2"]
        ev = {"imagenet": _metrics(b, 100), "imagenet_a": _metrics(n, 100),
              "imagenet_v2": _metrics(b - 10, 100)}
        store.write({**base, "method": m, "dataset": "imagenet", "shots": 16, "seed": 1,
                     "protocol": "domain", "targets": targets, "metrics": ev["imagenet"],
                     "evaluations": ev})
    return store.output, truth


def test_base2novel_layout_in_every_format(tmp_path, run_cli):
    out, truth = _synthetic_store(tmp_path)
    code, text, err = run_cli("report", out, "--protocol", "base2novel", "--format", "markdown")
    assert code == 0, err
    assert "| Method" in text and "Base" in text and "Novel" in text and "HM" in text
    b, n = truth[("coop", "dtd")]
    hm = 2 * b * n / (b + n)
    assert f"{hm:.2f}" in text  # HM of the means, per dataset
    avg_b = (truth[("coop", "dtd")][0] + truth[("coop", "eurosat")][0]) / 2
    avg_n = (truth[("coop", "dtd")][1] + truth[("coop", "eurosat")][1]) / 2
    assert f"{2 * avg_b * avg_n / (avg_b + avg_n):.2f}" in text  # and of the averages
    code, text, err = run_cli("report", out, "--protocol", "domain", "--format", "terminal")
    assert code == 0, err
    assert "ImageNet" in text and "trained on ImageNet" in text
    code, text, _ = run_cli("report", out, "--protocol", "domain", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    got = {(r["method"], r["dataset"]): float(r["mean"]) for r in rows}
    assert got[("coop", "imagenet_a")] == 50.0 and got[("zero_shot", "imagenet_v2")] == 50.0
    assert all(r["source"] == "imagenet" for r in rows)


@pytest.mark.skipif(shutil.which("pdflatex") is None,
                    reason="pdflatex not installed (scripts/ci/setup-latex.sh installs it)")
def test_protocol_latex_compiles(tmp_path, run_cli):
    import subprocess

    out, _ = _synthetic_store(tmp_path)
    for protocol in ("base2novel", "domain"):
        tex = tmp_path / f"{protocol}.tex"
        code, _, err = run_cli("report", out, "--protocol", protocol, "--format", "latex",
                               "--standalone", "--out", tex)
        assert code == 0, err
        res = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error",
                              tex.name], cwd=tmp_path, capture_output=True, text=True,
                             timeout=120)
        assert res.returncode == 0, res.stdout[-3000:]
