"""Reports of the other evaluation protocols (bench.protocols; docs/protocol.md §12).

Their records are turned into few-shot-shaped records, so that the one aggregation
(results.aggregate: dedupe, mean ± std over seeds, averages that need every dataset) serves them:

* base-to-novel: one record set per part, ``metrics`` = ``evaluations.base`` or ``.novel``;
  the harmonic mean is taken of the aggregated means, per dataset and for the average over
  datasets, as CoCoOp's tables do (H of the mean base and mean novel accuracies);
* domain / cross-dataset: one record per evaluation, ``dataset`` = the evaluated dataset (the
  source, then each target), ``source`` = the dataset trained on.

Layouts: base-to-novel, one table per dataset (and the average first) with Base, Novel and HM
columns (CoCoOp's Table 1); transfer, one table per shot count and source with the source and
every target as columns, plus the average over the targets for cross-dataset (CoCoOp's Tables 2
and 3).
"""

from __future__ import annotations

import csv
import io
import math

from results.aggregate import AVERAGE, Labels, Summary
from results.tables import Cell, Table, _num, _slug

PARTS = ("base", "novel")


def protocol_of(rec: dict) -> str:
    return rec.get("protocol") or "fewshot"


def of_protocol(records, protocol: str) -> list[dict]:
    return [r for r in records if isinstance(r, dict) and protocol_of(r) == protocol]


def part_records(records, part: str) -> list[dict]:
    """Base-to-novel records with ``metrics`` = the ``part`` evaluation (failed ones as they are)."""
    out = []
    for rec in records:
        if rec.get("status") == "ok":
            rec = {**rec, "metrics": (rec.get("evaluations") or {}).get(part)}
        out.append(rec)
    return out


def target_records(records) -> list[dict]:
    """One record per evaluation of each transfer record: ``dataset`` = what was evaluated,
    ``source`` = what was trained on. A failed record counts as failed on each of its targets."""
    out = []
    for rec in records:
        source = rec.get("dataset")
        names = [source] + list(rec.get("targets") or [])
        for name in names:
            row = {**rec, "dataset": name, "source": source}
            if rec.get("status") == "ok":
                row["metrics"] = (rec.get("evaluations") or {}).get(name)
                if row["metrics"] is None:
                    continue
            out.append(row)
    return out


# ----------------------------------------------------------------------------- tables
SEEDS_NOTE = ("mean ± std over seeds (population std); (n) = seeds behind the cell, (n/m) = n of "
              "m seeds succeeded")


def harmonic_mean(base: float, novel: float) -> float:
    """CoCoOp's H = 2 b n / (b + n) (0 when both are 0; NaN when either is missing)."""
    if base is None or novel is None or math.isnan(base) or math.isnan(novel):
        return math.nan
    return 0.0 if base + novel == 0 else 2 * base * novel / (base + novel)


def _hm(base: Cell, novel: Cell) -> Cell:
    """The HM column's cell: a number only (no ± or seed count: it is computed from means)."""
    if base.missing or novel.missing:
        return Cell(n_datasets=min(base.n_datasets, novel.n_datasets),
                    n_required=max(base.n_required, novel.n_required), plain=True)
    return Cell(mean=harmonic_mean(base.mean, novel.mean), n=min(base.n, novel.n), plain=True)


def base2novel_tables(base: Summary, novel: Summary, labels: Labels) -> list[Table]:
    """Per backbone and shot count: the average over datasets, then one table per dataset."""
    tables = []
    for bb in sorted(base.backbones):
        bb_name = base.backbones[bb]
        methods = labels.sort_methods(set(base.methods.get(bb, [])) |
                                      set(novel.methods.get(bb, [])))
        datasets = labels.sort_datasets(base.datasets[bb])
        for k in base.shots:
            for ds in [AVERAGE] + datasets:
                name = labels.dataset_name(ds)
                if ds == AVERAGE:
                    name = f"average over {len(datasets)} dataset{'s' * (len(datasets) != 1)}"
                cells = []
                for m in methods:
                    b = Cell.from_row(base.cell(bb, ds, m, k))
                    n = Cell.from_row(novel.cell(bb, ds, m, k))
                    cells.append([b, n, _hm(b, n)])
                t = Table(title=(f"Base-to-novel top-1 accuracy (%) of {bb_name}, {name}, "
                                 f"{k} shot{'s' * (k != 1)}; {SEEDS_NOTE}; HM = harmonic mean "
                                 f"of the mean base and novel accuracies"),
                          label=f"tab:{_slug(bb)}-b2n-{k}shot-{_slug(ds)}",
                          group=labels.dataset_name(ds), corner="Method",
                          columns=["Base", "Novel", "HM"],
                          rows=[labels.method_name(m) for m in methods], cells=cells)
                t.mark_best()
                tables.append(t)
    return tables


def transfer_tables(summary: Summary, labels: Labels, protocol: str, source: str) -> list[Table]:
    """Per backbone and shot count, for models trained on ``source`` (``summary`` holds only
    those): the source and every target as columns (and, for cross-dataset, the average over
    the targets: the summary's average, whose required datasets are the targets)."""
    tables = []
    what = "Domain generalization" if protocol == "domain" else "Cross-dataset transfer"
    for bb in sorted(summary.backbones):
        bb_name = summary.backbones[bb]
        methods = labels.sort_methods(summary.methods[bb])
        targets = [d for d in labels.sort_datasets(summary.datasets[bb]) if d != source]
        cols = [source] + targets + ([AVERAGE] if protocol == "crossdataset" else [])
        for k in summary.shots:
            names = [labels.dataset_name(d) for d in cols]
            if protocol == "crossdataset":
                names[-1] = "Target average"
            t = Table(title=(f"{what}: top-1 accuracy (%) of {bb_name} trained on "
                             f"{labels.dataset_name(source)}, {k} shot{'s' * (k != 1)}; "
                             f"{SEEDS_NOTE}"),
                      label=f"tab:{_slug(bb)}-{protocol}-{_slug(source)}-{k}shot",
                      group=f"Source {labels.dataset_name(source)}; targets",
                      corner="Method", columns=names,
                      rows=[labels.method_name(m) for m in methods],
                      cells=[[Cell.from_row(summary.cell(bb, d, m, k)) for d in cols]
                             for m in methods])
            t.mark_best()
            tables.append(t)
    return tables


CSV_COLUMNS = ["protocol", "backbone", "source", "dataset", "dataset_name", "method",
               "method_name", "shots", "evaluation", "mean", "std", "n", "n_failed",
               "n_datasets", "n_required"]


def csv_rows(protocol: str, summaries: dict[str, Summary], labels: Labels,
             source: str = "") -> list[list]:
    """The tidy rows of :data:`CSV_COLUMNS`: one per (backbone, dataset, method, shots,
    evaluation); base-to-novel rows are ``base``, ``novel`` and ``hm`` (computed from the two
    means), transfer rows ``top1``. Mean and std as numbers (std None for a plain value)."""
    out = []
    first = next(iter(summaries.values()))
    for _, r in first.cells.sort_values(["backbone", "shots", "method", "dataset"]).iterrows():
        bb, ds, m, k = r["backbone"], r["dataset"], r["method"], int(r["shots"])
        dsname = "average" if ds == AVERAGE else ds
        rows = []
        for part, summary in summaries.items():
            row = summary.cell(bb, ds, m, k)
            c = Cell.from_row(row)
            rows.append((part, c))
        if protocol == "base2novel":
            rows.append(("hm", _hm(rows[0][1], rows[1][1])))
        for part, c in rows:
            out.append([protocol, bb, source, dsname, labels.dataset_name(ds), m,
                        labels.method_name(m), k, part, c.mean, None if c.plain else c.std,
                        c.n, c.n_failed, c.n_datasets, c.n_required])
    return out


MEAN_STD = (9, 10)  # the positions of mean and std in CSV_COLUMNS


def render_csv(rows: list[list]) -> str:
    """Tidy CSV of :func:`csv_rows` (of one source or several)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow([_num(v) if i in MEAN_STD else v for i, v in enumerate(row)])
    return buf.getvalue()
