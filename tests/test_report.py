"""`bench report`: aggregation on hand-made records, table layouts, LaTeX that compiles,
published comparison, clear errors."""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess

import pytest

from bench.cli import main
from results.aggregate import AVERAGE, Labels, records_to_frame, summarize, summarize_records
from results.published import backbone_matches, compare, load_published
from results.store import ResultStore
from results.tables import build_tables, cell_text, render_latex

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHOTS = (1, 2, 4, 8, 16)
SEEDS = (1, 2, 3)
SEED_DELTA = {1: -1.0, 2: 0.0, 3: 1.0}  # mean 0, population std sqrt(2/3)
BASE = {"zero_shot": 50.0, "linear_probe": 40.0, "clip_adapter_visual": 55.0}
DS_OFFSET = {"caltech101": 30.0, "eurosat": -10.0, "dtd": 0.0}
POP_STD = math.sqrt(2 / 3)


def acc(method: str, dataset: str, shots: int, seed: int) -> float:
    grow = 0.0 if method == "zero_shot" else 2.0 * math.log2(shots)
    return BASE[method] + DS_OFFSET[dataset] + grow + SEED_DELTA[seed]


def record(method, dataset, shots, seed, top1=None, status="ok", backbone="RN50-quickgelu",
           pretrained="openai", variant=None, created="2024-01-01T00:00:00"):
    rec = {"backbone": backbone, "pretrained": pretrained, "dataset": dataset, "method": method,
           "variant": variant, "config": {"lr": 0.002}, "shots": shots, "seed": seed,
           "status": status, "created": created,
           "metrics": ({"top1": top1 if top1 is not None else acc(method, dataset, shots, seed),
                        "mean_per_class": 0.0, "n_test": 100} if status == "ok" else None)}
    if status != "ok":
        rec["error"] = {"type": "RuntimeError", "message": "boom", "traceback": ""}
    return rec


def demo_records(*, drop=(), fail=()):
    """Every (method, dataset, shots, seed) of the grid, less ``drop`` cells, with ``fail``
    cells written as failed. Cells are (method, dataset, shots, seed)."""
    out = []
    for m in BASE:
        for d in DS_OFFSET:
            for k in SHOTS:
                for s in SEEDS:
                    if (m, d, k, s) in drop:
                        continue
                    out.append(record(m, d, k, s, status="failed" if (m, d, k, s) in fail
                                      else "ok"))
    return out


# The hand-made store: clip_adapter_visual lacks dtd at 16 shots entirely (missing cell, partial
# average); linear_probe seed 3 failed on eurosat at 4 shots.
MISSING_CELLS = {("clip_adapter_visual", "dtd", 16, s) for s in SEEDS}
FAILED_CELLS = {("linear_probe", "eurosat", 4, 3)}


@pytest.fixture()
def fixed_labels(monkeypatch):
    """Display names from LABELS instead of the live registries (which other work changes)."""
    import bench.reporting as report

    monkeypatch.setattr(report, "_registry_labels", lambda: (LABELS, []))


@pytest.fixture()
def store_dir(tmp_path):
    store = ResultStore(tmp_path / "out")
    for rec in demo_records(drop=MISSING_CELLS, fail=FAILED_CELLS):
        store.write(rec)
    return tmp_path / "out"


LABELS = Labels(methods={"zero_shot": ("Zero-shot CLIP", 0), "linear_probe": ("Linear probe", 1),
                         "clip_adapter_visual": ("CLIP-Adapter (visual)", 3)},
                datasets={"caltech101": ("Caltech101", 1), "dtd": ("DTD", 8),
                          "eurosat": ("EuroSAT", 9)})


# ----------------------------------------------------------------------------- aggregation
def test_mean_std_and_counts_per_dataset(store_dir):
    s = summarize_records(ResultStore(store_dir).load_all())
    c = s.cell("RN50-quickgelu__openai", "caltech101", "clip_adapter_visual", 4)
    assert c["mean"] == pytest.approx(55 + 30 + 4)
    assert c["std"] == pytest.approx(POP_STD)  # population std (ddof 0)
    assert (c["n"], c["n_failed"]) == (3, 0)
    # a failed seed does not count in the mean, and is counted
    c = s.cell("RN50-quickgelu__openai", "eurosat", "linear_probe", 4)
    assert (c["n"], c["n_failed"]) == (2, 1)
    assert c["mean"] == pytest.approx(40 - 10 + 4 - 0.5)  # seeds 1 and 2 only
    assert c["std"] == pytest.approx(0.5)


def test_average_over_datasets_and_partial_average(store_dir):
    s = summarize_records(ResultStore(store_dir).load_all())
    bb = "RN50-quickgelu__openai"
    avg = s.cell(bb, AVERAGE, "zero_shot", 8)
    assert avg["mean"] == pytest.approx(50 + (30 - 10 + 0) / 3)
    assert avg["std"] == pytest.approx(POP_STD)  # std over seeds of the per-seed averages
    assert (avg["n"], avg["n_datasets"], avg["n_required"]) == (3, 3, 3)
    # dtd is missing at 16 shots: the average is missing, not an average of two datasets
    avg = s.cell(bb, AVERAGE, "clip_adapter_visual", 16)
    assert math.isnan(avg["mean"])
    assert (avg["n_datasets"], avg["n_required"]) == (2, 3)
    assert s.cell(bb, "dtd", "clip_adapter_visual", 16) is None
    # asking only for the two present datasets gives a full average again
    s2 = summarize_records(ResultStore(store_dir).load_all(), datasets=["caltech101", "eurosat"])
    avg = s2.cell(bb, AVERAGE, "clip_adapter_visual", 16)
    assert avg["mean"] == pytest.approx(55 + 8 + (30 - 10) / 2)


def test_ok_beats_failed_and_newest_wins_within_one_identity():
    recs = [record("zero_shot", "dtd", 1, 1, top1=10.0, created="2024-01-01"),
            record("zero_shot", "dtd", 1, 1, top1=20.0, created="2024-02-01"),
            record("zero_shot", "dtd", 1, 2, top1=30.0),
            record("zero_shot", "dtd", 1, 2, status="failed", created="2025-01-01")]
    s = summarize(records_to_frame(recs))
    c = s.cell("RN50-quickgelu__openai", "dtd", "zero_shot", 1)
    assert c["mean"] == pytest.approx(25.0) and c["n"] == 2 and c["n_failed"] == 0
    assert s.duplicates == 2


def test_another_config_is_another_row_never_a_duplicate():
    recs = [record("zero_shot", "dtd", 1, 1, top1=10.0, created="2024-01-01"),
            record("zero_shot", "dtd", 1, 1, top1=20.0, created="2024-02-01")]
    recs[1]["config"] = {"lr": 1}
    s = summarize(records_to_frame(recs))
    assert s.duplicates == 0
    assert s.methods["RN50-quickgelu__openai"] == ["zero_shot", "zero_shot [lr=1]"]
    assert s.cell("RN50-quickgelu__openai", "dtd", "zero_shot", 1)["mean"] == 10.0
    assert s.cell("RN50-quickgelu__openai", "dtd", "zero_shot [lr=1]", 1)["mean"] == 20.0


def test_variants_are_separate_methods_and_display_names_fall_back():
    recs = [record("clip_adapter_visual", "dtd", 1, 1, top1=1.0),
            record("clip_adapter_visual", "dtd", 1, 1, top1=2.0, variant="paper"),
            record("mystery", "dtd", 1, 1, top1=3.0)]
    recs[2]["method"] = "mystery"
    s = summarize(records_to_frame(recs))
    assert s.methods["RN50-quickgelu__openai"] == ["clip_adapter_visual",
                                                   "clip_adapter_visual:paper", "mystery"]
    t = build_tables(s, LABELS)[0]
    assert t.rows == ["CLIP-Adapter (visual)", "CLIP-Adapter (visual) (paper)", "mystery"]


# ----------------------------------------------------------------------------- tables
def test_terminal_report_layout_order_and_missing_cells(store_dir, capsys, fixed_labels):
    assert main(["report", str(store_dir), "--color", "never"]) == 0
    out = capsys.readouterr().out
    blocks = out.split("\n\n")
    assert len(blocks) >= 1 + len(SHOTS)  # main table + one per shot count
    main_t = blocks[0]
    assert "1-shot" in main_t and "16-shot" in main_t
    lines = main_t.splitlines()
    names = [ln.split("  ")[0] for ln in lines[3:]]
    assert names == ["Zero-shot CLIP", "Linear probe", "CLIP-Adapter (visual)"]  # display order
    row = next(ln for ln in lines if ln.startswith("CLIP-Adapter"))
    assert "– (2/3 ds)" in row  # the partial average at 16 shots is marked, not a number
    per16 = next(b for b in blocks if "16 shots" in b.splitlines()[0])
    assert "Caltech101" in per16 and per16.splitlines()[1].rstrip().endswith("Average")
    row = next(ln for ln in per16.splitlines() if ln.startswith("CLIP-Adapter"))
    cells = re.split(r"\s{2,}", row.strip())
    assert "–" in cells and "0.00" not in row
    per4 = next(b for b in blocks if "4 shots" in b.splitlines()[0])
    lp = next(ln for ln in per4.splitlines() if ln.startswith("Linear probe"))
    assert "(2/3)" in lp  # 2 ok of 3 seeds
    assert "*" in out and "* best mean in its column" in out


def test_best_per_column_is_highlighted():
    s = summarize(records_to_frame(demo_records()))
    main_t = build_tables(s, LABELS, per_shot=False)[0]
    assert main_t.rows == ["Zero-shot CLIP", "Linear probe", "CLIP-Adapter (visual)"]
    best = [[c.best for c in row] for row in main_t.cells]
    # CLIP-Adapter (55 + 2 log2 k) beats zero-shot (50) at every shot count
    assert best[2] == [True] * len(SHOTS) and not any(best[0]) and not any(best[1])
    from results.tables import render_text
    bold = render_text([main_t], "terminal", color=True)
    assert "\033[1m" in bold
    md = render_text([main_t], "markdown")
    assert "**" in md and "|" in md


def test_cell_text_marks_missing_never_zero():
    from results.tables import Cell
    assert cell_text(Cell()) == "–"
    assert cell_text(Cell(n_failed=3)) == "– (0/3)"
    assert cell_text(Cell(n_datasets=10, n_required=11)) == "– (10/11 ds)"
    assert cell_text(Cell(62.951, 0.3, 3)) == "62.95 ± 0.30 (3)"
    assert cell_text(Cell(62.951, 0.0, 1)) == "62.95 (1)"


def test_selection_and_csv(store_dir, tmp_path):
    out = tmp_path / "r.csv"
    assert main(["report", str(store_dir), "--format", "csv", "--out", str(out),
                 "--methods", "zero_shot,clip_adapter*", "--datasets", "caltech101,eurosat",
                 "--shots", "1,16", "--backbone", "RN50-quickgelu"]) == 0
    import pandas as pd
    df = pd.read_csv(out)
    assert set(df["method"]) == {"zero_shot", "clip_adapter_visual"}
    assert set(df["dataset"]) == {"caltech101", "eurosat", "average"}
    assert set(df["shots"]) == {1, 16}
    row = df[(df.method == "clip_adapter_visual") & (df.dataset == "average") & (df.shots == 16)]
    assert row["mean"].iloc[0] == pytest.approx(55 + 8 + 10, abs=1e-3)
    assert row["n"].iloc[0] == 3


@pytest.mark.parametrize("argv, needle", [
    (["--methods", "clip_adaptr"], "did you mean"),
    (["--shots", "one"], "--shots"),
    (["--backbone", "ViT-B-16"], "unknown backbone"),
    (["--shots", "3"], "no results match"),
])
def test_clear_usage_errors(store_dir, capsys, argv, needle):
    assert main(["report", str(store_dir), *argv]) == 2
    err = capsys.readouterr().err
    assert needle.lower() in err.lower() and "Traceback" not in err


def test_missing_output_folder_is_a_usage_error(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "no results" in capsys.readouterr().err


# ----------------------------------------------------------------------------- LaTeX
def test_latex_structure_and_escaping():
    recs = [record(m, "my_set&co", 1, s, top1=50.0 + (m == "linear_probe") + SEED_DELTA[s])
            for s in SEEDS for m in ("zero_shot", "linear_probe")]
    s = summarize(records_to_frame(recs))
    tex = render_latex(build_tables(s, Labels(methods={"zero_shot": ("Zero_shot 100%", 0)})))
    for needle in (r"\toprule", r"\midrule", r"\bottomrule", r"\caption{", r"\label{tab:",
                   r"\multicolumn{1}{c}{Shots}", r"my\_set\&co", r"Zero\_shot 100\%",
               r"\multicolumn{2}{c}{1 shot}", r"\textbf{", r"\pm"):
        assert needle in tex, needle
    assert "±" not in tex and "–" not in tex
    row = next(ln for ln in tex.splitlines() if ln.startswith("linear"))
    assert r"\textbf{51.00}" in row


def _compile(tex_body: str, folder) -> subprocess.CompletedProcess:
    doc = ("\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n"
           + tex_body + "\n\\end{document}\n")
    (folder / "t.tex").write_text(doc)
    return subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "t.tex"],
                          cwd=folder, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(shutil.which("pdflatex") is None,
                    reason="pdflatex not installed (scripts/ci/setup-latex.sh installs it)")
def test_latex_table_compiles_with_pdflatex(store_dir, tmp_path):
    tex = tmp_path / "tables.tex"
    assert main(["report", str(store_dir), "--format", "latex", "--out", str(tex),
                 "--compare", "published"]) == 0
    res = _compile(tex.read_text(), tmp_path)
    assert res.returncode == 0, res.stdout[-3000:]
    pdf = (tmp_path / "t.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and len(pdf) > 1000
    # a table that is not valid LaTeX must fail: the check can fail
    bad = _compile(tex.read_text().replace(r"\bottomrule", r"\bottomrul"), tmp_path)
    assert bad.returncode != 0


@pytest.mark.skipif(shutil.which("pdflatex") is None,
                    reason="pdflatex not installed (scripts/ci/setup-latex.sh installs it)")
def test_standalone_latex_compiles(store_dir, tmp_path):
    tex = tmp_path / "s.tex"
    assert main(["report", str(store_dir), "--format", "latex", "--standalone", "--layout",
                 "main", "--out", str(tex)]) == 0
    res = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "s.tex"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout[-3000:]


# ----------------------------------------------------------------------------- published
def test_published_numbers_are_shipped_with_sources():
    rows = load_published()
    assert all(r.source for r in rows)
    by = {(r.method, r.dataset, r.shots): r.top1 for r in rows}
    assert [by[("clip_adapter_visual", "average", k)] for k in SHOTS] == \
        [62.67, 65.55, 68.61, 71.40, 74.44]
    assert by[("clip_adapter_visual", "imagenet", 16)] == 63.59
    assert [by[("tip_adapter_f", "average", k)] for k in SHOTS] == \
        [64.60, 66.65, 69.67, 72.45, 75.83]
    assert by[("coop", "imagenet", 16)] == 62.95 and by[("coop", "average", 16)] == 73.42
    assert by[("zero_shot", "imagenet", None)] == 58.18


def test_protocol_matching():
    pub = next(r for r in load_published() if r.method == "coop")
    assert backbone_matches(pub, "RN50-quickgelu", "openai")
    assert backbone_matches(pub, "rn50-quickgelu", "openai")
    assert not backbone_matches(pub, "RN50", "openai")  # GELU text tower: not the papers' RN50
    assert not backbone_matches(pub, "RN50-quickgelu", "yfcc15m")
    assert not backbone_matches(pub, "ViT-B-16", "openai")


def _imagenet_records(backbone="RN50-quickgelu", pretrained="openai"):
    recs = []
    for s in SEEDS:
        recs.append(record("coop", "imagenet", 16, s, top1=63.0 + SEED_DELTA[s],
                           backbone=backbone, pretrained=pretrained))
        for k in (1, 16):
            recs.append(record("zero_shot", "imagenet", k, s, top1=58.0, backbone=backbone,
                               pretrained=pretrained))
    return recs


def test_compare_only_where_protocol_matches():
    s = summarize(records_to_frame(_imagenet_records()))
    comp, notes = compare(s, load_published(), backbone_names=s.backbone_info,
                          average_datasets=None)
    got = {(r.method, r.dataset, r.shots): (r.published, r.diff) for r in comp.itertuples()}
    assert got[("coop", "imagenet", 16)] == pytest.approx((62.95, 63.0 - 62.95))
    assert got[("zero_shot", "imagenet", 1)] == pytest.approx((58.18, -0.18))
    # CLIP-Adapter ImageNet 16 shots is published but we have none: shown with a missing Δ
    assert math.isnan(got[("clip_adapter_visual", "imagenet", 16)][1])
    # the 11-dataset means never meet an average over one dataset
    assert not any(d == AVERAGE for _, d, _ in got)
    assert any("11-dataset" in n for n in notes)
    # a backbone without published numbers (ViT-B-16 has the encoder-tuning methods'): nothing
    s = summarize(records_to_frame(_imagenet_records(backbone="ViT-L-14")))
    comp, notes = compare(s, load_published(), backbone_names=s.backbone_info,
                          average_datasets=None)
    assert comp.empty and any("no published numbers" in n for n in notes)


def test_plain_rn50_is_not_compared_with_published_rn50(tmp_path, capsys):
    s = summarize(records_to_frame(_imagenet_records(backbone="RN50")))
    comp, notes = compare(s, load_published(), backbone_names=s.backbone_info,
                          average_datasets=None)
    assert comp.empty
    assert any("QuickGELU" in n and "--backbone RN50-quickgelu" in n for n in notes), notes
    store = ResultStore(tmp_path / "o")
    for rec in _imagenet_records(backbone="RN50"):
        store.write(rec)
    assert main(["report", str(tmp_path / "o"), "--compare", "published", "--layout", "main",
                 "--color", "never"]) == 0
    out = capsys.readouterr().out
    assert "62.95" not in out and "58.18" not in out
    assert "note: RN50 (openai): not compared" in out


def test_compare_average_needs_exactly_the_eleven_datasets():
    eleven = [f"d{i}" for i in range(11)]
    recs = [record("coop", d, 16, 1, top1=70.0) for d in eleven]
    s = summarize(records_to_frame(recs))
    comp, _ = compare(s, load_published(), backbone_names=s.backbone_info,
                      average_datasets=eleven)
    avg = comp[(comp.dataset == AVERAGE) & (comp.method == "coop")]
    assert avg["diff"].iloc[0] == pytest.approx(70.0 - 73.42)
    comp, _ = compare(s, load_published(), backbone_names=s.backbone_info,
                      average_datasets=eleven[:10] + ["other"])
    assert not (comp.dataset == AVERAGE).any()


def test_registry_names_or_raw_keys(store_dir, capsys):
    """With the live registries: every method shows its registry display name, or its raw key."""
    from methods import METHODS

    assert main(["report", str(store_dir), "--layout", "main", "--color", "never"]) == 0
    out = capsys.readouterr().out
    known = {e.name: e.display_name for e in METHODS.entries()}
    for m in BASE:
        assert known.get(m, m) in out


def test_report_compare_published_terminal(tmp_path, capsys):
    store = ResultStore(tmp_path / "o")
    for rec in _imagenet_records():
        store.write(rec)
    assert main(["report", str(tmp_path / "o"), "--compare", "published", "--layout",
                 "main", "--color", "never"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if "62.95" in ln)
    assert "+0.05" in line and "CoOp" in line


def test_default_variant_displays_without_suffix():
    from results.aggregate import Labels

    labels = Labels(methods={"clip_adapter_visual": ("CLIP-Adapter (visual)", 30)},
                    default_variants={"clip_adapter_visual": "code"})
    assert labels.method_name("clip_adapter_visual:code") == "CLIP-Adapter (visual)"
    assert labels.method_name("clip_adapter_visual:paper") == "CLIP-Adapter (visual) (paper)"
    assert labels.method_name("unknown:v") == "unknown (v)"
