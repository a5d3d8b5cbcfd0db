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

Both count each image once: a list that holds an entry more than once (a damaged split file)
is read without the repeats first, so K shots are K distinct images; the entries removed are
recorded (``FewShotSubset.duplicates``). A list without repeats is used as it is, so the subsets
stay exactly CoOp's. Given the number of classes, a class with no item at all is in
``short_classes`` with 0 (with fewer than asked, with how many it has).

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
    duplicates: dict[str, int] = field(default_factory=dict)
    """Per split, entries left out because they repeat an earlier one (absent: none)."""

    def to_json(self) -> dict:
        out = {"shots": self.shots, "seed": self.seed,
               "train": [list(x) for x in self.train], "val": [list(x) for x in self.val],
               "short_classes": {s: {str(k): v for k, v in d.items()}
                                 for s, d in self.short_classes.items()}}
        if self.duplicates:  # only then: the files of clean lists stay as they were
            out["duplicates"] = dict(self.duplicates)
        return out


def distinct(items: list[Item]) -> tuple[list[Item], int]:
    """``items`` without repeated entries (first occurrences, in order) and how many were left
    out; ``items`` itself when nothing repeats."""
    kept = list(dict.fromkeys(tuple(x) for x in items))
    if len(kept) == len(items):
        return items, 0
    return kept, len(items) - len(kept)


def _group_by_label(items: list[Item]) -> dict[int, list[Item]]:
    groups: dict[int, list[Item]] = {}
    for item in items:
        groups.setdefault(item[1], []).append(item)
    return groups


def _sample_per_label(items: list[Item], k: int,
                      n_classes: int | None = None) -> tuple[list[Item], dict[int, int]]:
    out: list[Item] = []
    short: dict[int, int] = {}
    groups = _group_by_label(items)
    for label, group in groups.items():
        if len(group) >= k:
            out.extend(random.sample(group, k))
        else:
            out.extend(group)
            short[label] = len(group)
    for label in range(n_classes or 0):  # classes with no item: nothing to draw, say so
        if label not in groups:
            short[label] = 0
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


def _subset(train_sub, short_train, val_sub, short_val, shots, seed,
            duplicates) -> FewShotSubset:
    short = {k: v for k, v in (("train", short_train), ("val", short_val)) if v}
    return FewShotSubset(train_sub, val_sub, shots, seed, short,
                         {k: v for k, v in duplicates.items() if v})


def _distinct_lists(train, val) -> tuple[list[Item], list[Item], dict[str, int]]:
    train, dup_train = distinct(list(train))
    val, dup_val = distinct(list(val))
    return train, val, {"train": dup_train, "val": dup_val}


def sample_fewshot(train: list[Item], val: list[Item], shots: int, seed: int,
                   n_classes: int | None = None) -> FewShotSubset:
    """CoOp's few-shot subsets for (shots, seed): K per class from train, min(K, 4) from val.
    ``n_classes``: classes without any item are reported in ``short_classes`` (with 0)."""
    if shots < 1:
        raise ValueError(f"shots must be >= 1, got {shots}")
    seed_everything(seed)
    train, val, duplicates = _distinct_lists(train, val)
    train_sub, short_train = _sample_per_label(train, shots, n_classes)
    val_sub, short_val = _sample_per_label(_val_pool(val, train_sub), min(shots, 4),
                                           n_classes if val else None)
    return _subset(train_sub, short_train, val_sub, short_val, shots, seed, duplicates)


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


def sample_fewshot_lpclip(train: list[Item], val: list[Item], shots: int, seed: int,
                          n_classes: int | None = None) -> FewShotSubset:
    """CoOp ``lpclip/linear_probe.py``'s subsets for (shots, seed): labels in sorted order (those
    of train), K per label from train, then min(K, 4) per label from val, one numpy stream.
    ``n_classes``: classes without any train item are reported in ``short_classes`` (with 0;
    as in lpclip they draw nothing, not even val items, so the stream is unchanged)."""
    if shots < 1:
        raise ValueError(f"shots must be >= 1, got {shots}")
    rng = np.random.RandomState(seed)  # the stream of lpclip's np.random.seed(seed)
    train, val, duplicates = _distinct_lists(train, val)
    labels = np.unique(np.array([label for _, label in train], dtype=np.int64))
    train_sub, short_train = _choice_per_label(train, labels, shots, rng)
    for label in sorted(set(range(n_classes or 0)) - set(labels.tolist())):
        short_train[label] = 0  # no train item: lpclip draws neither train nor val for it
    val_sub, short_val = _choice_per_label(_val_pool(val, train_sub), labels, min(shots, 4), rng)
    return _subset(train_sub, short_train, val_sub, short_val, shots, seed, duplicates)


SAMPLERS = {"dassl": sample_fewshot, "lpclip": sample_fewshot_lpclip}
"""``fewshot_sampler`` config value -> sampler, all with the signature (train, val, shots, seed,
n_classes=None)."""
