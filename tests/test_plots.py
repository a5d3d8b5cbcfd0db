"""`bench plot`: valid PNG and PDF, one panel per dataset plus the average, zero-shot as a line,
published overlays."""

from __future__ import annotations

import os

from bench.cli import main
from results.aggregate import Labels, records_to_frame, summarize
from results.plots import panel_titles, plot_curves
from results.store import ResultStore
from tests.test_report import MISSING_CELLS, SEEDS, demo_records, record
from tests.test_report import store_dir  # noqa: F401  (a fixture shared with the report tests)

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_plot_writes_png_and_pdf_with_one_panel_per_dataset(store_dir, tmp_path, capsys):
    stem = tmp_path / "figs" / "curves"
    assert main(["plot", str(store_dir), "--out", str(stem) + ".png"]) == 0
    out = capsys.readouterr().out
    png, pdf = stem.with_suffix(".png"), stem.with_suffix(".pdf")
    assert png.read_bytes().startswith(PNG_MAGIC)
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF-") and b"%%EOF" in data[-64:]
    assert "4 panels" in out  # caltech101, dtd, eurosat + Average
    # the PNG really has the panels' size: 3 datasets + average in one row of 4
    import struct
    width, height = struct.unpack(">II", png.read_bytes()[16:24])
    assert width > 2 * height


def test_panels_lines_and_zero_shot_level():
    labels = Labels(datasets={"caltech101": ("Caltech101", 1), "dtd": ("DTD", 2),
                              "eurosat": ("EuroSAT", 3)})
    s = summarize(records_to_frame(demo_records(drop=MISSING_CELLS)))
    fig = plot_curves(s, "RN50-quickgelu__openai", labels, ncols=2)
    assert panel_titles(fig) == ["Caltech101", "DTD", "EuroSAT", "Average"]
    ax = [a for a in fig.axes if a.get_title() == "Caltech101"][0]
    assert ax.get_xscale() == "log"
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    zs = lines["zero_shot"]
    assert set(zs.get_ydata()) == {80.0}  # a horizontal line at the zero-shot mean
    ca = lines["clip_adapter_visual"]
    assert list(ca.get_xdata()) == [1, 2, 4, 8, 16]
    assert ax.collections, "a shaded ±std band"
    # a missing cell is a gap, not a zero
    dtd = [a for a in fig.axes if a.get_title() == "DTD"][0]
    ca = {ln.get_label(): ln for ln in dtd.get_lines()}["clip_adapter_visual"]
    assert list(ca.get_xdata()) == [1, 2, 4, 8] and min(ca.get_ydata()) > 0
    import matplotlib.pyplot as plt
    plt.close(fig)


def test_plot_overlays_published_dashed(tmp_path, capsys):
    store = ResultStore(tmp_path / "o")
    for s in SEEDS:
        for k in (1, 16):
            store.write(record("coop", "imagenet", k, s, top1=55.0 + k / 2))
            store.write(record("zero_shot", "imagenet", k, s, top1=58.0))
    from results.published import compare, load_published
    summary = summarize(records_to_frame(store.load_all()))
    comp, _ = compare(summary, load_published(), backbone_names=summary.backbone_info,
                      average_datasets=None)
    fig = plot_curves(summary, "RN50-quickgelu__openai", Labels(), published=comp)
    ax = [a for a in fig.axes if a.get_title() == "imagenet"][0]
    styles = {ln.get_label(): ln.get_linestyle() for ln in ax.get_lines()}
    assert styles["Zero-shot CLIP (published)"] == "--"
    assert styles["CoOp (published)"] == "None"  # one published point: a marker
    import matplotlib.pyplot as plt
    plt.close(fig)
    assert main(["plot", str(tmp_path / "o"), "--compare", "published", "--formats", "png"]) == 0
    assert (tmp_path / "o" / "plots" / "curves-RN50-quickgelu__openai.png").is_file()


def test_plot_usage_errors(store_dir, capsys):
    assert main(["plot", str(store_dir), "--formats", "gif"]) == 2
    assert "--formats" in capsys.readouterr().err


def test_overlapping_curves_stay_visible_and_are_named():
    """Four methods at 100 % on one panel: each keeps its own marker, line style and colour,
    and the panel says which curves coincide (before: one line visible)."""
    METHODS = ["coop", "kgcoop", "prograd", "clip_adapter_visual", "linear_probe"]
    recs = [record(m, "caltech101", k, s, top1=100.0) for m in METHODS[:4]
            for k in (1, 2, 4) for s in SEEDS]
    recs += [record(METHODS[4], "caltech101", k, s, top1=50.0 + k) for k in (1, 2, 4)
             for s in SEEDS]
    s = summarize(records_to_frame(recs))
    fig = plot_curves(s, "RN50-quickgelu__openai", Labels())
    ax = [a for a in fig.axes if a.get_title() == "caltech101"][0]
    lines = [ln for ln in ax.get_lines() if ln.get_label() in METHODS[:4]]
    assert len(lines) == 4
    looks = {(ln.get_marker(), ln.get_linestyle(), ln.get_color()) for ln in lines}
    assert len(looks) == 4 and len({ln.get_marker() for ln in lines}) == 4
    assert all(ln.get_markerfacecolor() == "none" for ln in lines)  # hollow: stacked shapes show
    assert all(list(ln.get_ydata()) == [100.0] * 3 for ln in lines)  # drawn where they are
    notes = [t.get_text() for t in ax.texts if t.get_text().startswith("same curve:")]
    assert len(notes) == 1 and all(m in notes[0] for m in METHODS[:4])
    assert METHODS[4] not in notes[0]
    import matplotlib.pyplot as plt
    plt.close(fig)
