"""Records: one validation for planner, status and report; identity with inputs; superseded
records; the folder layout; rows by full identity; the cached-views label everywhere."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from bench.cli import main
from bench.config import MethodSpec, resolve_method_config
from results.records import cell_id
from results.store import ResultStore
from results.validate import record_problem

SEEDS = (1, 2, 3)


def cell(method="zero_shot", dataset="dtd", shots=1, seed=1, variant=None, config=None,
         backbone="RN50-quickgelu", inputs=None):
    c = {"backbone": backbone, "pretrained": "openai", "dataset": dataset, "method": method,
         "variant": variant, "config": {} if config is None else config, "shots": shots,
         "seed": seed}
    if inputs is not None:
        c["inputs"] = inputs
    return c


def ok(c, top1=50.0, created="2024-01-01T00:00:00"):
    return {**c, "status": "ok", "created": created,
            "metrics": {"top1": top1, "mean_per_class": top1, "n_test": 100},
            "fewshot": {"n_train": 10 * c["shots"], "n_val": 10}}


def default_config(method, variant, dataset, shots, **over):
    return {**resolve_method_config(MethodSpec(method, variant), dataset, shots)[1], **over}


# ----------------------------------------------------------------------------- damaged records
DAMAGE = {
    "top1 999": lambda r: r["metrics"].update(top1=999.0),
    "top1 NaN": lambda r: r["metrics"].update(top1=math.nan),
    "top1 string": lambda r: r["metrics"].update(top1="high"),
    "top1 negative": lambda r: r["metrics"].update(top1=-1.0),
    "mean_per_class missing": lambda r: r["metrics"].pop("mean_per_class"),
    "shots string": lambda r: r.update(shots="two"),
    "shots zero": lambda r: r.update(shots=0),
    "seed float": lambda r: r.update(seed=1.5),
    "n_test zero": lambda r: r["metrics"].update(n_test=0),
    "n_test missing": lambda r: r["metrics"].pop("n_test"),
    "top1 not a count of n_test": lambda r: r["metrics"].update(top1=33.3),
    "status unknown": lambda r: r.update(status="done"),
    "metrics missing": lambda r: r.pop("metrics"),
    "shots edited, cell_id kept": lambda r: r.update(shots=2),
    "not JSON": None,
}


def _store_with_three_seeds(out):
    store = ResultStore(out)
    for s in SEEDS:
        store.write(ok(cell(seed=s), top1=40.0 + 10 * s))
    return store


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damaged_record_planner_status_and_report_agree(tmp_path, capsys, kind):
    out = tmp_path / "out"
    store = _store_with_three_seeds(out)
    path = store.path_for(cell(seed=2))
    if DAMAGE[kind] is None:
        path.write_text('{"status": "ok", "metrics": {"top1": 5')
    else:
        rec = json.loads(path.read_text())
        DAMAGE[kind](rec)
        path.write_text(json.dumps(rec))
    # the planner's check: not done (rerun); the others are done
    assert not ResultStore(out).exists(cell(seed=2))
    assert ResultStore(out).exists(cell(seed=1)) and ResultStore(out).exists(cell(seed=3))
    # status: 2 done, the third damaged
    assert main(["status", str(out)]) == 1
    cap = capsys.readouterr()
    assert "2 cells done, 0 failed, 1 damaged" in cap.out
    # report: seeds 1 and 3 only, no number of the damaged record anywhere
    assert main(["report", str(out), "--format", "csv"]) == 0
    cap2 = capsys.readouterr()
    df = pd.read_csv(pd.io.common.StringIO(cap2.out))
    row = df[(df.method == "zero_shot") & (df.dataset == "dtd")].iloc[0]
    assert (row["n"], row["n_failed"]) == (2, 0) and row["mean"] == pytest.approx(60.0)
    assert "999" not in cap2.out
    # one warning line naming the file, across planner, status and report in this process
    err = cap.err + cap2.err
    warnings = [ln for ln in err.splitlines() if "damaged" in ln and "warning" in ln]
    assert len(warnings) == 1, err
    assert warnings[0].startswith("bench: warning: result ") and str(path) in warnings[0]
    assert "Traceback" not in err and "UserWarning" not in err


def test_status_of_a_submission_counts_damaged_and_stale_records_as_pending(tmp_path, capsys):
    from results.atomic import atomic_write_json

    store = ResultStore(tmp_path)
    cells = [cell(seed=s, inputs={"split": "new"}) for s in SEEDS]
    store.write(ok(cells[0]))
    store.write(ok(cells[1]))
    path = store.path_for(cells[1])
    path.write_text(path.read_text().replace('"top1": 50.0', '"top1": "high"'))
    store.write(ok({**cells[2], "inputs": {"split": "old"}}))  # stale: other inputs
    entries = [{"id": cell_id(c), "label": f"dtd/zero_shot/k1/s{c['seed']}",
                "result": str(store.path_for(c).relative_to(tmp_path)),
                "failed": str(store.failed_path_for(c).relative_to(tmp_path))} for c in cells]
    atomic_write_json(tmp_path / "sweep" / "submissions" / "20250101T000000-9.json", {
        "launcher": "local", "submitted": "2025-01-01T00:00:00+00:00", "array_id": None,
        "submitit_dir": str(tmp_path), "tasks": [{
            "index": 0, "job_id": "999999999", "key": "k", "stdout": "o", "stderr": "e",
            "result_pickle": str(tmp_path / "none.pkl"), "cells": entries}]})
    assert main(["status", str(tmp_path)]) == 1
    cap = capsys.readouterr()
    assert "3 cells: 1 done, 0 failed, 2 pending" in cap.out
    assert "1 of the pending cells have a damaged record" in cap.out
    assert str(path) in cap.err and "Traceback" not in cap.err


def test_sound_records_pass_validation():
    assert record_problem(ok(cell())) is None
    assert record_problem({**cell(), "status": "failed", "error": {}}) is None
    rec = ok(cell())
    rec["metrics"].update(top1=100 * 2979 / 3333, n_test=3333)
    rec["metrics"]["top1"] = round(rec["metrics"]["top1"], 6)  # as the runner rounds it
    assert record_problem(rec) is None
    assert record_problem({**ok(cell()), "shots": True}) is not None  # a bool is no count


def test_a_damaged_record_is_rerun_by_bench_run(tmp_path, capsys):
    """End to end on the demo: a record edited to top1 999 is computed again, the damaged file
    is set aside, and the report shows the recomputed number."""
    out = tmp_path / "out"
    argv = ["run", "--methods", "zero_shot", "--datasets", "demo_digits", "--shots", "1",
            "--seeds", "1", "--output", str(out), "--quiet"]
    assert main(argv) == 0
    (path,) = list((out / "results").rglob("k1-s1-*.json"))
    good = json.loads(path.read_text())
    bad = {**good, "metrics": {**good["metrics"], "top1": 999.0}}
    path.write_text(json.dumps(bad))
    capsys.readouterr()
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "damaged" in err and "1 to run" in err
    assert json.loads(path.read_text())["metrics"]["top1"] == good["metrics"]["top1"]
    assert [p.name for p in ResultStore(out).superseded()] == [path.name]


# ----------------------------------------------------------------------------- identity
def test_identity_includes_inputs_and_stale_records_are_set_aside(tmp_path, capsys):
    out = tmp_path / "out"
    store = ResultStore(out)
    a, b = cell(inputs={"split": "aaa"}), cell(inputs={"split": "bbb"})
    assert cell_id(a) != cell_id(b) and cell_id(cell()) != cell_id(a)
    assert store.path_for(a) == store.path_for(b)  # one place per cell: the newer replaces
    store.write(ok(a, top1=10.0))
    assert store.exists(a) and not store.exists(b)
    assert not ResultStore(out).exists(cell(inputs={}))
    # a record without inputs is stale for a cell that has them
    legacy = ResultStore(tmp_path / "o2")
    legacy.write(ok(cell(), top1=10.0))
    assert legacy.exists(cell()) and not legacy.exists(a)
    # the new record moves the old one aside, keeping its relative path
    store.write(ok(b, top1=20.0))
    assert store.exists(b) and not store.exists(a)
    (old,) = store.superseded()
    rel = store.path_for(a).relative_to(out)
    assert old.relative_to(out / "superseded").parts[1:] == rel.parts
    assert json.loads(old.read_text())["inputs"] == {"split": "aaa"}
    # the report reads only the new one and says how many were set aside
    assert main(["report", str(out), "--format", "csv"]) == 0
    cap = capsys.readouterr()
    df = pd.read_csv(pd.io.common.StringIO(cap.out))
    assert list(df[df.dataset == "dtd"]["mean"]) == [20.0]
    assert "1 record(s) set aside in" in cap.err and "superseded" in cap.err


def test_rewriting_the_same_identity_sets_nothing_aside(tmp_path):
    store = ResultStore(tmp_path)
    c = cell(inputs={"split": "aaa"})
    store.write(ok(c, top1=10.0))
    store.write(ok(c, top1=10.0))
    assert store.superseded() == [] and store.exists(c)


def test_a_failure_with_new_inputs_sets_the_stale_result_aside(tmp_path):
    store = ResultStore(tmp_path)
    store.write(ok(cell(inputs={"split": "aaa"}), top1=10.0))
    store.write({**cell(inputs={"split": "bbb"}), "status": "failed", "error": {}})
    recs = store.load_all()
    assert [r["status"] for r in recs] == ["failed"] and len(store.superseded()) == 1


# ----------------------------------------------------------------------------- layout
def test_layout_one_folder_per_method_with_variant_subfolders(tmp_path):
    store = ResultStore(tmp_path)
    p = store.path_for(cell("clip_adapter_visual", variant="code"))
    assert p.parent.parts[-2:] == ("clip_adapter_visual", "code")
    p = store.path_for(cell("coop"))
    assert p.parent.parts[-2:] == ("coop", "default")
    assert p.parent.parent.parent.parts[-1] == "dtd"


def test_older_layout_is_still_read_and_moved_aside_on_rewrite(tmp_path):
    store = ResultStore(tmp_path)
    c = cell("clip_adapter_visual", variant="code")
    rec = ok(c)
    rec["cell_id"] = cell_id(c)
    old = (store.path_for(c).parent.parent.parent / "clip_adapter_visual_code"
           / store.path_for(c).name)
    old.parent.mkdir(parents=True)
    old.write_text(json.dumps(rec))
    assert store.exists(c)
    assert [r["_path"] for r in store.load_all()] == [str(old)]
    store.write(ok(c, top1=60.0))
    assert not old.exists() and store.path_for(c).is_file()
    assert [r["metrics"]["top1"] for r in store.load_all()] == [60.0]


# ----------------------------------------------------------------------------- rows by identity
def _two_config_store(out):
    store = ResultStore(out)
    for s in SEEDS:
        for k in (1, 16):
            base = default_config("clip_adapter_visual", "code", "dtd", k)
            store.write(ok(cell("clip_adapter_visual", "dtd", k, s, "code", base), top1=50.0))
            store.write(ok(cell("clip_adapter_visual", "dtd", k, s, "code",
                                {**base, "alpha": 0.6}), top1=70.0))
            cached = default_config("coop", None, "dtd", k, feature_mode="cached", n_views=10)
            store.write(ok(cell("coop", "dtd", k, s, None, cached), top1=40.0))
            online = default_config("coop", None, "dtd", k)
            store.write(ok(cell("coop", "dtd", k, s, None, online), top1=45.0))
    return store


def test_two_configs_under_one_label_are_two_labelled_rows(tmp_path, capsys):
    out = tmp_path / "out"
    _two_config_store(out)
    assert main(["report", str(out), "--layout", "main", "--color", "never"]) == 0
    cap = capsys.readouterr()
    rows = {ln.split("  ")[0]: ln for ln in cap.out.splitlines()}
    assert "50.00 ± 0.00 (3)" in rows["CLIP-Adapter (visual)"]
    assert "70.00 ± 0.00 (3)" in rows["CLIP-Adapter (visual) [alpha=0.6]"]
    assert "45.00" in rows["CoOp"] and "40.00" in rows["CoOp [cached views x10]"]
    assert "set aside" not in cap.err  # nothing dropped


def test_a_record_from_before_a_config_key_existed_is_its_own_row():
    from results.aggregate import records_to_frame, summarize

    new = default_config("zero_shot", None, "dtd", 1)
    old = {k: v for k, v in new.items() if k != sorted(new)[0]}
    recs = [ok(cell(config=new), top1=50.0, created="2025-01-02"),
            ok(cell(config=old), top1=40.0, created="2024-01-01")]
    from bench.reporting import _default_config
    s = summarize(records_to_frame(recs, _default_config()))
    assert s.duplicates == 0
    assert s.methods["RN50-quickgelu__openai"] == ["zero_shot",
                                                   f"zero_shot [{sorted(new)[0]} unset]"]


def test_cached_views_are_labelled_in_every_format(tmp_path, capsys):
    out = tmp_path / "out"
    _two_config_store(out)
    for fmt in ("terminal", "markdown", "latex"):
        assert main(["report", str(out), "--format", fmt, "--layout", "main"]) == 0
        text = capsys.readouterr().out
        assert "CoOp [cached views x10]" in text, fmt
        assert "not a fresh augmentation every epoch" in text, fmt
    caption = next(ln for ln in text.splitlines() if ln.startswith(r"\caption"))
    assert "cached views x10" in caption and "fresh augmentation" in caption
    assert main(["report", str(out), "--format", "csv"]) == 0
    df = pd.read_csv(pd.io.common.StringIO(capsys.readouterr().out))
    coop = df[df.method_label == "coop"]
    assert set(coop[coop.approximation.notna()]["views"]) == {10}
    assert set(coop[coop.approximation.notna()]["mean"]) == {40.0}
    assert set(coop[coop.approximation.isna()]["mean"]) == {45.0}


def test_compare_published_refuses_cached_and_non_default_rows(tmp_path, capsys):
    out = tmp_path / "out"
    store = ResultStore(out)
    for s in SEEDS:
        for cfg, top1 in ((default_config("coop", None, "imagenet", 16), 63.0),
                          (default_config("coop", None, "imagenet", 16, feature_mode="cached"),
                           61.0)):
            store.write(ok(cell("coop", "imagenet", 16, s, None, cfg), top1=top1))
        base = default_config("clip_adapter_visual", "code", "imagenet", 16)
        store.write(ok(cell("clip_adapter_visual", "imagenet", 16, s, "code", base), top1=64.0))
        store.write(ok(cell("clip_adapter_visual", "imagenet", 16, s, "code",
                            {**base, "alpha": 0.5}), top1=66.0))
    assert main(["report", str(out), "--compare", "published", "--layout", "main",
                 "--color", "never"]) == 0
    text = capsys.readouterr().out
    comparison = text[text.index("Ours beside published"):]
    lines = [ln for ln in comparison.splitlines() if "ImageNet" in ln]
    assert any(ln.startswith("CoOp ") and "62.95" in ln and "+0.05" in ln for ln in lines)
    # the default variant (code) is compared with the published CLIP-Adapter number
    assert any(ln.startswith("CLIP-Adapter (visual) ") and "63.59" in ln and "+0.41" in ln
               for ln in lines)
    assert not any("cached" in ln or "alpha" in ln for ln in lines)
    assert "note: CoOp [cached views x10]: not compared" in comparison
    assert "note: CLIP-Adapter (visual) [alpha=0.5]: not compared" in comparison
