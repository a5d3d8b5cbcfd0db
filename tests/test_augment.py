"""bench.augment.CropFlip: torchvision's RandomResizedCrop + flip, seeded per crop."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import functional as F

from bench.augment import CropFlip


def _image(w=57, h=41):
    rng = np.random.default_rng(3)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_same_seed_same_crop_other_seed_other_crop():
    aug, img = CropFlip(16, (0.08, 1.0), (0.5,) * 3, (0.5,) * 3), _image()
    a, b = aug(img, 11), aug(img, 11)
    assert a.shape == (16, 16, 3) and a.dtype == np.uint8 and np.array_equal(a, b)
    assert sum(not np.array_equal(a, aug(img, s)) for s in range(12, 20)) == 8


def test_crop_is_torchvision_resized_crop_and_flip_with_the_same_parameters():
    aug, img = CropFlip(24, (0.08, 1.0), (0.5,) * 3, (0.5,) * 3), _image()
    for seed in range(20):
        top, left, h, w, flip = aug.params(img.width, img.height, random.Random(seed))
        ref = F.resized_crop(img, top, left, h, w, [24, 24], T.InterpolationMode.BICUBIC)
        if flip:
            ref = F.hflip(ref)
        assert np.array_equal(aug(img, seed), np.asarray(ref))


@pytest.mark.parametrize("size,scale", [((57, 41), (0.08, 1.0)), ((30, 200), (0.5, 1.0))])
def test_parameters_follow_torchvision_distribution(size, scale):
    """Crop areas and aspect ratios within torchvision's bounds; the fallback (a very thin image)
    is torchvision's central crop; flips about half the time."""
    aug = CropFlip(8, scale, (0,) * 3, (1,) * 3)
    w, h = size
    rng = random.Random(0)
    params = [aug.params(w, h, rng) for _ in range(2000)]
    for top, left, ch, cw, _ in params:
        assert 0 <= top <= h - ch and 0 <= left <= w - cw and ch >= 1 and cw >= 1
    areas = np.array([ch * cw / (w * h) for _, _, ch, cw, _ in params])
    assert areas.max() <= 1.0
    flips = np.mean([p[4] for p in params])
    assert 0.45 < flips < 0.55
    torch.manual_seed(0)
    ref = [T.RandomResizedCrop.get_params(Image.new("RGB", size), scale, (3 / 4, 4 / 3))
           for _ in range(2000)]
    ref_areas = np.array([ch * cw / (w * h) for _, _, ch, cw in ref])
    assert abs(areas.mean() - ref_areas.mean()) < 0.03
    # The central-crop fallback, when no try fits: the same crop, about as often.
    fallback = {p[:4] for p in params} & {tuple(r) for r in ref}
    share = lambda ps: np.mean([tuple(p[:4]) in fallback for p in ps])  # noqa: E731
    assert abs(share(params) - share(ref)) < 0.03
