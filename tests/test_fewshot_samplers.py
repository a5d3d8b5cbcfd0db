"""The lpclip sampler reproduces CoOp's lpclip/linear_probe.py; no val item is a train item."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from datasets_registry.fewshot import SAMPLERS, sample_fewshot, sample_fewshot_lpclip


def _toy(n_per_label: dict[int, int], prefix: str) -> list[tuple[str, int]]:
    rng = random.Random(7)
    items = [(f"{prefix}/{label}/{i}.jpg", label) for label, n in n_per_label.items()
             for i in range(n)]
    rng.shuffle(items)  # labels interleaved, not in sorted order
    return items


def lpclip_reference(train, val, num_shot, seed):
    """lpclip/linear_probe.py's sampling, statement by statement, on label arrays (the script
    indexes its feature arrays with these indices)."""
    train_label = np.array([y for _, y in train])
    val_label = np.array([y for _, y in val])
    np.random.seed(seed)
    all_label_list = np.unique(train_label)
    selected_idx_list = []
    for label in all_label_list:
        label_collection = np.where(train_label == label)[0]
        selected_idx = np.random.choice(label_collection, size=num_shot, replace=False)
        selected_idx_list.extend(selected_idx)
    val_num_shot = {1: 1, 2: 2, 4: 4, 8: 4, 16: 4}[num_shot]
    val_selected_idx_list = []
    for label in all_label_list:
        label_collection = np.where(val_label == label)[0]
        selected_idx = np.random.choice(label_collection, size=val_num_shot, replace=False)
        val_selected_idx_list.extend(selected_idx)
    return [train[i] for i in selected_idx_list], [val[i] for i in val_selected_idx_list]


@pytest.mark.parametrize("k", [1, 2, 4, 8, 16])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_lpclip_sampler_matches_lpclip(k, seed):
    train = _toy({3: 20, 0: 16, 2: 17, 1: 30}, "tr")
    val = _toy({0: 6, 1: 5, 2: 9, 3: 4}, "va")
    sub = sample_fewshot_lpclip(train, val, k, seed)
    ref_train, ref_val = lpclip_reference(train, val, k, seed)
    assert sub.train == ref_train and sub.val == ref_val
    assert (sub.shots, sub.seed, sub.short_classes) == (k, seed, {})


def test_lpclip_and_dassl_draw_different_subsets():
    train = _toy({0: 20, 1: 20, 2: 20}, "tr")
    val = _toy({0: 8, 1: 8, 2: 8}, "va")
    lp, da = sample_fewshot_lpclip(train, val, 4, 1), sample_fewshot(train, val, 4, 1)
    assert Counter(y for _, y in lp.train) == Counter(y for _, y in da.train) == {0: 4, 1: 4, 2: 4}
    assert lp.train != da.train
    assert [y for _, y in lp.train] == sorted(y for _, y in lp.train)  # lpclip: sorted labels


def test_lpclip_short_class_takes_all_and_is_recorded():
    train = _toy({0: 20, 1: 3}, "tr")
    val = _toy({0: 8, 1: 2}, "va")
    sub = sample_fewshot_lpclip(train, val, 4, 1)
    assert Counter(y for _, y in sub.train) == {0: 4, 1: 3}
    assert sub.short_classes == {"train": {1: 3}, "val": {1: 2}}
    with pytest.raises(ValueError):
        sample_fewshot_lpclip(train, val, 0, 1)


def test_samplers_registry():
    assert SAMPLERS == {"dassl": sample_fewshot, "lpclip": sample_fewshot_lpclip}


@pytest.mark.parametrize("sampler", [sample_fewshot, sample_fewshot_lpclip])
def test_val_drawn_from_the_train_list_never_repeats_a_train_image(sampler):
    """ImageNet's val list is its train list: the val subset comes from the other images."""
    train = _toy({0: 6, 1: 9, 2: 5}, "train")
    for seed in (1, 2, 3):
        sub = sampler(train, train, 4, seed)
        assert not set(sub.train) & set(sub.val)
        assert Counter(y for _, y in sub.val) == {0: 2, 1: 4, 2: 1}  # what is left, up to 4
        assert set(sub.val) <= set(train)
