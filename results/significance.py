"""Paired comparisons of result records, and significance marks and intervals for tables.

Built on :mod:`results.stats` (the tests), :mod:`results.predictions` (per-image correctness) and
:mod:`results.facts` (what may be ranked). Inputs are records as read from
``OUTPUT/results/**/*.json`` (or an export, :mod:`results.export`); rows are those of the tables
(:func:`results.aggregate.records_to_frame`: a method label plus what sets a record set apart).

:func:`compare` — A vs B, per (backbone, dataset, shots) paired by seed, and per shot count over
the datasets (the Average). Tests (``test``):

* ``seeds`` (default): the paired t-test over seeds of the two accuracies; the Average the same
  over the per-seed averages over datasets (as the tables' std).
* ``bootstrap``: the paired bootstrap over test images and seeds (needs prediction files); the
  Average resamples every dataset's images and the seeds together.
* ``mcnemar``: McNemar's exact test per seed, "significant in every seed" (largest p; needs
  prediction files); no Average test (NaN).

Every Average row also gets the **across-datasets** test of the per-dataset mean differences
(``across``: ``wilcoxon``, the default, or ``t``). **Multiple comparisons**: Holm–Bonferroni,
the family being every p-value of the ``test`` column of one table (one backbone: each dataset x
shot count and each shot count's Average); the across-datasets p-values are a second family
(the Average rows of that table).

Pairs are checked: the same test images (``inputs.test``; and, with prediction files, the same
labels in the same order) or the cell is left out with a note; other few-shot subsets for a seed
(``inputs.subset``) give a note (paired by seed number only). Rows whose protocol facts differ
are refused (``ValueError``) unless ``allow_incomparable``.

:func:`mark_tables` and :func:`add_intervals` put the same tests into the tables of
:func:`results.tables.build_tables`: in each column the best mean against every other row, a
dagger on cells significantly below the best (Holm over the table), the test named in a note;
intervals (seed t, or bootstrap) instead of the ± std part.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
from tabulate import tabulate

from results import stats
from results.aggregate import AVERAGE, Labels, dedupe, records_to_frame, select
from results.facts import facts_of, facts_tag, incomparable
from results.predictions import PredictionsError, read_predictions

TESTS = ("seeds", "bootstrap", "mcnemar")
ACROSS = ("wilcoxon", "t")
ALPHA = 0.05
DAGGER = "†"
TEST_NAMES = {
    "seeds": "paired t-test over seeds",
    "bootstrap": "paired bootstrap over test images and seeds",
    "mcnemar": "McNemar's exact test in every seed (largest per-seed p)",
}
ACROSS_NAMES = {"wilcoxon": "Wilcoxon signed-rank test over datasets",
                "t": "paired t-test over datasets"}


# ----------------------------------------------------------------------------- the data
class Rows:
    """The ok records of a set of records by (backbone, dataset, row, shots) -> {seed: record},
    one per seed (the tables' dedupe: newest wins), with per-image correctness read on demand."""

    def __init__(self, records: list[dict], default_config=None):
        recs = []
        for i, r in enumerate(records):
            r = dict(r)
            r.setdefault("_path", f"<record {i}>")
            recs.append(r)
        self.by_path = {r["_path"]: r for r in recs}
        self.frame = records_to_frame(recs, default_config)
        self._correct: dict[str, tuple[np.ndarray, str]] = {}  # path -> (correct, labels hash)

    def restrict(self, **selection) -> "Rows":
        out = object.__new__(Rows)
        out.by_path, out._correct = self.by_path, self._correct
        out.frame = select(self.frame, **selection)
        return out

    def ok(self) -> pd.DataFrame:
        frame, _ = dedupe(self.frame)
        return frame[frame["status"].eq("ok") & frame["top1"].notna()]

    def resolve(self, name: str) -> str:
        """The row key ``name`` means: a row key, or a method label / name with one row."""
        keys = sorted(set(self.frame["method"]))
        if name in keys:
            return name
        hits = sorted(set(self.frame.loc[(self.frame["method_label"] == name)
                                         | (self.frame["method_base"] == name), "method"]))
        if len(hits) == 1:
            return hits[0]
        if not hits:
            raise ValueError(f"no results of {name!r}; rows found: {', '.join(keys) or 'none'}")
        raise ValueError(f"{name!r} has {len(hits)} rows ({'; '.join(hits)}): name one of them")

    def cells(self, row: str) -> dict[tuple, dict[int, dict]]:
        ok = self.ok()
        out: dict[tuple, dict[int, dict]] = {}
        for r in ok[ok["method"] == row].itertuples():
            out.setdefault((r.backbone, r.dataset, int(r.shots)), {})[int(r.seed)] = \
                self.by_path[r.path]
        return out

    def correct(self, record: dict) -> np.ndarray:
        """Per-image correctness of a few-shot record's test set (from its predictions file)."""
        return self._read(record)[0]

    def labels_key(self, record: dict) -> str:
        """The labels hash of the record's test set (two files pair only when they agree)."""
        return self._read(record)[1]

    def _read(self, record: dict) -> tuple[np.ndarray, str]:
        path = record["_path"]
        if path not in self._correct:
            block = record.get("predictions")
            if not isinstance(block, dict):
                raise PredictionsError(
                    f"{record['method']} on {record['dataset']} ({record['shots']} shots, seed "
                    f"{record['seed']}) has no per-image predictions: image-level tests need "
                    f"them (use --test seeds; a record written before bench stored predictions "
                    f"gets them when its cell is computed again: run into a new --output)")
            preds = read_predictions(path, block)
            name = next(iter(preds))  # few-shot: the one evaluation, the test set
            self._correct[path] = (preds[name].correct,
                                   block["evaluations"][name]["labels_sha256"])
        return self._correct[path]


def _pair_problem(ra: dict, rb: dict) -> tuple[str | None, str | None]:
    """(why the two records cannot be paired, a note on a weaker pairing)."""
    ia, ib = ra.get("inputs") or {}, rb.get("inputs") or {}
    if ia.get("test") and ib.get("test") and ia["test"] != ib["test"]:
        return "other test images", None
    if ia.get("subset") and ib.get("subset") and ia["subset"] != ib["subset"]:
        return None, "other few-shot subsets: paired by seed number only"
    return None, None


def _row_facts(rows: Rows, row: str) -> dict:
    ok = rows.ok()
    paths = ok.loc[ok["method"] == row, "path"]
    facts = [facts_of(rows.by_path[p]) for p in paths]
    return facts[0] if facts else {}


# ----------------------------------------------------------------------------- one test
@dataclass
class _Cell:
    seeds: list[int]
    a: dict[int, dict]
    b: dict[int, dict]
    note: str = ""


def _test(rows_a: Rows, rows_b: Rows, cells: list[_Cell], test: str, *, resamples: int,
          seed: int, confidence: float) -> stats.Comparison:
    """``test`` of A − B over ``cells`` (one cell: a dataset; several: their average)."""
    common = sorted(set.intersection(*(set(c.seeds) for c in cells)))
    top1 = lambda side, c, s: float(side[s]["metrics"]["top1"])  # noqa: E731
    if test == "seeds":
        va = [np.mean([top1(c.a, c, s) for c in cells]) for s in common]
        vb = [np.mean([top1(c.b, c, s) for c in cells]) for s in common]
        return stats.paired_t(va, vb, confidence=confidence)
    mats_a, mats_b = [], []
    for c in cells:
        for s in common:
            if rows_a.labels_key(c.a[s]) != rows_b.labels_key(c.b[s]):
                raise PredictionsError(f"{c.a[s]['dataset']} seed {s}: the two prediction files "
                                       f"hold other test labels; they cannot be paired")
        mats_a.append(np.stack([rows_a.correct(c.a[s]) for s in common]))
        mats_b.append(np.stack([rows_b.correct(c.b[s]) for s in common]))
    if test == "mcnemar":
        if len(cells) > 1:
            return stats.Comparison("McNemar", math.nan, math.nan, None, 0,
                                    "McNemar is per dataset: no Average test")
        return stats.mcnemar_seeds(mats_a[0], mats_b[0])
    return stats.paired_bootstrap(mats_a if len(cells) > 1 else mats_a[0],
                                  mats_b if len(cells) > 1 else mats_b[0], resamples=resamples,
                                  seed=seed, confidence=confidence)


# ----------------------------------------------------------------------------- compare
@dataclass
class ComparisonTable:
    """Tidy rows (``frame``) of one A-vs-B comparison, with what a reader must be told."""

    a: str
    b: str
    test: str
    across: str
    alpha: float
    confidence: float
    frame: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    def caption(self, labels: Labels | None = None) -> str:
        name = (labels.method_name if labels else str)
        m = int(self.frame["p"].notna().sum())
        k = int(((self.frame["dataset"] == AVERAGE) & self.frame["p_across"].notna()).sum())
        interval = ("" if self.test == "mcnemar"
                    else f", {round(100 * self.confidence)}% "
                         f"{'t' if self.test == 'seeds' else 'percentile'} interval")
        return (f"{name(self.a)} vs {name(self.b)}, paired by seed; Δ = A − B (accuracy points); "
                f"{TEST_NAMES[self.test]}, two-sided{interval}; p (Holm) = Holm–Bonferroni "
                f"over the {m} p-values of this table, * = p (Holm) < {self.alpha}; Average: "
                f"over datasets, and across datasets the {ACROSS_NAMES[self.across]} of the "
                f"per-dataset differences (Holm over its {k} shot counts)")


COLUMNS = ["backbone", "dataset", "shots", "a", "b", "n", "a_mean", "b_mean", "diff", "ci_low",
           "ci_high", "p", "p_holm", "significant", "test", "p_across", "p_across_holm",
           "significant_across", "across_test", "n_datasets", "note"]


def compare(records_a: list[dict], a: str, b: str, *, records_b: list[dict] | None = None,
            test: str = "seeds", across: str = "wilcoxon", datasets=None, shots=None,
            backbones=None, alpha: float = ALPHA, confidence: float = stats.CONFIDENCE,
            resamples: int = stats.RESAMPLES, seed: int = 0, default_config=None,
            strict_facts: bool = False, allow_incomparable: bool = False) -> ComparisonTable:
    """Compare row ``a`` of ``records_a`` with row ``b`` of ``records_b`` (default: the same
    records). Errors (unknown rows, facts that differ, missing prediction files) raise
    ``ValueError`` (PredictionsError is one) with a one-line message."""
    if test not in TESTS:
        raise ValueError(f"test {test!r}: use one of {', '.join(TESTS)}")
    if across not in ACROSS:
        raise ValueError(f"across {across!r}: use one of {', '.join(ACROSS)}")
    sel = dict(datasets=datasets, shots=shots, backbones=backbones)
    rows_a = Rows(records_a, default_config).restrict(**sel)
    rows_b = rows_a if records_b is None else Rows(records_b, default_config).restrict(**sel)
    for rows, given in ((rows_a, records_a), (rows_b, records_b or records_a)):
        if rows.frame.empty:
            whole = records_to_frame(given, default_config)
            raise ValueError(
                f"no results match the selection (datasets {', '.join(datasets or ['all'])}, "
                f"shots {', '.join(str(k) for k in shots or ['all'])}); found datasets {', '.join(sorted(set(whole['dataset'])))}, "
                f"shots {', '.join(str(k) for k in sorted(set(whole['shots'])))}")
    a, b = rows_a.resolve(a), rows_b.resolve(b)
    if records_b is None and a == b:
        raise ValueError(f"A and B are the same row ({a}): name two rows, or give two sources")
    why = incomparable(_row_facts(rows_a, a), _row_facts(rows_b, b), strict=strict_facts,
                       names=(a, b))
    notes = []
    if why:
        if not allow_incomparable:
            raise ValueError(f"{a} and {b} are not comparable: {'; '.join(why)} (compare them "
                             f"anyway with --allow-incomparable)")
        notes.append(f"compared although not comparable: {'; '.join(why)}")
    ca, cb = rows_a.cells(a), rows_b.cells(b)
    out, usable = [], {}
    for key in sorted(set(ca) | set(cb)):
        bb, ds, k = key
        base = {"backbone": bb, "dataset": ds, "shots": k, "a": a, "b": b,
                "test": TEST_NAMES[test]}
        seeds = sorted(set(ca.get(key, {})) & set(cb.get(key, {})))
        if not seeds:
            out.append({**base, "n": 0, "note": "no common seeds"})
            continue
        cell, skip = _Cell([], ca[key], cb[key]), None
        for s in seeds:
            problem, weak = _pair_problem(ca[key][s], cb[key][s])
            if problem:
                skip = problem
            elif weak:
                cell.note = weak
            cell.seeds.append(s)
        if skip:
            out.append({**base, "n": 0, "note": f"not paired: {skip}"})
            continue
        usable[key] = cell
        r = _test(rows_a, rows_b, [cell], test, resamples=resamples, seed=seed,
                  confidence=confidence)
        out.append({**base, **_row(r, cell, ca[key], cb[key]), "n_datasets": 1})
    for (bb, k) in sorted({(bb, k) for bb, _, k in set(ca) | set(cb)}):
        out.append(_average(rows_a, rows_b, usable, ca, cb, bb, k, a, b, test, across,
                            resamples=resamples, seed=seed, confidence=confidence))
    frame = pd.DataFrame(out).reindex(columns=COLUMNS)
    for bb, grp in frame.groupby("backbone"):
        frame.loc[grp.index, "p_holm"] = stats.holm(grp["p"].tolist())
        frame.loc[grp.index, "p_across_holm"] = stats.holm(grp["p_across"].tolist())
    frame["significant"] = frame["p_holm"] < alpha
    frame["significant_across"] = frame["p_across_holm"] < alpha
    notes += sorted({part for n in frame["note"].dropna() if n for part in n.split("; ")})
    return ComparisonTable(a, b, test, across, alpha, confidence, frame, notes)


def _row(r: stats.Comparison, cell: _Cell, sa: dict, sb: dict) -> dict:
    top = lambda side: float(np.mean([side[s]["metrics"]["top1"] for s in cell.seeds]))  # noqa
    return {"n": len(cell.seeds), "a_mean": top(sa), "b_mean": top(sb), "diff": r.estimate,
            "ci_low": r.ci[0] if r.ci else math.nan, "ci_high": r.ci[1] if r.ci else math.nan,
            "p": r.p, "note": "; ".join(x for x in (cell.note, r.note) if x)}


def _average(rows_a, rows_b, usable, ca, cb, bb, k, a, b, test, across, **kw) -> dict:
    need = sorted({ds for (b2, ds, k2) in set(ca) | set(cb) if b2 == bb and k2 == k})
    base = {"backbone": bb, "dataset": AVERAGE, "shots": k, "a": a, "b": b,
            "test": TEST_NAMES[test], "across_test": ACROSS_NAMES[across],
            "n_datasets": sum((bb, ds, k) in usable for ds in need)}
    lacking = [ds for ds in need if (bb, ds, k) not in usable]
    if lacking:
        return {**base, "n": 0, "note": f"average missing: no paired results on "
                                        f"{', '.join(lacking)}"}
    cells = [usable[(bb, ds, k)] for ds in need]
    common = sorted(set.intersection(*(set(c.seeds) for c in cells)))
    if not common:
        return {**base, "n": 0, "note": "average missing: no seed common to every dataset"}
    r = _test(rows_a, rows_b, cells, test, **kw)
    per_a = [np.mean([c.a[s]["metrics"]["top1"] for s in c.seeds]) for c in cells]
    per_b = [np.mean([c.b[s]["metrics"]["top1"] for s in c.seeds]) for c in cells]
    x = (stats.wilcoxon(per_a, per_b) if across == "wilcoxon"
         else stats.paired_t(per_a, per_b, unit="datasets"))

    def avg(sides):  # the mean over datasets of the mean over the common seeds
        return float(np.mean([np.mean([x[s]["metrics"]["top1"] for s in common]) for x in sides]))

    return {**base, "n": len(common), "a_mean": avg([c.a for c in cells]),
            "b_mean": avg([c.b for c in cells]), "diff": r.estimate,
            "ci_low": r.ci[0] if r.ci else math.nan, "ci_high": r.ci[1] if r.ci else math.nan,
            "p": r.p, "p_across": x.p,
            "note": "; ".join(n for n in (r.note, x.note) if n)}


# ----------------------------------------------------------------------------- rendering
def _p(p) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "–"
    return "<0.0001" if p < 1e-4 else f"{p:.4f}" if p < 0.01 else f"{p:.3f}"


def _num(x, sign=False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:+.2f}" if sign else f"{x:.2f}"


def _display_rows(t: ComparisonTable, labels: Labels) -> list[list[str]]:
    f = t.frame.assign(_d=t.frame["dataset"].map(labels.dataset_sort_key))
    f = f.sort_values(["backbone", "shots", "_d"], kind="stable")
    rows = []
    for r in f.itertuples():
        ci = ("–" if math.isnan(r.ci_low) else f"[{r.ci_low:+.2f}, {r.ci_high:+.2f}]")
        rows.append([labels.dataset_name(r.dataset), str(r.shots), str(r.n),
                     _num(r.a_mean), _num(r.b_mean), _num(r.diff, True), ci, _p(r.p),
                     _p(r.p_holm), "*" if r.significant else "",
                     _p(r.p_across) if r.dataset == AVERAGE else "",
                     ("*" if r.significant_across else "") if r.dataset == AVERAGE else ""])
    return rows


HEADERS = ["Dataset", "Shots", "Seeds", "A", "B", "Δ", "CI", "p", "p (Holm)", "sig",
           "p across ds", "sig"]


def render(t: ComparisonTable, fmt: str, labels: Labels | None = None) -> str:
    """``fmt``: terminal, markdown, latex or csv (the tidy frame)."""
    labels = labels or Labels()
    if fmt == "csv":
        buf = io.StringIO()
        t.frame.assign(dataset=t.frame["dataset"].replace({AVERAGE: "average"})) \
            .to_csv(buf, index=False, float_format="%.6g", lineterminator="\n")
        return buf.getvalue()
    rows = _display_rows(t, labels)
    title = t.caption(labels)
    by_backbone = len(set(t.frame["backbone"])) > 1
    head = f"A = {labels.method_name(t.a)}, B = {labels.method_name(t.b)}"
    if by_backbone:
        title += f"; backbones: {', '.join(sorted(set(t.frame['backbone'])))}"
    if fmt == "latex":
        from results.tables import latex_escape

        lines = [r"\begin{table}[htbp]", r"\centering",
                 rf"\caption{{{latex_escape(title)}." + "".join(
                     " " + latex_escape(n) + "." for n in t.notes) + "}",
                 r"\label{tab:compare}", r"\begin{tabular}{lrrrrrlrrlrl}", r"\toprule",
                 " & ".join(latex_escape(h) for h in HEADERS) + r" \\", r"\midrule"]
        for row in rows:
            lines.append(" & ".join(latex_escape(c) for c in row) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
        return "% needs \\usepackage{booktabs}\n" + "\n".join(lines) + "\n"
    tablefmt = "github" if fmt == "markdown" else "simple"
    body = tabulate(rows, headers=HEADERS, tablefmt=tablefmt, disable_numparse=True,
                    colalign=["left"] + ["right"] * 9 + ["right", "left"])
    top = f"**{title}**\n\n{head}\n" if fmt == "markdown" else f"{title}\n{head}"
    tail = "".join(f"\nnote: {n}" for n in t.notes)
    return f"{top}\n{body}{tail}\n"


# ----------------------------------------------------------------------------- tables
def _best_vs_rest(table, rows: Rows, required: list[str], test: str,
                  **kw) -> list[tuple[int, int, float]]:
    """(row index, column index, p) of every non-best row against its column's best."""
    cells_of = {key: rows.cells(key) for key in table.row_keys}
    facts = {key: _row_facts(rows, key) for key in table.row_keys}
    found = []
    for j, col in enumerate(table.col_keys):
        column = [c[j] for c in table.cells]
        present = [i for i, c in enumerate(column) if not c.missing]
        if len(present) < 2:
            continue
        best = max(present, key=lambda i: column[i].mean)
        for i in present:
            if i == best or incomparable(facts[table.row_keys[best]], facts[table.row_keys[i]]):
                continue
            p = _cell_p(rows, table, cells_of, best, i, col, required, test, **kw)
            found.append((i, j, p))
    return found


def _column(table, col, required: list[str]) -> tuple[int, list[str]]:
    """(shots, datasets) behind a column: a dataset, or the required ones for an Average."""
    per_shot = table.group != "Shots"
    k = int(table.group.split()[0]) if per_shot else int(col)
    return k, [col] if per_shot and col != AVERAGE else list(required)


def _cell_p(rows, table, cells_of, best, i, col, required, test, **kw) -> float:
    bb, key_b, key_i = table.backbone, table.row_keys[best], table.row_keys[i]
    k, datasets = _column(table, col, required)
    cells = []
    for ds in datasets:
        sa, sb = cells_of[key_b].get((bb, ds, k), {}), cells_of[key_i].get((bb, ds, k), {})
        seeds = sorted(set(sa) & set(sb))
        if not seeds:
            return math.nan
        cells.append(_Cell(seeds, sa, sb))
    if not cells or not set.intersection(*(set(c.seeds) for c in cells)):
        return math.nan
    return _test(rows, rows, cells, test, **kw).p


def mark_tables(tables: list, records: list[dict], summary, *, test: str = "seeds",
                alpha: float = ALPHA, resamples: int = stats.RESAMPLES, seed: int = 0,
                default_config: Callable | None = None) -> None:
    """Dagger the cells significantly below their column's best mean, in place (``tables`` from
    ``build_tables(summary, ...)``, ``records`` those behind ``summary``, read with the same
    ``default_config`` so the row keys agree): per table,
    the family is every (best, other row) pair of every column; Holm–Bonferroni over it. Rows
    whose protocol facts differ from the best's are not tested (and say so in a note)."""
    rows = Rows(records, default_config)
    kw = dict(resamples=resamples, seed=seed, confidence=stats.CONFIDENCE)
    for t in tables:
        if not t.row_keys:
            continue
        found = _best_vs_rest(t, rows, summary.datasets[t.backbone], test, **kw)
        adjusted = stats.holm([p for _, _, p in found])
        for (i, j, _), p in zip(found, adjusted):
            t.cells[i][j].mark = DAGGER if p < alpha else ""
        m = sum(not math.isnan(p) for _, _, p in found)
        t.notes.append(f"{DAGGER}: below its column's best mean by a significant margin "
                       f"({TEST_NAMES[test]}, two-sided; Holm–Bonferroni over the {m} "
                       f"comparisons of each column's best with every other row in this "
                       f"table, α = {alpha})")
        tags = {facts_tag(_row_facts(rows, key)) for key in t.row_keys} - {""}
        if tags:
            t.notes.append(f"rows with other protocol facts ({'; '.join(sorted(tags))}) are "
                           f"not tested against rows without them")


def add_intervals(tables: list, records: list[dict], summary, *, kind: str = "seeds",
                  confidence: float = stats.CONFIDENCE, resamples: int = stats.RESAMPLES,
                  seed: int = 0, default_config: Callable | None = None) -> None:
    """Put an interval in every cell, in place: ``seeds`` = the t interval of the mean over
    seeds (of the per-seed averages for an Average), ``bootstrap`` = the percentile interval
    over test images and seeds (needs prediction files)."""
    rows = Rows(records, default_config)
    for t in tables:
        if not t.row_keys:
            continue
        for i, key in enumerate(t.row_keys):
            mine = rows.cells(key)
            for j, col in enumerate(t.col_keys):
                c = t.cells[i][j]
                if c.missing or c.plain:
                    continue
                k, datasets = _column(t, col, summary.datasets[t.backbone])
                by_ds = [mine.get((t.backbone, ds, k), {}) for ds in datasets]
                if not all(by_ds):
                    continue
                common = sorted(set.intersection(*(set(x) for x in by_ds)))
                if len(common) < 2 and kind == "seeds":
                    continue
                if kind == "seeds":
                    values = [np.mean([x[s]["metrics"]["top1"] for x in by_ds]) for s in common]
                    c.ci = stats.mean_ci(values, confidence=confidence)
                else:
                    mats = [np.stack([rows.correct(x[s]) for s in common]) for x in by_ds]
                    c.ci = stats.bootstrap_ci(mats if len(mats) > 1 else mats[0],
                                              resamples=resamples, seed=seed,
                                              confidence=confidence)
        what = ("t interval of the mean over seeds" if kind == "seeds"
                else "percentile bootstrap interval over test images and seeds")
        t.notes.append(f"[lo, hi]: {round(100 * confidence)}% {what} (in place of ± std)")
