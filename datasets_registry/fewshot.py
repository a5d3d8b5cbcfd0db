"""Few-shot sampling exactly as CoOp does it (Dassl ``generate_fewshot_dataset``).

Python's ``random`` (and numpy, torch) are seeded with the run seed; the train list is read in
file order and grouped by label, labels in order of first appearance; each label with at least K
items gives ``random.sample(items, K)``, otherwise all its items. The same then runs on the val
list with min(K, 4), continuing the same random stream.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
import torch

from datasets_registry.base import Item


@dataclass
class FewShotSubset:
    train: list[Item]
    val: list[Item]
    shots: int
    seed: int
    short_classes: dict[str, dict[int, int]] = field(default_factory=dict)
    """Per split, labels that had fewer than the asked number of items -> how many were taken."""

    def to_json(self) -> dict:
        return {"shots": self.shots, "seed": self.seed,
                "train": [list(x) for x in self.train], "val": [list(x) for x in self.val],
                "short_classes": {s: {str(k): v for k, v in d.items()}
                                  for s, d in self.short_classes.items()}}


def _group_by_label(items: list[Item]) -> dict[int, list[Item]]:
    groups: dict[int, list[Item]] = {}
    for item in items:
        groups.setdefault(item[1], []).append(item)
    return groups


def _sample_per_label(items: list[Item], k: int) -> tuple[list[Item], dict[int, int]]:
    out: list[Item] = []
    short: dict[int, int] = {}
    for label, group in _group_by_label(items).items():
        if len(group) >= k:
            out.extend(random.sample(group, k))
        else:
            out.extend(group)
            short[label] = len(group)
    return out, short


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def sample_fewshot(train: list[Item], val: list[Item], shots: int, seed: int) -> FewShotSubset:
    """CoOp's few-shot subsets for (shots, seed): K per class from train, min(K, 4) from val."""
    if shots < 1:
        raise ValueError(f"shots must be >= 1, got {shots}")
    seed_everything(seed)
    train_sub, short_train = _sample_per_label(list(train), shots)
    val_sub, short_val = _sample_per_label(list(val), min(shots, 4))
    short = {k: v for k, v in (("train", short_train), ("val", short_val)) if v}
    return FewShotSubset(train_sub, val_sub, shots, seed, short)
