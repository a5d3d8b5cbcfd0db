"""Few-shot curves, as in the CLIP-Adapter paper's figure: one panel per dataset plus the average.

Accuracy (top-1, %) against shots on a log-2 axis; one line per method (mean over seeds, shaded
band for ± std); zero-shot methods (``zero_shot`` and its variants) as a horizontal dotted line at
their mean over all shot counts; optional published numbers as dashed lines (or markers where a
single shot count is published). Matplotlib with the Agg backend: no display needed.

Curves that lie on each other (four methods at 100 % on an easy dataset) must not hide one
another: each method has its own colour, marker shape and line style, markers are hollow and the
earlier methods' markers larger, so stacked points stay visible; and a panel where methods have
the same mean at every shot count (within 0.05 points) says so in a note (``same curve: A = B``).
The points are drawn where they are: nothing is shifted.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FixedLocator, NullLocator  # noqa: E402

from results.aggregate import AVERAGE, Labels, Summary  # noqa: E402
from results.atomic import atomic_write_bytes  # noqa: E402

ZERO_SHOT = "zero_shot"
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")
LINESTYLES = ("-", "--", "-.", ":")
SAME = 0.05  # points: curves closer than this at every shot count are "the same curve"


def line_styles(methods: list[str]) -> dict[str, dict]:
    """Per method, the colour, marker, line style and marker size of its curve: distinct
    combinations, the earlier methods' markers larger (drawn first, beneath the later ones)."""
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    out = {}
    for i, m in enumerate(methods):
        out[m] = {"color": cycle[i % len(cycle)], "marker": MARKERS[i % len(MARKERS)],
                  "linestyle": LINESTYLES[i % len(LINESTYLES)],
                  "markersize": 3.5 + 1.5 * min(3, len(methods) - 1 - i),
                  "markerfacecolor": "none"}
    return out


def same_curves(curves: dict[str, tuple]) -> list[list[str]]:
    """Groups (two or more) of methods whose curves (shots, means) coincide within SAME."""
    groups: list[list[str]] = []
    for m, (x, y) in curves.items():
        for group in groups:
            gx, gy = curves[group[0]]
            if list(gx) == list(x) and all(abs(a - b) <= SAME for a, b in zip(gy, y)):
                group.append(m)
                break
        else:
            groups.append([m])
    return [g for g in groups if len(g) > 1]


def is_zero_shot(key: str) -> bool:
    """A zero-shot row (any variant, any bracketed tag)."""
    return key.partition(" [")[0].partition(":")[0] == ZERO_SHOT


def plot_curves(summary: Summary, backbone: str, labels: Labels, *, published=None,
                ncols: int = 4, title: str | None = None):
    """Draw the curves for one backbone; returns the figure. ``published``: rows of
    :func:`results.published.compare` (columns method, method_name, dataset, shots, published)
    to overlay as dashed lines."""
    datasets = labels.sort_datasets(summary.datasets[backbone]) + [AVERAGE]
    methods = labels.sort_methods(summary.methods[backbone])
    n = len(datasets)
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.0 * nrows), squeeze=False)
    styles = line_styles([m for m in methods if not is_zero_shot(m)])
    colors = {m: style["color"] for m, style in styles.items()}
    cells = summary.cells[summary.cells.backbone == backbone]
    shots = summary.shots

    for idx, ds in enumerate(datasets):
        ax = axes[idx // ncols][idx % ncols]
        here = cells[cells.dataset == ds]
        curves: dict[str, tuple] = {}
        for m in methods:
            rows = here[(here.method == m) & here["mean"].notna()].sort_values("shots")
            if rows.empty:
                continue
            name = labels.method_name(m)
            if is_zero_shot(m):
                level, sd = rows["mean"].mean(), rows["std"].fillna(0.0).mean()
                ax.axhline(level, color="black", linestyle=":", linewidth=1.2, label=name)
                if sd > 0:
                    ax.axhspan(level - sd, level + sd, color="black", alpha=0.06, linewidth=0)
                continue
            x, y = rows["shots"].to_numpy(), rows["mean"].to_numpy()
            sd = rows["std"].fillna(0.0).to_numpy()
            ax.plot(x, y, label=name, **styles[m])
            ax.fill_between(x, y - sd, y + sd, color=colors[m], alpha=0.18, linewidth=0)
            curves[name] = (x.tolist(), y.tolist())
        notes = [" = ".join(group) for group in same_curves(curves)]
        if notes:
            ax.text(0.02, 0.02, "same curve: " + "; ".join(notes), transform=ax.transAxes,
                    fontsize=6, va="bottom", ha="left", wrap=True, color="dimgray",
                    bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 1})
        if published is not None and len(published):
            pub = published[(published.backbone == backbone) & (published.dataset == ds)]
            for m, grp in pub.groupby("method", sort=False):
                grp = grp.sort_values("shots")
                name = f"{grp['method_name'].iloc[0]} (published)"
                color = colors.get(m, "gray")
                if is_zero_shot(m):
                    ax.axhline(grp["published"].mean(), color="gray", linestyle="--",
                               linewidth=1.0, label=name)
                elif len(grp) == 1:
                    ax.plot(grp["shots"], grp["published"], linestyle="none", marker="x",
                            color=color, label=name)
                else:
                    ax.plot(grp["shots"], grp["published"], linestyle="--", marker="x",
                            markersize=4, color=color, label=name)
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_locator(FixedLocator(shots))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([str(k) for k in shots])
        if shots:
            ax.set_xlim(min(shots) / 1.25, max(shots) * 1.25)
        ax.set_title(labels.dataset_name(ds), fontsize=10,
                     fontweight="bold" if ds == AVERAGE else "normal")
        ax.set_xlabel("shots per class", fontsize=8)
        if idx % ncols == 0:
            ax.set_ylabel("top-1 accuracy (%)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
        if not ax.lines:
            ax.text(0.5, 0.5, "no results", ha="center", va="center", transform=ax.transAxes,
                    color="gray")
    for idx in range(n, nrows * ncols):
        axes[idx // ncols][idx % ncols].set_visible(False)

    handles, names = {}, []
    for ax in fig.axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in handles:
                handles[lab] = h
                names.append(lab)
    if names:
        fig.legend([handles[k] for k in names], names, loc="upper center",
                   bbox_to_anchor=(0.5, 0.0), ncol=min(4, len(names)), fontsize=8,
                   frameon=False)
    fig.suptitle(title or f"Few-shot top-1 accuracy, {summary.backbones[backbone]} "
                 f"(mean ± std over seeds)", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return fig


def panel_titles(fig) -> list[str]:
    return [ax.get_title() for ax in fig.axes if ax.get_visible() and ax.get_title()]


def save_figure(fig, stem: Path, formats=("png", "pdf"), dpi: int = 150) -> list[Path]:
    """Write ``stem.<fmt>`` for each format; returns the paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = stem.with_name(f"{stem.name}.{fmt}")
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=dpi, bbox_inches="tight")
        atomic_write_bytes(path, buf.getvalue())
        paths.append(path)
    plt.close(fig)
    return paths
