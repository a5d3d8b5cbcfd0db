"""Aggregate result records: mean ± std over seeds per cell, and averages over datasets.

Records come from :class:`results.store.ResultStore` (see its docstring for the format). The
rules, in order:

1. **Which records count.** Only sound records (:mod:`results.validate`; the store leaves damaged
   ones out). Records are grouped by their full identity but the seed: backbone + weights
   fingerprint, dataset, method, variant, resolved config, how features were made. Two record
   sets that differ in anything but the seed are two rows (:func:`row_key`), labelled by what
   differs: config values that differ from the method's defaults for that dataset and shot
   count (``[alpha=0.6]``), the cached-views approximation (``[cached views x10]``, always), the
   feature precision or cache dtype when one method has several (``[fp16 features]``); a
   backbone label with several weights fingerprints becomes one table per fingerprint. When one
   seed of a row still has several records (a copy in the older folder layout), an ``ok`` one
   wins over a failed one and the newest (``created``) wins among equals; the others are
   counted in ``Summary.duplicates``. Only ``ok`` records give accuracies; failed ones are
   counted per cell (``n_failed``) so a table can show them.
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
:class:`Labels` built from the method and dataset registries, and (for the config labels) a
``default_config(method, variant, dataset, shots, protocol)`` function; without one, a row's config is
compared with the oldest record's config of the same cell.
"""

from __future__ import annotations

import fnmatch
import json
import math
import os
from dataclasses import dataclass, field
from typing import Callable, Iterable

import pandas as pd

from results.records import method_label
from results.store import backbone_label

AVERAGE = "__average__"  # the dataset key of the average over datasets
DDOF = 0
KEYS = ["backbone", "dataset", "method", "shots"]
COLUMNS = ["backbone", "backbone_name", "pretrained", "weights", "dataset", "method",
           "method_label", "method_base", "variant", "config_tag", "features_tag",
           "approximation", "determinism_tag", "shots", "seed", "status", "top1", "created", "path"]
# Config keys that the cached-views label covers (n_views means nothing in online mode).
VIEW_KEYS = ("feature_mode", "n_views")
TAG_OPEN = " ["

# (method, variant, dataset, shots, protocol) -> the config bench resolves for it today
DefaultConfig = Callable[[str, "str | None", str, int, str], "dict | None"]


def split_row_key(key: str) -> tuple[str, str]:
    """``"coop [cached views x10]"`` -> (``"coop"``, ``"cached views x10"``)."""
    label, _, tag = key.partition(TAG_OPEN)
    return label, tag[:-1] if tag.endswith("]") else tag


def row_key(label: str, *tags: str) -> str:
    """A table row: the method label, plus what sets this record set apart, in brackets."""
    tag = ", ".join(t for t in tags if t)
    return f"{label}{TAG_OPEN}{tag}]" if tag else label


def approximation(config: dict) -> str:
    """The label of an approximation of the protocol in ``config`` ("" for none): cached views
    are V pre-encoded augmented views per image instead of a fresh augmentation every epoch."""
    if isinstance(config, dict) and config.get("feature_mode") == "cached":
        return f"cached views x{config.get('n_views', '?')}"
    return ""


def determinism_tag(record: dict) -> str:
    """The label of a result made under a reproducibility policy other than the default
    (bench/base/determinism.py): ``determinism native`` / ``determinism off``; "" for the default
    and for records from before the policy existed (they carry none)."""
    inputs = record.get("inputs") if isinstance(record.get("inputs"), dict) else {}
    policy = inputs.get("determinism")
    return f"determinism {policy}" if policy and policy != "portable" else ""


# ----------------------------------------------------------------------------- labels
@dataclass
class Labels:
    """Display names and sort order for method and dataset keys; unknown keys show as is.

    ``methods`` and ``datasets`` map a key (method name without variant, dataset name) to
    ``(display name, order)``. A method label ``name:variant`` displays as ``Name (variant)``,
    except for the method's default variant (``default_variants``), which displays as ``Name``.
    A row key's bracketed tag (``coop [cached views x10]``) is kept: ``CoOp [cached views x10]``.
    """

    methods: dict[str, tuple[str, float]] = field(default_factory=dict)
    datasets: dict[str, tuple[str, float]] = field(default_factory=dict)
    default_variants: dict[str, str] = field(default_factory=dict)
    average_name: str = "Average"

    def method_name(self, key: str) -> str:
        label, tag = split_row_key(key)
        base, _, variant = label.partition(":")
        name = self.methods.get(base, (base, 0))[0]
        if variant and variant != self.default_variants.get(base):
            name = f"{name} ({variant})"
        return f"{name} [{tag}]" if tag else name

    def dataset_name(self, key: str) -> str:
        if key == AVERAGE:
            return self.average_name
        return self.datasets.get(key, (key, 0))[0]

    def method_sort_key(self, key: str):
        label, tag = split_row_key(key)
        base, _, variant = label.partition(":")
        known = base in self.methods
        return (0 if known else 1, self.methods[base][1] if known else 0, base, variant, tag)

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
def _canon(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _fmt(value) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_fmt(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_fmt(v)}" for k, v in sorted(value.items())) + "}"
    return str(value)


def config_tag(config: dict, reference: dict | None, keys: Iterable[str] = ()) -> str:
    """``alpha=0.6, lr=1e-05``: the values of ``config`` that differ from ``reference`` (keys in
    both), and ``X unset`` for a key of ``keys`` (those other records of the cell have) that
    ``config`` lacks; the view keys are labelled by :func:`approximation` instead."""
    if not reference:
        return ""
    parts = [f"{k}={_fmt(config[k])}" for k in sorted(config)
             if k not in VIEW_KEYS and k in reference and _canon(config[k]) != _canon(reference[k])]
    parts += [f"{k} unset" for k in sorted(set(keys) - set(config))
              if k not in VIEW_KEYS and k in reference]
    return ", ".join(parts)


FEATURE_PARTS = (("device", "{} features"), ("precision", "{} features"),
                 ("cache_dtype", "{} cache"), ("decode", "{} decode"))
# A part a record does not state has this value (records say decode only when it is gpu).
FEATURE_DEFAULTS = {"decode": "cpu"}


def _features_sig(rec: dict) -> tuple | None:
    """How the record's image features were made: (device, precision, cache dtype), from its
    ``inputs.features`` or else its ``features``; None when it does not say."""
    inputs = rec.get("inputs") if isinstance(rec.get("inputs"), dict) else {}
    feats = inputs.get("features") if isinstance(inputs.get("features"), dict) \
        else rec.get("features")
    if not isinstance(feats, dict):
        return None
    return tuple(str(feats.get(k, FEATURE_DEFAULTS.get(k))) for k, _ in FEATURE_PARTS)


def _weights(rec: dict) -> str | None:
    inputs = rec.get("inputs") if isinstance(rec.get("inputs"), dict) else {}
    w = inputs.get("weights") or rec.get("weights")
    return None if w is None else str(w)


def _short_weights(fp: str) -> str:
    return fp.rsplit(":", 1)[-1][:8]


def records_to_frame(records: Iterable[dict],
                     default_config: DefaultConfig | None = None) -> pd.DataFrame:
    """One row per record, keyed by its row (:func:`row_key`); ``top1`` is NaN for failed
    records. ``default_config(method, variant, dataset, shots, protocol)`` gives the config each record
    is compared with for its label (None: the oldest record of the same cell)."""
    rows, configs, refs, sigs = [], [], [], []
    for rec in records:
        try:
            shots, seed = int(rec["shots"]), int(rec["seed"])
            label = method_label(rec)
            bb = backbone_label(rec)
        except (KeyError, TypeError, ValueError):
            continue  # not a result record
        status = rec.get("status", "failed")
        top1 = (rec.get("metrics") or {}).get("top1") if status == "ok" else None
        config = rec.get("config") if isinstance(rec.get("config"), dict) else {}
        reference = None
        if default_config is not None:
            try:
                reference = default_config(str(rec["method"]), rec.get("variant"),
                                           str(rec["dataset"]), shots,
                                           rec.get("protocol") or "fewshot")
            except Exception:  # noqa: BLE001 - a method or variant no longer registered
                reference = None
        rows.append({
            "backbone": bb, "backbone_name": str(rec["backbone"]),
            "pretrained": rec.get("pretrained"), "weights": _weights(rec),
            "dataset": str(rec["dataset"]), "method": label, "method_label": label,
            "method_base": str(rec["method"]), "variant": rec.get("variant"),
            "config_tag": "",
            "features_tag": "", "approximation": approximation(config),
            "determinism_tag": determinism_tag(rec), "shots": shots, "seed": seed, "status": status,
            "top1": float(top1) if top1 is not None else math.nan,
            "created": str(rec.get("created") or ""), "path": rec.get("_path"),
        })
        configs.append(config)
        refs.append(reference)
        sigs.append(_features_sig(rec))
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame["top1"] = frame["top1"].astype(float)
    frame["shots"] = frame["shots"].astype(int)
    frame["seed"] = frame["seed"].astype(int)
    if frame.empty:
        return frame
    _config_tags(frame, configs, refs)
    _features_tags(frame, sigs)
    _split_backbones_by_weights(frame)
    frame["method"] = [row_key(*tags) for tags in zip(
        frame["method_label"], frame["config_tag"], frame["features_tag"], frame["approximation"],
        frame["determinism_tag"])]
    return frame


def _config_tags(frame: pd.DataFrame, configs: list[dict], refs: list) -> None:
    """Each record's config tag, against its default config (or, without one, the oldest
    record of the same cell); a key that another record of the cell has and this one lacks (a
    record from before the key existed) counts as a difference."""
    for _, grp in frame.groupby(["backbone", "method_label", "dataset", "shots"]):
        keys = set().union(*(configs[i].keys() for i in grp.index))
        oldest = configs[grp.sort_values("created", kind="stable").index[0]]
        for i in grp.index:
            ref = refs[i] if refs[i] is not None else oldest
            frame.at[i, "config_tag"] = config_tag(configs[i], ref, keys)


def _features_tags(frame: pd.DataFrame, sigs: list) -> None:
    """Where one method (on one backbone) has features made in several ways, say which."""
    frame["_sig"] = sigs
    for _, grp in frame.groupby(["backbone", "method_label"]):
        known = {s for s in grp["_sig"] if s is not None}
        if len(known) < 2:
            continue
        varying = [i for i in range(len(FEATURE_PARTS)) if len({s[i] for s in known}) > 1]
        for i, sig in grp["_sig"].items():
            if sig is not None:
                frame.at[i, "features_tag"] = ", ".join(
                    FEATURE_PARTS[j][1].format(sig[j]) for j in varying)
    del frame["_sig"]


def _split_backbones_by_weights(frame: pd.DataFrame) -> None:
    """A backbone label with several weights fingerprints (a checkpoint file replaced under the
    same name): one backbone key per fingerprint, ``label@<fingerprint>``."""
    for bb, grp in frame.groupby("backbone"):
        known = {w for w in grp["weights"] if w}
        if len(known) < 2:
            continue
        for i, w in grp["weights"].items():
            if w:
                frame.at[i, "backbone"] = f"{bb}@{_short_weights(w)}"


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
        keep &= frame["method_label"].map(lambda m: _matches(m, methods)) | \
            frame["method_base"].map(lambda m: _matches(m, methods))
    if datasets:
        keep &= frame["dataset"].map(lambda d: _matches(d, datasets))
    if shots:
        keep &= frame["shots"].isin([int(s) for s in shots])
    if backbones:
        keep &= frame["backbone"].map(lambda b: _matches(b, backbones)) | \
            frame["backbone"].map(lambda b: _matches(b.split("@")[0], backbones)) | \
            frame["backbone_name"].map(lambda b: _matches(b, backbones))
    return frame[keep]


def dedupe(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """One record per (backbone, dataset, row, shots, seed): ok beats failed, newest wins."""
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
    methods: dict[str, list[str]]  # backbone label -> row keys (method label [+ tag])
    shots: list[int]
    duplicates: int = 0
    backbone_info: dict[str, tuple] = field(default_factory=dict)  # label -> (model, weights)
    # row key -> {"label": method label, "config": config tag, "approximation": ...}
    rows: dict[str, dict] = field(default_factory=dict)

    def approximations(self, backbone: str | None = None) -> dict[str, str]:
        """Row key -> approximation label, for the rows (of ``backbone``) that have one."""
        keys = self.methods.get(backbone, []) if backbone else list(self.rows)
        return {k: self.rows[k]["approximation"] for k in keys
                if self.rows.get(k, {}).get("approximation")}

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
        if "@" in bb:  # one of several weights under one name
            backbones[bb] += f" [weights {bb.rsplit('@', 1)[1]}]"
        info[bb] = (first["backbone_name"], pre)
    rows = {r.method: {"label": r.method_label, "config": r.config_tag or "",
                       "features": r.features_tag or "", "approximation": r.approximation or "",
                       "determinism": r.determinism_tag or ""}
            for r in frame.drop_duplicates("method").itertuples()}
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
                   info, rows)


def summarize_records(records: Iterable[dict], *, methods=None, datasets=None, shots=None,
                      backbones=None, default_config: DefaultConfig | None = None) -> Summary:
    """Records -> frame -> selection -> :class:`Summary`, in one call."""
    frame = select(records_to_frame(records, default_config), methods=methods, datasets=datasets, shots=shots,
                   backbones=backbones)
    return summarize(frame, datasets=datasets if datasets and not _has_pattern(datasets)
                     else None, shots=shots)


def _has_pattern(items: list[str]) -> bool:
    return any(ch in s for s in items for ch in "*?[")
