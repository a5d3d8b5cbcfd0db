"""Aggregate result records: mean ± std over seeds per cell, and averages over datasets.

Records come from :class:`results.store.ResultStore` (see its docstring for the format). The
rules, in order:

1. **Which records count.** One record per (backbone, dataset, method label, shots, seed): when
   several exist (a config changed between runs), an ``ok`` one wins over a failed one and the
   newest (``created``) wins among equals; the others are dropped and counted in
   ``Summary.duplicates``. Only ``ok`` records give accuracies; failed ones are counted per cell
   (``n_failed``) so a table can show them.
2. **Per dataset.** For each (backbone, dataset, method label, shots): ``mean`` and ``std`` of
   ``metrics.top1`` (percent) over seeds, and ``n`` = how many seeds are behind them. The std is
   the *population* std (``ddof=0``, numpy's default, as CoOp's ``parse_test_res.py`` computes
   it); one seed gives std 0, and tables then show no ± part.
3. **Average over datasets.** For each (backbone, method label, shots), over the *required*
   datasets (those asked for, or else every dataset that any method has for that backbone):
   ``mean`` = the mean of the per-dataset means. When the method lacks a required dataset the
   average is **missing** (NaN), never an average over fewer datasets; ``n_datasets`` /
   ``n_required`` say how many were there. ``std`` is the std over seeds of the per-seed average
   over datasets, computed over the seeds that every required dataset has; ``n`` = the number of
   those seeds.

Display names and order are not known here (``results`` knows only records): callers pass a
:class:`Labels` built from the method and dataset registries.
"""

from __future__ import annotations

import fnmatch
import math
import os
from dataclasses import dataclass, field
from typing import Iterable

import pandas as pd

from results.store import backbone_label, method_label

AVERAGE = "__average__"  # the dataset key of the average over datasets
DDOF = 0
KEYS = ["backbone", "dataset", "method", "shots"]
COLUMNS = ["backbone", "backbone_name", "pretrained", "dataset", "method", "method_base",
           "variant", "shots", "seed", "status", "top1", "created", "path"]


# ----------------------------------------------------------------------------- labels
@dataclass
class Labels:
    """Display names and sort order for method and dataset keys; unknown keys show as is.

    ``methods`` and ``datasets`` map a key (method name without variant, dataset name) to
    ``(display name, order)``. A method label ``name:variant`` displays as ``Name (variant)``,
    except for the method's default variant (``default_variants``), which displays as ``Name``.
    """

    methods: dict[str, tuple[str, float]] = field(default_factory=dict)
    datasets: dict[str, tuple[str, float]] = field(default_factory=dict)
    default_variants: dict[str, str] = field(default_factory=dict)
    average_name: str = "Average"

    def method_name(self, label: str) -> str:
        base, _, variant = label.partition(":")
        name = self.methods.get(base, (base, 0))[0]
        if variant and variant != self.default_variants.get(base):
            return f"{name} ({variant})"
        return name

    def dataset_name(self, key: str) -> str:
        if key == AVERAGE:
            return self.average_name
        return self.datasets.get(key, (key, 0))[0]

    def method_sort_key(self, label: str):
        base, _, variant = label.partition(":")
        known = base in self.methods
        return (0 if known else 1, self.methods[base][1] if known else 0, base, variant)

    def dataset_sort_key(self, key: str):
        if key == AVERAGE:
            return (2, 0, "")
        known = key in self.datasets
        return (0 if known else 1, self.datasets[key][1] if known else 0, key)

    def sort_methods(self, labels: Iterable[str]) -> list[str]:
        return sorted(set(labels), key=self.method_sort_key)

    def sort_datasets(self, keys: Iterable[str]) -> list[str]:
        return sorted(set(keys), key=self.dataset_sort_key)


# ----------------------------------------------------------------------------- records -> frame
def records_to_frame(records: Iterable[dict]) -> pd.DataFrame:
    """One row per record; ``top1`` is NaN for failed records (and for ok ones lacking it)."""
    rows = []
    for rec in records:
        try:
            shots, seed = int(rec["shots"]), int(rec["seed"])
            label = method_label(rec)
            bb = backbone_label(rec)
        except (KeyError, TypeError, ValueError):
            continue  # not a result record
        status = rec.get("status", "failed")
        top1 = (rec.get("metrics") or {}).get("top1") if status == "ok" else None
        rows.append({
            "backbone": bb, "backbone_name": str(rec["backbone"]),
            "pretrained": rec.get("pretrained"), "dataset": str(rec["dataset"]),
            "method": label, "method_base": str(rec["method"]), "variant": rec.get("variant"),
            "shots": shots, "seed": seed, "status": status,
            "top1": float(top1) if top1 is not None else math.nan,
            "created": str(rec.get("created") or ""), "path": rec.get("_path"),
        })
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame["top1"] = frame["top1"].astype(float)
    frame["shots"] = frame["shots"].astype(int)
    frame["seed"] = frame["seed"].astype(int)
    return frame


def _matches(value: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(value, p) for p in patterns)


def select(frame: pd.DataFrame, *, methods: list[str] | None = None,
           datasets: list[str] | None = None, shots: list[int] | None = None,
           backbones: list[str] | None = None) -> pd.DataFrame:
    """Keep the rows asked for. Methods match the label or the method name (``coop`` selects
    ``coop:csc`` too); backbones match the label (``RN50-quickgelu__openai``) or the model name;
    shell patterns work everywhere."""
    keep = pd.Series(True, index=frame.index)
    if methods:
        keep &= frame["method"].map(lambda m: _matches(m, methods)) | \
            frame["method_base"].map(lambda m: _matches(m, methods))
    if datasets:
        keep &= frame["dataset"].map(lambda d: _matches(d, datasets))
    if shots:
        keep &= frame["shots"].isin([int(s) for s in shots])
    if backbones:
        keep &= frame["backbone"].map(lambda b: _matches(b, backbones)) | \
            frame["backbone_name"].map(lambda b: _matches(b, backbones))
    return frame[keep]


def dedupe(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """One record per (backbone, dataset, method, shots, seed): ok beats failed, newest wins."""
    if frame.empty:
        return frame, 0
    ordered = frame.assign(_ok=frame["status"].eq("ok") & frame["top1"].notna()) \
        .sort_values(["_ok", "created"], ascending=[False, False], kind="stable")
    kept = ordered.drop_duplicates(KEYS + ["seed"], keep="first").drop(columns="_ok")
    return kept.sort_index(), len(frame) - len(kept)


# ----------------------------------------------------------------------------- summary
@dataclass
class Summary:
    """``cells``: one row per (backbone, dataset, method, shots) with mean, std, n, n_failed,
    n_datasets, n_required; ``dataset`` is :data:`AVERAGE` for the averages."""

    cells: pd.DataFrame
    backbones: dict[str, str]  # label -> "model (weights)"
    datasets: dict[str, list[str]]  # backbone label -> required datasets
    methods: dict[str, list[str]]  # backbone label -> method labels
    shots: list[int]
    duplicates: int = 0
    backbone_info: dict[str, tuple] = field(default_factory=dict)  # label -> (model, weights)

    def cell(self, backbone: str, dataset: str, method: str, shots: int) -> pd.Series | None:
        c = self.cells
        hit = c[(c.backbone == backbone) & (c.dataset == dataset) & (c.method == method)
                & (c.shots == shots)]
        return None if hit.empty else hit.iloc[0]

    @property
    def empty(self) -> bool:
        return self.cells.empty


CELL_COLUMNS = KEYS + ["mean", "std", "n", "n_failed", "n_datasets", "n_required"]


def summarize(frame: pd.DataFrame, *, datasets: list[str] | None = None,
              shots: list[int] | None = None) -> Summary:
    """Aggregate a frame of records (already selected). ``datasets``: the datasets an average
    needs (default: all datasets present per backbone); ``shots``: the shot counts to show
    (default: those present)."""
    frame, dropped = dedupe(frame)
    ok = frame[frame["status"].eq("ok") & frame["top1"].notna()]

    per = ok.groupby(KEYS)["top1"].agg(
        mean="mean", std=lambda s: s.std(ddof=DDOF), n="count").reset_index()
    failed = frame[~frame.index.isin(ok.index)].groupby(KEYS).size().rename("n_failed") \
        .reset_index()
    cells = per.merge(failed, on=KEYS, how="outer")
    cells["n"] = cells["n"].fillna(0).astype(int)
    cells["n_failed"] = cells["n_failed"].fillna(0).astype(int)
    cells["n_datasets"] = 1
    cells["n_required"] = 1

    backbones, info = {}, {}
    for bb, grp in frame.groupby("backbone"):
        first = grp.iloc[0]
        pre = first["pretrained"]
        shown = os.path.basename(pre) if pre and os.sep in str(pre) else pre  # a checkpoint file
        backbones[bb] = f"{first['backbone_name']} ({shown})" if pre else first["backbone_name"]
        info[bb] = (first["backbone_name"], pre)
    required = {bb: sorted(set(datasets) if datasets else set(grp["dataset"]))
                for bb, grp in frame.groupby("backbone")}
    methods = {bb: sorted(set(grp["method"])) for bb, grp in frame.groupby("backbone")}
    shot_list = sorted(set(int(s) for s in shots)) if shots else sorted(set(frame["shots"]))

    averages = []
    for (bb, method, k), grp in frame.groupby(["backbone", "method", "shots"]):
        need = required[bb]
        here = cells[(cells.backbone == bb) & (cells.method == method) & (cells.shots == k)
                     & cells.dataset.isin(need) & (cells.n > 0)]
        have = len(here)
        mean = here["mean"].mean() if have == len(need) and have else math.nan
        okk = ok[(ok.backbone == bb) & (ok.method == method) & (ok.shots == k)
                 & ok.dataset.isin(need)]
        by_seed = okk.groupby("seed")
        complete = by_seed.filter(lambda g: g["dataset"].nunique() == len(need))
        seed_avgs = complete.groupby("seed")["top1"].mean()
        std = seed_avgs.std(ddof=DDOF) if len(seed_avgs) and not math.isnan(mean) else math.nan
        n_failed = int(cells[(cells.backbone == bb) & (cells.method == method)
                             & (cells.shots == k) & cells.dataset.isin(need)]["n_failed"].sum())
        averages.append({"backbone": bb, "dataset": AVERAGE, "method": method, "shots": int(k),
                         "mean": mean, "std": std,
                         "n": int(len(seed_avgs)) if not math.isnan(mean) else 0,
                         "n_failed": n_failed, "n_datasets": have, "n_required": len(need)})
    if averages:
        cells = pd.concat([cells, pd.DataFrame(averages)], ignore_index=True)
    cells = cells.reindex(columns=CELL_COLUMNS)
    if shots:
        cells = cells[cells["shots"].isin(shot_list)]
    return Summary(cells.reset_index(drop=True), backbones, required, methods, shot_list, dropped,
                   info)


def summarize_records(records: Iterable[dict], *, methods=None, datasets=None, shots=None,
                      backbones=None) -> Summary:
    """Records -> frame -> selection -> :class:`Summary`, in one call."""
    frame = select(records_to_frame(records), methods=methods, datasets=datasets, shots=shots,
                   backbones=backbones)
    return summarize(frame, datasets=datasets if datasets and not _has_pattern(datasets)
                     else None, shots=shots)


def _has_pattern(items: list[str]) -> bool:
    return any(ch in s for s in items for ch in "*?[")
