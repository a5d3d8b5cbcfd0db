"""Few-shot samplers (docs/protocol.md §2). ``SAMPLERS`` maps a method config's
``fewshot_sampler`` to one.

``dassl`` (``sample_fewshot``, every method's default): exactly CoOp's subsets (Dassl
``generate_fewshot_dataset``). Python's ``random`` (and numpy, torch) are seeded with the run seed;
the train list is read in file order and grouped by label, labels in order of first appearance;
each label with at least K items gives ``random.sample(items, K)``, otherwise all its items. The
same then runs on the val list with min(K, 4), continuing the same random stream.

``lpclip`` (``sample_fewshot_lpclip``): the numpy sampler of CoOp's linear-probe script
(``lpclip/linear_probe.py``), so its published numbers can be reproduced: ``np.random.seed(seed)``,
then for each label in sorted order ``np.random.choice(indices of the label, K, replace=False)``
over the train list, then the same with min(K, 4) over the val list.

Both never put an item of the few-shot train subset into the val subset. With disjoint train and
val lists (every split file) that removes nothing and the random stream is untouched; it matters
for ImageNet, whose val list is its train list (see ``datasets_registry/imagenet.py``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np

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
    import torch  # here, so that `bench ls datasets` needs no torch

    torch.manual_seed(seed)


def _val_pool(val: list[Item], train_sub: list[Item]) -> list[Item]:
    """``val`` without the items of the few-shot train subset (all of it when disjoint)."""
    taken = set(map(tuple, train_sub))
    return [item for item in val if tuple(item) not in taken]


def _subset(train_sub, short_train, val_sub, short_val, shots, seed) -> FewShotSubset:
    short = {k: v for k, v in (("train", short_train), ("val", short_val)) if v}
    return FewShotSubset(train_sub, val_sub, shots, seed, short)


def sample_fewshot(train: list[Item], val: list[Item], shots: int, seed: int) -> FewShotSubset:
    """CoOp's few-shot subsets for (shots, seed): K per class from train, min(K, 4) from val."""
    if shots < 1:
        raise ValueError(f"shots must be >= 1, got {shots}")
    seed_everything(seed)
    train_sub, short_train = _sample_per_label(list(train), shots)
    val_sub, short_val = _sample_per_label(_val_pool(val, train_sub), min(shots, 4))
    return _subset(train_sub, short_train, val_sub, short_val, shots, seed)


def _choice_per_label(items: list[Item], labels, k: int,
                      rng: np.random.RandomState) -> tuple[list[Item], dict[int, int]]:
    """lpclip: for each label, ``rng.choice(indices of the label, k, replace=False)``; a label
    with fewer than k items gives all of them (lpclip itself would stop with an error)."""
    ys = np.array([label for _, label in items], dtype=np.int64)
    out: list[Item] = []
    short: dict[int, int] = {}
    for label in labels:
        idx = np.where(ys == label)[0]
        if len(idx) >= k:
            out.extend(items[i] for i in rng.choice(idx, size=k, replace=False))
        else:
            out.extend(items[i] for i in idx)
            short[int(label)] = len(idx)
    return out, short


def sample_fewshot_lpclip(train: list[Item], val: list[Item], shots: int,
                          seed: int) -> FewShotSubset:
    """CoOp ``lpclip/linear_probe.py``'s subsets for (shots, seed): labels in sorted order (those
    of train), K per label from train, then min(K, 4) per label from val, one numpy stream."""
    if shots < 1:
        raise ValueError(f"shots must be >= 1, got {shots}")
    rng = np.random.RandomState(seed)  # the stream of lpclip's np.random.seed(seed)
    train = list(train)
    labels = np.unique(np.array([label for _, label in train], dtype=np.int64))
    train_sub, short_train = _choice_per_label(train, labels, shots, rng)
    val_sub, short_val = _choice_per_label(_val_pool(val, train_sub), labels, min(shots, 4), rng)
    return _subset(train_sub, short_train, val_sub, short_val, shots, seed)


SAMPLERS = {"dassl": sample_fewshot, "lpclip": sample_fewshot_lpclip}
"""``fewshot_sampler`` config value -> sampler, all with the signature (train, val, shots, seed)."""
