"""Published reference numbers, shipped as data (``configs/published/*.csv``), and the comparison
of our aggregated results with them.

A CSV row: ``method, variant, display_name, backbone, pretrained, dataset, shots, top1, source,
note``. ``method``/``variant`` name the method label ours must have to be compared;
``dataset`` is a dataset key or ``average`` (the 11-dataset mean of the CoOp protocol); an empty
``shots`` matches every shot count (zero-shot). Every row names its source.

A published number is put beside ours only where the protocol matches:

* the backbone: the same model (``RN50`` as papers write it matches open_clip's
  ``RN50-quickgelu`` and ``RN50``) and the same pretrained weights tag (``openai``);
* the shot count, and the method label;
* for ``average``: our average covers exactly the eleven CoOp datasets (the caller passes their
  keys); an average over another set is never compared with the 11-dataset mean.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pandas as pd

from results.aggregate import AVERAGE, Summary

PUBLISHED_AVERAGE = "average"


@dataclass(frozen=True)
class Published:
    method: str
    variant: str
    display_name: str
    backbone: str
    pretrained: str
    dataset: str
    shots: int | None
    top1: float
    source: str
    note: str

    @property
    def label(self) -> str:
        return f"{self.method}:{self.variant}" if self.variant else self.method


def _read(text: str, origin: str) -> list[Published]:
    rows = []
    for i, r in enumerate(csv.DictReader(text.splitlines()), start=2):
        try:
            rows.append(Published(
                method=r["method"].strip(), variant=(r.get("variant") or "").strip(),
                display_name=(r.get("display_name") or r["method"]).strip(),
                backbone=r["backbone"].strip(), pretrained=r["pretrained"].strip(),
                dataset=r["dataset"].strip(),
                shots=int(r["shots"]) if (r.get("shots") or "").strip() else None,
                top1=float(r["top1"]), source=r["source"].strip(),
                note=(r.get("note") or "").strip()))
        except (KeyError, ValueError, AttributeError) as exc:
            raise ValueError(f"{origin}, line {i}: bad published row ({exc})") from exc
        if not rows[-1].source:
            raise ValueError(f"{origin}, line {i}: a published number needs its source")
    return rows


def load_published(paths: list[Path] | None = None) -> list[Published]:
    """The shipped reference numbers (every ``configs/published/*.csv``), or those in ``paths``."""
    if paths:
        return [row for p in paths for row in _read(Path(p).read_text(), str(p))]
    folder = resources.files("configs") / "published"
    rows = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".csv"):
            rows.extend(_read(entry.read_text(), f"configs/published/{entry.name}"))
    return rows


def _norm_backbone(name: str) -> str:
    return name.strip().lower().replace("/", "-").removesuffix("-quickgelu")


def backbone_matches(pub: Published, backbone: str, pretrained: str | None) -> bool:
    """Same network and weights tag. Papers say ``RN50``; open_clip names the OpenAI network
    ``RN50-quickgelu`` (its plain ``RN50`` with ``openai`` weights loads the same weights), so the
    ``-quickgelu`` suffix is ignored."""
    return (_norm_backbone(backbone) == _norm_backbone(pub.backbone)
            and (pretrained or "") == pub.pretrained)


COMPARISON_COLUMNS = ["backbone", "method", "method_name", "dataset", "shots", "ours_mean",
                      "ours_std", "ours_n", "ours_failed", "n_datasets", "n_required",
                      "published", "diff", "source", "note"]


def compare(summary: Summary, published: list[Published], *, backbone_names: dict[str, tuple],
            average_datasets: list[str] | None, method_names=None) -> tuple[pd.DataFrame, list[str]]:
    """Put published numbers beside ours where the protocol matches.

    ``backbone_names`` maps each backbone label in the summary to (model name, pretrained tag).
    ``average_datasets``: the keys of the eleven CoOp datasets, for the ``average`` rows.
    Returns one row per (our backbone, published row) that matches, with ``ours_*`` NaN/0 when we
    have no such cell (``diff`` NaN then), and notes on what was left out and why.
    """
    method_names = method_names or (lambda label: label)
    rows, notes = [], []
    refs = ", ".join(sorted({f"{p.backbone} ({p.pretrained})" for p in published}))
    for bb in sorted(summary.backbones):
        model, pretrained = backbone_names[bb]
        required = set(summary.datasets.get(bb, []))
        mine = [p for p in published if backbone_matches(p, model, pretrained)]
        if not mine:
            notes.append(f"{model} ({pretrained}): no published numbers for this backbone and "
                         f"weights (they are for {refs})")
        for pub in mine:
            if pub.dataset == PUBLISHED_AVERAGE:
                dataset = AVERAGE
                if not average_datasets or len(set(average_datasets)) != 11 \
                        or required != set(average_datasets):
                    continue  # our average is not the 11-dataset mean
            else:
                dataset = pub.dataset
                if dataset not in required:
                    continue
            shots = [pub.shots] if pub.shots is not None else list(summary.shots)
            for k in shots:
                if k not in summary.shots:
                    continue
                cell = summary.cell(bb, dataset, pub.label, k)
                mean = float(cell["mean"]) if cell is not None else math.nan
                rows.append({
                    "backbone": bb, "method": pub.label,
                    "method_name": (method_names(pub.label) if method_names(pub.label) != pub.label
                                    else pub.display_name),
                    "dataset": dataset, "shots": k, "ours_mean": mean,
                    "ours_std": float(cell["std"]) if cell is not None else math.nan,
                    "ours_n": int(cell["n"]) if cell is not None else 0,
                    "ours_failed": int(cell["n_failed"]) if cell is not None else 0,
                    "n_datasets": int(cell["n_datasets"]) if cell is not None else 0,
                    "n_required": int(cell["n_required"]) if cell is not None else
                    (len(required) if dataset == AVERAGE else 1),
                    "published": pub.top1, "diff": mean - pub.top1,
                    "source": pub.source, "note": pub.note})
    if any(p.dataset == PUBLISHED_AVERAGE for p in published) and not any(
            r["dataset"] == AVERAGE for r in rows):
        if not average_datasets or len(set(average_datasets)) != 11:
            notes.append("published 11-dataset means left out: the eleven CoOp datasets are not "
                         "all registered here")
        else:
            notes.append("published 11-dataset means left out: our average is not over exactly "
                         "the eleven CoOp datasets")
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS), notes
