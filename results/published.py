"""Published reference numbers, shipped as data (``configs/published/*.csv``), and the comparison
of our aggregated results with them.

A CSV row: ``method, variant, display_name, backbone, pretrained, dataset, shots, top1, source,
note``. ``method``/``variant`` name the method label ours must have to be compared;
``dataset`` is a dataset key or ``average`` (the 11-dataset mean of the CoOp protocol); an empty
``shots`` matches every shot count (zero-shot). Every row names its source.

A published number is put beside ours only where the protocol matches:

* the backbone: exactly the open_clip model the row names (the papers' RN50 is
  ``RN50-quickgelu``: open_clip's plain ``RN50`` builds GELU where OpenAI's network has QuickGELU,
  so it is never compared with them) and the same pretrained weights tag (``openai``);
* the shot count, and the method label (a row without a variant matches the method's default
  variant);
* the protocol itself: rows trained on cached views (``[cached views xV]``, an approximation of
  a fresh augmentation every epoch) or with config values that differ from the method's
  defaults are refused, with a note naming them;
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

from results.aggregate import AVERAGE, Summary, split_row_key

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
    return name.strip().lower().replace("/", "-")


def backbone_matches(pub: Published, backbone: str, pretrained: str | None) -> bool:
    """Exactly the network and weights tag the published row names (case and ``/`` vs ``-``
    aside): ``RN50`` does not match ``RN50-quickgelu``."""
    return (_norm_backbone(backbone) == _norm_backbone(pub.backbone)
            and (pretrained or "") == pub.pretrained)


def _backbone_note(model: str, pretrained: str | None, published: list[Published]) -> str:
    quick = [p for p in published if _norm_backbone(p.backbone) == _norm_backbone(model)
             + "-quickgelu" and p.pretrained == (pretrained or "")]
    if quick:
        return (f"{model} ({pretrained}): not compared with the published numbers: they are for "
                f"{quick[0].backbone} ({pretrained}), OpenAI's network with QuickGELU, and "
                f"open_clip's plain {model} builds GELU instead; rerun with --backbone "
                f"{quick[0].backbone} to compare")
    refs = ", ".join(sorted({f"{p.backbone} ({p.pretrained})" for p in published}))
    return (f"{model} ({pretrained}): no published numbers for this backbone and weights (they "
            f"are for {refs})")


COMPARISON_COLUMNS = ["backbone", "method", "method_name", "dataset", "shots", "ours_mean",
                      "ours_std", "ours_n", "ours_failed", "n_datasets", "n_required",
                      "published", "diff", "source", "note"]


def _refusal(info: dict) -> str | None:
    """Why a row of ours is not the published protocol (None: it is)."""
    if info.get("approximation"):
        return (f"trained on {info['approximation']} (feature_mode: cached), an approximation "
                f"of the protocol's fresh augmentation every epoch")
    if info.get("config"):
        return f"its config differs from the method's defaults ({info['config']})"
    return None


def compare(summary: Summary, published: list[Published], *, backbone_names: dict[str, tuple],
            average_datasets: list[str] | None, method_names=None,
            default_variants: dict[str, str] | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Put published numbers beside ours where the protocol matches.

    ``backbone_names`` maps each backbone label in the summary to (model name, pretrained tag).
    ``average_datasets``: the keys of the eleven CoOp datasets, for the ``average`` rows.
    ``default_variants``: method -> its default variant (a published row without a variant is
    compared with that variant). Returns one row per (our backbone, our matching row, published
    row), with ``ours_*`` NaN/0 when we have no such cell (``diff`` NaN then), and notes on
    what was left out and why.
    """
    method_names = method_names or (lambda label: label)
    default_variants = default_variants or {}
    rows, notes = [], []
    for bb in sorted(summary.backbones):
        model, pretrained = backbone_names[bb]
        required = set(summary.datasets.get(bb, []))
        mine = [p for p in published if backbone_matches(p, model, pretrained)]
        if not mine:
            notes.append(_backbone_note(model, pretrained, published))
        ours = {k: summary.rows.get(k) or {"label": split_row_key(k)[0]}
                for k in summary.methods.get(bb, [])}
        for pub in mine:
            wanted = {pub.label}
            if not pub.variant and default_variants.get(pub.method):
                wanted.add(f"{pub.method}:{default_variants[pub.method]}")
            keys = [k for k, info in ours.items() if info["label"] in wanted]
            refused = {k: _refusal(ours[k]) for k in keys if _refusal(ours[k])}
            for k, why in refused.items():
                note = f"{method_names(k)}: not compared with published numbers: {why}"
                if note not in notes:
                    notes.append(note)
            targets = [k for k in keys if k not in refused] or [None]
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
            for target in targets:
                key = target or pub.label
                name = method_names(key)
                for k in shots:
                    if k not in summary.shots:
                        continue
                    cell = summary.cell(bb, dataset, key, k) if target else None
                    mean = float(cell["mean"]) if cell is not None else math.nan
                    rows.append({
                        "backbone": bb, "method": key,
                        "method_name": name if name != key else pub.display_name,
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
