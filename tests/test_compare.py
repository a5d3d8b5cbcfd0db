"""Per-image predictions stored by `bench run`, and the paired comparisons built on them
(`bench compare`, significance marks in `bench report`, `bench export`)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from results import predictions as P
from results.records import cell_id
from results.store import ResultStore
from tests.conftest import TINY

METHODS = "zero_shot,linear_probe,clip_adapter_visual"


@pytest.fixture(scope="module")
def sweep(miniroot, tmp_path_factory):
    """One small sweep on the miniature root: 3 methods x 2 datasets x 2 shots x 3 seeds."""
    from bench.cli import main

    out = tmp_path_factory.mktemp("sweep") / "out"
    code = main(["run", "--backbone", TINY, "--pretrained", "none", "--quiet", "--data-root",
                 str(miniroot), "--datasets", "eurosat,dtd", "--methods", METHODS, "--shots",
                 "1,2", "--seeds", "1,2,3", "--output", str(out)])
    assert code == 0
    return out


def _copy(sweep, tmp_path) -> Path:
    dst = tmp_path / "out"
    shutil.copytree(sweep, dst)
    return dst


# ----------------------------------------------------------------------------- stored by run
def test_every_record_names_a_checked_predictions_file(sweep):
    records = ResultStore(sweep).load_all()
    assert len(records) == 3 * 2 * 2 * 3
    for rec in records:
        block = rec["predictions"]
        path = Path(rec["_path"])
        assert block["file"] == P.predictions_path(path).name
        assert (path.parent / block["file"]).stat().st_size == block["bytes"]
        preds = P.read_predictions(path, block)
        assert list(preds) == [rec["dataset"]]
        assert P.check_record(rec, preds) == []
        assert rec["cell_id"] == cell_id(rec)  # the block is not part of the identity


def test_superseded_record_takes_its_predictions_along(sweep, tmp_path):
    out = _copy(sweep, tmp_path)
    store = ResultStore(out)
    rec = next(r for r in store.load_all() if r["method"] == "zero_shot")
    path = Path(rec["_path"])
    newer = {k: v for k, v in rec.items() if k not in ("_path", "predictions", "cell_id")}
    newer["inputs"] = {**(rec.get("inputs") or {}), "split": "other"}
    logits = torch.zeros(rec["metrics"]["n_test"], 3)
    store.write(newer, predictions={rec["dataset"]: (logits, torch.zeros(len(logits)).long())})
    (old,) = store.superseded()
    old_rec = json.loads(old.read_text())
    assert P.read_predictions(old, old_rec["predictions"])  # still its own file, beside it
    new_rec = json.loads(path.read_text())
    assert new_rec["predictions"]["sha256"] != old_rec["predictions"]["sha256"]
    assert P.read_predictions(path, new_rec["predictions"])


def test_rerun_computes_nothing_and_keeps_the_files(sweep, miniroot, tmp_path, run_cli):
    out = _copy(sweep, tmp_path)
    files = sorted(out.rglob("*.pred.npz"))
    mtimes = [f.stat().st_mtime_ns for f in files]
    code, _, err = run_cli("run", "--backbone", TINY, "--pretrained", "none", "--quiet",
                           "--data-root", miniroot, "--datasets", "eurosat,dtd", "--methods",
                           METHODS, "--shots", "1,2", "--seeds", "1,2,3", "--output", out)
    assert code == 0 and "0 to run" in err
    assert [f.stat().st_mtime_ns for f in sorted(out.rglob("*.pred.npz"))] == mtimes


def _strip_predictions(out: Path) -> None:
    """Make ``out`` look like a folder written before bench stored predictions."""
    for f in out.rglob("*.pred.npz"):
        f.unlink()
    for f in (out / "results").rglob("*.json"):
        rec = json.loads(f.read_text())
        rec.pop("predictions", None)
        f.write_text(json.dumps(rec))


def test_folder_without_predictions_still_reports(sweep, tmp_path, run_cli):
    out = _copy(sweep, tmp_path)
    _strip_predictions(out)
    code, table, err = run_cli("report", out, "--layout", "main", "--color", "never")
    assert code == 0, err
    assert "Linear probe" in table and "damaged" not in err


# ----------------------------------------------------------------------------- bench compare
def _csv(text):
    import io

    import pandas as pd

    return pd.read_csv(io.StringIO(text))


def _top1(out, method):
    """{(dataset, shots): [top1 by seed]} read straight from the records."""
    got = {}
    for r in sorted(ResultStore(out).load_all(), key=lambda r: r["seed"]):
        if r["method"] == method:
            got.setdefault((r["dataset"], r["shots"]), []).append(r["metrics"]["top1"])
    return got


def test_compare_seeds_matches_scipy_and_holm(sweep, run_cli):
    from scipy import stats as st

    code, out, err = run_cli("compare", sweep, "--methods", "linear_probe,clip_adapter_visual",
                             "--format", "csv")
    assert code == 0, err
    df = _csv(out)
    a, b = _top1(sweep, "linear_probe"), _top1(sweep, "clip_adapter_visual")
    per = df[df.dataset != "average"]
    assert len(per) == 4 and set(per.n) == {3}
    checked = False
    for row in per.itertuples():
        key = (row.dataset, row.shots)
        assert row.diff == pytest.approx(np.mean(a[key]) - np.mean(b[key]), abs=1e-3)
        if np.ptp(np.subtract(a[key], b[key])) > 1e-9:  # scipy's t needs some spread
            assert row.p == pytest.approx(st.ttest_rel(a[key], b[key]).pvalue, rel=1e-4)
            checked = True
    assert checked
    every = df.p.dropna().tolist()
    m = len(every)
    smallest = min(every)
    assert df.p_holm.min() == pytest.approx(min(1.0, m * smallest), rel=1e-5)


def test_compare_two_runs_of_one_method_finds_nothing(sweep, tmp_path, run_cli):
    again = _copy(sweep, tmp_path)
    code, out, err = run_cli("compare", sweep, "--methods", "clip_adapter_visual", "--against",
                             again, "--test", "bootstrap", "--resamples", "500",
                             "--format", "csv")
    assert code == 0, err
    df = _csv(out)
    assert not df.significant.any() and set(df.p.dropna()) == {1.0}


def test_compare_terminal_names_the_test_and_the_correction(sweep, run_cli):
    code, out, _ = run_cli("compare", sweep, "--methods", "linear_probe,zero_shot", "--test",
                           "mcnemar")
    assert code == 0
    assert "McNemar" in out and "Holm" in out and "Wilcoxon" in out


@pytest.mark.parametrize("argv,needle", [
    (["--methods", "coop,zero_shot"], "no results of 'coop'"),
    (["--methods", "zero_shot"], "name two rows"),
    (["--methods", "zero_shot,linear_probe", "--datasets", "imagenet"], "no results match"),
])
def test_compare_bad_input_is_one_line_exit_2(sweep, run_cli, argv, needle):
    code, out, err = run_cli("compare", sweep, *argv)
    assert code == 2 and needle in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_compare_without_predictions_says_so(sweep, tmp_path, run_cli):
    out = _copy(sweep, tmp_path)
    _strip_predictions(out)
    code, _, err = run_cli("compare", out, "--methods", "linear_probe,zero_shot", "--test",
                           "bootstrap")
    assert code == 2 and "no per-image predictions" in err
    code, _, err = run_cli("compare", out, "--methods", "linear_probe,zero_shot")
    assert code == 0, err  # the seed-level test needs the records only


def test_compare_refuses_other_test_images_and_damaged_files(sweep, tmp_path, run_cli):
    other = _copy(sweep, tmp_path)
    rec_path = next((other / "results").rglob("*/zero_shot/*/k1-s1-*.json"))
    rec = json.loads(rec_path.read_text())
    (name,) = rec["predictions"]["evaluations"]
    rec["predictions"]["evaluations"][name]["labels_sha256"] = "0" * 64
    rec_path.write_text(json.dumps(rec))
    code, _, err = run_cli("compare", sweep, "--methods", "zero_shot", "--against", other,
                           "--test", "mcnemar")
    assert code == 2 and "other test labels" in err
    pred = rec_path.with_name(rec["predictions"]["file"])
    pred.write_bytes(pred.read_bytes()[:-10])
    code, _, err = run_cli("compare", other, "--methods", "zero_shot,linear_probe", "--test",
                           "bootstrap")
    assert code == 2 and "truncated" in err and str(pred) in err


# ----------------------------------------------------------------------------- bench report
def test_report_significance_marks_and_legend(sweep, run_cli):
    code, text, err = run_cli("report", sweep, "--layout", "main", "--significance",
                              "--color", "never")
    assert code == 0, err
    assert "†" in text and "paired t-test over seeds" in text and "Holm" in text
    code, tex, _ = run_cli("report", sweep, "--layout", "main", "--significance", "bootstrap",
                           "--format", "latex")
    assert code == 0 and r"$^{\dagger}$" in tex and "paired bootstrap" in tex
    assert "†" not in tex and "α" not in tex  # escaped for pdflatex
    code, md, _ = run_cli("report", sweep, "--layout", "main", "--ci", "--format", "markdown")
    rows = [line for line in md.splitlines() if line.startswith("| Linear probe")]
    assert code == 0 and "t interval of the mean over seeds" in md
    assert rows and "[" in rows[0] and "±" not in rows[0]


def test_report_significance_without_predictions_is_exit_2(sweep, tmp_path, run_cli):
    out = _copy(sweep, tmp_path)
    _strip_predictions(out)
    code, _, err = run_cli("report", out, "--significance", "mcnemar")
    assert code == 2 and "no per-image predictions" in err


# ----------------------------------------------------------------------------- bench export
def test_export_round_trip_merge_and_compare(sweep, tmp_path, run_cli):
    from results.export import ExportError, read_export

    dest = tmp_path / "e.jsonl"
    code, _, err = run_cli("export", sweep, dest)
    assert code == 0 and "36 record(s)" in err
    header = json.loads(dest.read_text().splitlines()[0])
    assert header["format"] == "bench-export" and header["version"] == 1
    stored = {r["cell_id"]: {k: v for k, v in r.items() if k != "_path"}
              for r in ResultStore(sweep).load_all()}
    back = {r["cell_id"]: {k: v for k, v in r.items() if k != "_path"}
            for r in read_export(dest)}
    assert back == stored
    merged = tmp_path / "m.jsonl"
    merged.write_text(dest.read_text() * 2)
    assert len(read_export(merged)) == 36
    argv = ["--methods", "linear_probe,clip_adapter_visual", "--test", "bootstrap",
            "--resamples", "300", "--format", "csv"]
    assert run_cli("compare", dest, *argv)[1] == run_cli("compare", sweep, *argv)[1]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(dest.read_text().replace('"version": 1', '"version": 9', 1))
    with pytest.raises(ExportError, match="version 9"):
        read_export(bad)
    code, _, err = run_cli("compare", bad, *argv)
    assert code == 2 and "version" in err


# ----------------------------------------------------------------------------- protocol facts
def _declare_test_selection(out: Path, method: str) -> None:
    for f in (out / "results").rglob(f"*/{method}/*/*.json"):
        rec = json.loads(f.read_text())
        rec["facts"] = {"selection": "test"}  # not part of the identity: the record stays sound
        f.write_text(json.dumps(rec))


def test_rows_with_other_facts_are_not_ranked_or_compared(sweep, tmp_path, run_cli):
    out = _copy(sweep, tmp_path)
    _declare_test_selection(out, "linear_probe")
    code, _, err = run_cli("compare", out, "--methods", "linear_probe,zero_shot")
    assert code == 2 and "linear_probe selects on the test set" in err
    assert "--allow-incomparable" in err
    code, text, err = run_cli("compare", out, "--methods", "linear_probe,zero_shot",
                              "--allow-incomparable")
    assert code == 0 and "compared although not comparable" in text
    code, text, err = run_cli("report", out, "--layout", "main", "--significance",
                              "--color", "never")
    assert code == 0, err
    lp = next(line for line in text.splitlines() if line.startswith("Linear probe"))
    zs = next(line for line in text.splitlines() if line.startswith("Zero-shot CLIP"))
    assert "†" not in zs  # the best (linear probe) selected on test: nothing tested against it
    assert "selected on test" in text and "*" in lp


def test_python_api_compare_is_the_command_frame(sweep, run_cli):
    import bench

    frame = bench.compare(sweep, "linear_probe", "clip_adapter_visual", shots=[1])
    code, out, _ = run_cli("compare", sweep, "--methods", "linear_probe,clip_adapter_visual",
                           "--shots", "1", "--format", "csv")
    assert code == 0 and len(frame) == len(_csv(out)) == 3
    assert frame["p"].tolist() == pytest.approx(_csv(out)["p"].tolist(), rel=1e-5)
    from bench.base.errors import UsageError

    with pytest.raises(UsageError, match="no results of 'coop'"):  # the command's one line
        bench.compare(sweep, "coop", "zero_shot")


def test_base2novel_cell_stores_both_evaluations(miniroot, tmp_path, run_cli):
    out = tmp_path / "b2n"
    code, _, err = run_cli("run", "--backbone", TINY, "--pretrained", "none", "--quiet",
                           "--data-root", miniroot, "--datasets", "dtd", "--methods",
                           "zero_shot,clip_adapter_visual", "--protocol", "base2novel",
                           "--shots", "1", "--seeds", "1", "--output", out)
    assert code == 0, err
    records = ResultStore(out).load_all()
    assert len(records) == 2
    for rec in records:
        preds = P.read_predictions(rec["_path"], rec["predictions"])
        assert list(preds) == ["base", "novel"]
        assert P.check_record(rec, preds) == []
