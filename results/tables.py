"""Render a :class:`results.aggregate.Summary` as terminal, Markdown, LaTeX or CSV tables.

Two layouts per backbone, as in the papers:

* the main table: methods × shot counts, each cell the average over datasets;
* one table per shot count: methods × datasets, plus the Average column.

A cell reads ``mean ± std (n)``: n = seeds behind it; ``(n/m)`` when m − n seeds failed. A missing
cell reads ``–`` (never 0), with ``(0/m)`` when all m seeds failed, or ``(d/D ds)`` for an average
that lacks some of the D datasets. The best mean per column is bold (LaTeX, Markdown, terminal on
a colour terminal) or marked with ``*`` (plain terminal). CSV is the long, tidy form (one row per
cell, numbers only).

Terminal and Markdown go through tabulate; LaTeX is a small writer of its own (booktabs rules,
escaped names, caption, label, a ``\\multicolumn`` header over the shot counts or datasets).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field

import pandas as pd
from tabulate import tabulate

from results.aggregate import AVERAGE, Labels, Summary

MISSING = "–"
BOLD, RESET = "\033[1m", "\033[0m"
FORMATS = ("terminal", "markdown", "latex", "csv")


@dataclass
class Cell:
    mean: float = math.nan
    std: float = math.nan
    n: int = 0
    n_failed: int = 0
    n_datasets: int = 1
    n_required: int = 1
    best: bool = False
    plain: bool = False  # the number only (a value computed from means, e.g. base-to-novel HM)
    # Set by results/significance.py: a mark after the number (a dagger for a significant
    # difference) and an interval shown instead of the ± std part.
    mark: str = ""
    ci: tuple | None = None

    @property
    def missing(self) -> bool:
        return self.mean is None or math.isnan(self.mean)

    @classmethod
    def from_row(cls, row) -> "Cell":
        if row is None:
            return cls()
        return cls(float(row["mean"]), float(row["std"]), int(row["n"]), int(row["n_failed"]),
                   int(row["n_datasets"]), int(row["n_required"]))


@dataclass
class Table:
    title: str  # one line, for terminal/Markdown headings and the LaTeX caption
    label: str  # LaTeX label
    group: str  # the \multicolumn header over the value columns
    corner: str  # header of the row-name column
    columns: list[str]
    rows: list[str]
    cells: list[list[Cell]]
    notes: list[str] = field(default_factory=list)
    # What the rows and columns are (set by build_tables; results/significance.py reads them):
    # the backbone label, row keys (method rows) and column keys (shot counts or dataset keys).
    backbone: str = ""
    row_keys: list = field(default_factory=list)
    col_keys: list = field(default_factory=list)

    def mark_best(self) -> None:
        for j in range(len(self.columns)):
            values = [r[j].mean for r in self.cells if not r[j].missing]
            if len(values) < 2:
                continue
            top = round(max(values), 2)
            for r in self.cells:
                r[j].best = not r[j].missing and round(r[j].mean, 2) == top


# ----------------------------------------------------------------------------- building tables
def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text).strip("-").lower()


def build_tables(summary: Summary, labels: Labels, *, per_shot: bool = True) -> list[Table]:
    tables = []
    for bb in sorted(summary.backbones):
        bb_name = summary.backbones[bb]
        methods = labels.sort_methods(summary.methods[bb])
        datasets = labels.sort_datasets(summary.datasets[bb])
        ds_names = ", ".join(labels.dataset_name(d) for d in datasets)
        seeds_note = ("mean ± std over seeds (population std); (n) = seeds behind the cell, "
                      "(n/m) = n of m seeds succeeded")
        notes = row_notes(summary, bb)
        main = Table(
            title=(f"Top-1 accuracy (%) of {bb_name}, average over {len(datasets)} "
                   f"dataset{'s' * (len(datasets) != 1)} ({ds_names}); {seeds_note}"),
            label=f"tab:{_slug(bb)}-main", group="Shots", corner="Method",
            columns=[str(k) for k in summary.shots],
            rows=[labels.method_name(m) for m in methods],
            cells=[[Cell.from_row(summary.cell(bb, AVERAGE, m, k)) for k in summary.shots]
                   for m in methods], notes=list(notes),
            backbone=bb, row_keys=list(methods), col_keys=list(summary.shots))
        tables.append(main)
        if not per_shot:
            continue
        for k in summary.shots:
            cols = datasets + [AVERAGE]
            t = Table(
                title=f"Top-1 accuracy (%) of {bb_name}, {k} shot{'s' * (k != 1)}; {seeds_note}",
                label=f"tab:{_slug(bb)}-{k}shot", group=f"{k} shot{'s' * (k != 1)}",
                corner="Method", columns=[labels.dataset_name(d) for d in cols],
                rows=[labels.method_name(m) for m in methods],
                cells=[[Cell.from_row(summary.cell(bb, d, m, k)) for d in cols] for m in methods],
                notes=list(notes), backbone=bb, row_keys=list(methods), col_keys=list(cols))
            tables.append(t)
    for t in tables:
        t.mark_best()
    return tables


def row_notes(summary: Summary, backbone: str) -> list[str]:
    """What the bracketed row tags of ``backbone``'s tables mean (one line each)."""
    notes = []
    for tag in sorted(set(summary.approximations(backbone).values())):
        views = tag.rsplit("x", 1)[-1]
        notes.append(f"[{tag}]: an approximation of the protocol: trained on {views} augmented "
                     f"views per image encoded once, not a fresh augmentation every epoch "
                     f"(feature_mode: cached)")
    rows = [summary.rows.get(m, {}) for m in summary.methods.get(backbone, [])]
    for tag in sorted({r["determinism"] for r in rows if r.get("determinism")}):
        notes.append(f"[{tag}]: run with --determinism {tag.split()[-1]}, not the default "
                     f"portable policy: its last bits may differ on another CPU or run "
                     f"(docs/reliability.md)")
    if any(r.get("config") for r in rows):
        notes.append("[key=value]: config values that differ from the method's defaults for "
                     "that dataset and shot count; [key unset]: records written before the key "
                     "existed")
    if any(r.get("features") for r in rows):
        notes.append("[... features], [... cache]: the device and precision the image features "
                     "were computed with, and how they were stored, where one method has several")
    return notes


# ----------------------------------------------------------------------------- cell text
def _counts(c: Cell) -> str:
    total = c.n + c.n_failed
    return f"({c.n}/{total})" if c.n_failed else f"({c.n})"


def cell_text(c: Cell, *, counts: bool = True) -> str:
    """Plain text of a cell (no highlighting)."""
    if c.missing:
        if c.n_required > 1 and c.n_datasets < c.n_required:
            return f"{MISSING} ({c.n_datasets}/{c.n_required} ds)"
        if c.n_failed:
            return f"{MISSING} (0/{c.n_failed})"
        return MISSING
    text = f"{c.mean:.2f}"
    mark = f" {c.mark}" if c.mark else ""
    if c.plain:
        return text + mark
    if c.ci is not None:
        text += f" [{c.ci[0]:.2f}, {c.ci[1]:.2f}]"
    elif c.n > 1 and not math.isnan(c.std):
        text += f" ± {c.std:.2f}"
    if counts:
        text += f" {_counts(c)}"
    return text + mark


# ----------------------------------------------------------------------------- text formats
def render_text(tables: list[Table], fmt: str, *, color: bool = False) -> str:
    """``fmt``: "terminal" (plain, or ANSI bold with ``color``) or "markdown"."""
    out = []
    marked = False
    for t in tables:
        rows = []
        for name, cells in zip(t.rows, t.cells):
            row = [name]
            for c in cells:
                text = cell_text(c)
                if c.best:
                    if fmt == "markdown":
                        text = f"**{text}**"
                    elif color:
                        text = f"{BOLD}{text}{RESET}"
                    else:
                        text = f"{text} *"
                        marked = True
                row.append(text)
            rows.append(row)
        headers = [t.corner] + [f"{c}" for c in t.columns]
        if t.group == "Shots":
            headers = [t.corner] + [f"{c}-shot" for c in t.columns]
        if fmt == "markdown":
            out.append(f"**{t.title}**\n")
            out.append(tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True,
                                colalign=["left"] + ["right"] * len(t.columns)))
        else:
            out.append(t.title)
            out.append(tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True,
                                colalign=["left"] + ["right"] * len(t.columns)))
        out.extend(t.notes)
        out.append("")
    if marked:
        out.append("* best mean in its column")
    return "\n".join(out).rstrip() + "\n"


# ----------------------------------------------------------------------------- LaTeX
_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "–": "--", "—": "---", "±": r"$\pm$", "−": "$-$", "Δ": r"$\Delta$", "×": r"$\times$",
    "<": r"\textless{}", ">": r"\textgreater{}", "†": r"$^{\dagger}$", "α": r"$\alpha$",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(text))


_LATEX_MARKS = {"†": r"\dagger", "‡": r"\ddagger"}


def latex_cell(c: Cell) -> str:
    if c.missing:
        if c.n_required > 1 and c.n_datasets < c.n_required:
            return rf"--\textsuperscript{{{c.n_datasets}/{c.n_required}}}"
        return "--"
    mean = f"{c.mean:.2f}"
    mean = rf"\textbf{{{mean}}}" if c.best else mean
    mean += rf"$^{{{_LATEX_MARKS.get(c.mark, latex_escape(c.mark))}}}$" if c.mark else ""
    if c.plain:
        return mean
    std = rf"\,{{\scriptsize$\pm${c.std:.2f}}}" if c.n > 1 and not math.isnan(c.std) else ""
    if c.ci is not None:
        std = rf"\,{{\scriptsize[{c.ci[0]:.2f}, {c.ci[1]:.2f}]}}"
    total = c.n + c.n_failed
    count = f"{c.n}/{total}" if c.n_failed else f"{c.n}"
    return rf"{mean}{std}\,{{\tiny({count})}}"


def render_latex_table(t: Table) -> str:
    ncol = len(t.columns)
    lines = [
        r"\begin{table}[htbp]",
        r"\centering",
        rf"\caption{{{latex_escape(t.title)}. Best mean per column in bold; "
        rf"-- = missing (superscript: datasets present/required)."
        + "".join(" " + latex_escape(n) + "." for n in t.notes) + "}",
        rf"\label{{{t.label}}}",
        *([r"\small", r"\setlength{\tabcolsep}{3pt}"] if ncol > 6 else []),
        r"\begin{tabular}{l" + "c" * ncol + "}",
        r"\toprule",
        rf" & \multicolumn{{{ncol}}}{{c}}{{{latex_escape(t.group)}}} \\",
        rf"\cmidrule(lr){{2-{ncol + 1}}}",
        latex_escape(t.corner) + " & " + " & ".join(latex_escape(c) for c in t.columns) + r" \\",
        r"\midrule",
    ]
    for name, cells in zip(t.rows, t.cells):
        lines.append(latex_escape(name) + " & " + " & ".join(latex_cell(c) for c in cells)
                     + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines)


LATEX_PREAMBLE = "\\documentclass{article}\n\\usepackage[T1]{fontenc}\n\\usepackage{booktabs}\n"


def render_latex(tables: list[Table], *, standalone: bool = False) -> str:
    body = "% needs \\usepackage{booktabs}\n" + "\n\n".join(render_latex_table(t) for t in tables)
    if standalone:
        return (LATEX_PREAMBLE + "\\usepackage[margin=1cm,landscape]{geometry}\n"
                "\\begin{document}\n" + body + "\n\\end{document}\n")
    return body + "\n"


# ----------------------------------------------------------------------------- CSV
CSV_COLUMNS = ["backbone", "dataset", "dataset_name", "method", "method_name", "shots", "mean",
               "std", "n", "n_failed", "n_datasets", "n_required", "method_label", "config",
               "approximation", "views"]


def csv_rows(summary: Summary, labels: Labels) -> list[list]:
    """The tidy rows of :data:`CSV_COLUMNS` (mean and std as numbers, None or NaN when there is
    none): what ``render_csv`` writes and ``bench.load`` returns."""
    cells = summary.cells.copy()
    cells["_m"] = cells["method"].map(labels.method_sort_key)
    cells["_d"] = cells["dataset"].map(labels.dataset_sort_key)
    cells = cells.sort_values(["backbone", "shots", "_m", "_d"], kind="stable")
    rows = []
    for _, r in cells.iterrows():
        info = summary.rows.get(r["method"], {})
        approx = info.get("approximation", "")
        rows.append([
            r["backbone"], "average" if r["dataset"] == AVERAGE else r["dataset"],
            labels.dataset_name(r["dataset"]), r["method"], labels.method_name(r["method"]),
            int(r["shots"]), r["mean"], r["std"], int(r["n"]), int(r["n_failed"]),
            int(r["n_datasets"]), int(r["n_required"]), info.get("label", r["method"]),
            info.get("config", ""), approx, approx.rsplit("x", 1)[-1] if approx else ""])
    return rows


MEAN_STD = (6, 7)  # the positions of mean and std in CSV_COLUMNS


def render_csv(summary: Summary, labels: Labels) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in csv_rows(summary, labels):
        writer.writerow([_num(v) if i in MEAN_STD else v for i, v in enumerate(row)])
    return buf.getvalue()


def _num(x) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


# ----------------------------------------------------------------------------- comparison
COMPARISON_TITLE = ("Ours beside published numbers (same backbone, weights and shots); "
                    "Δ = ours − published")


def _comparison_rows(comp: pd.DataFrame, labels: Labels) -> list[tuple]:
    out = []
    comp = comp.assign(_m=comp["method"].map(labels.method_sort_key),
                       _d=comp["dataset"].map(labels.dataset_sort_key))
    comp = comp.sort_values(["backbone", "_m", "_d", "shots"], kind="stable")
    for _, r in comp.iterrows():
        ours = Cell(r["ours_mean"], r["ours_std"], int(r["ours_n"]), int(r["ours_failed"]),
                    int(r["n_datasets"]), int(r["n_required"]))
        diff = MISSING if math.isnan(r["diff"]) else f"{r['diff']:+.2f}"
        out.append((r["method_name"], labels.dataset_name(r["dataset"]), str(int(r["shots"])),
                    ours, f"{r['published']:.2f}", diff, r["source"]))
    return out


def render_comparison(comp: pd.DataFrame, labels: Labels, fmt: str, notes=(),
                      title: str = COMPARISON_TITLE) -> str:
    """The comparison from :func:`results.published.compare` in ``fmt``."""
    rows = _comparison_rows(comp, labels)
    if fmt == "csv":
        buf = io.StringIO()
        out = comp.assign(dataset=comp["dataset"].replace({AVERAGE: "average"}))
        out.to_csv(buf, index=False, float_format="%.4f", lineterminator="\n")
        return buf.getvalue()
    if fmt == "latex":
        lines = [r"\begin{table}[htbp]", r"\centering",
                 rf"\caption{{{latex_escape(title)}.}}", r"\label{tab:published}",
                 r"\begin{tabular}{lllcccl}", r"\toprule",
                 r" & & & \multicolumn{3}{c}{Top-1 accuracy (\%)} & \\",
                 r"\cmidrule(lr){4-6}",
                 r"Method & Dataset & Shots & Ours & Published & $\Delta$ & Source \\",
                 r"\midrule"]
        for name, ds, k, ours, pub, diff, src in rows:
            diff = "--" if diff == MISSING else f"${diff}$"
            lines.append(" & ".join([latex_escape(name), latex_escape(ds), k, latex_cell(ours),
                                     pub, diff, r"{\scriptsize " + latex_escape(src) + "}"])
                         + r" \\")
        if not rows:
            lines.append(r"\multicolumn{7}{c}{no published number matches this protocol} \\")
        lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
        return "\n".join(lines) + "\n"
    table = [[name, ds, k, cell_text(ours), pub, diff, src]
             for name, ds, k, ours, pub, diff, src in rows]
    headers = ["Method", "Dataset", "Shots", "Ours", "Published", "Δ", "Source"]
    tablefmt = "github" if fmt == "markdown" else "simple"
    head = f"**{title}**\n" if fmt == "markdown" else title
    body = (tabulate(table, headers=headers, tablefmt=tablefmt, disable_numparse=True,
                     colalign=["left", "left", "right", "right", "right", "right", "left"])
            if table
            else "(no published number matches this protocol)")
    tail = "".join(f"\nnote: {n}" for n in notes)
    return f"{head}\n{body}{tail}\n"
