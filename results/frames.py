"""Records as a tidy per-cell frame: one row per record, for one's own statistics and plots.

Columns (``CELL_COLUMNS`` first, then the flattened parts a record has): backbone label and
name, pretrained, dataset, method (the label: ``name:variant`` for a named variant),
method_base, variant, protocol, shots, seed, status, top1, mean_per_class, n_test (percent;
NaN for a failed cell), ``selected.<key>`` (what the method chose on val), ``timings.<key>``
(seconds), ``evaluations.<part>.<metric>`` (base/novel, or each target, for the other
protocols), config (the resolved config, a dict), error (type: message, failed cells),
cell_id, created, path.
"""

from __future__ import annotations

import math

import pandas as pd

from results.store import backbone_label
from results.records import method_label

CELL_COLUMNS = ["backbone", "backbone_name", "pretrained", "dataset", "method", "method_base",
                "variant", "protocol", "shots", "seed", "status", "top1", "mean_per_class",
                "n_test"]
TAIL_COLUMNS = ["config", "error", "cell_id", "created", "path"]
METRICS = ("top1", "mean_per_class", "n_test")


def _number(value) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else math.nan


def cell_row(rec: dict) -> dict:
    """One record as a flat row (see the module's docstring)."""
    ok = rec.get("status") == "ok"
    metrics = (rec.get("metrics") or {}) if ok else {}
    row = {
        "backbone": backbone_label(rec), "backbone_name": rec["backbone"],
        "pretrained": rec.get("pretrained"), "dataset": rec["dataset"],
        "method": method_label(rec), "method_base": rec["method"], "variant": rec.get("variant"),
        "protocol": rec.get("protocol") or "fewshot", "shots": int(rec["shots"]),
        "seed": int(rec["seed"]), "status": rec.get("status"),
        **{m: _number(metrics.get(m)) for m in METRICS},
    }
    for part in ("selected", "timings"):
        for key, value in sorted((rec.get(part) or {}).items()):
            row[f"{part}.{key}"] = value
    for name, values in sorted((rec.get("evaluations") or {}).items() if ok else ()):
        for m in METRICS:
            row[f"evaluations.{name}.{m}"] = _number((values or {}).get(m))
    error = rec.get("error") or {}
    row.update(config=rec.get("config"),
               error=f"{error.get('type')}: {error.get('message')}" if error else None,
               cell_id=rec.get("cell_id"), created=rec.get("created"), path=rec.get("_path"))
    return row


def cells_frame(records) -> pd.DataFrame:
    """The records as one frame, ``CELL_COLUMNS`` first and ``TAIL_COLUMNS`` last, in the order
    given (the store's: by path)."""
    rows = [cell_row(r) for r in records]
    middle = sorted({k for r in rows for k in r} - set(CELL_COLUMNS) - set(TAIL_COLUMNS))
    return pd.DataFrame(rows, columns=CELL_COLUMNS + middle + TAIL_COLUMNS)
