"""The protocol's train augmentation (docs/protocol.md §1), one crop per call, seeded per crop.

RandomResizedCrop (scale, aspect ratio 3/4-4/3, bicubic) then a horizontal flip with p = 0.5:
torchvision's algorithm (``RandomResizedCrop.get_params``: up to 10 tries of a random area and
log-uniform aspect ratio, else the central crop; then crop and resize with PIL), drawn from a
``random.Random`` seeded for that one crop instead of torch's global generator. Seeding torch's
generator and running the torchvision transforms cost about 200 us a crop, mostly small tensor
operations for the parameters; this costs about a third of that, which matters when every train
image is cropped anew for every epoch. The distribution of crops is torchvision's; the mapping
from a seed to a crop is this module's (the original code's crops come from its process-wide RNG,
so no harness reproduces them crop for crop).
"""

from __future__ import annotations

import hashlib
import math
import random

import numpy as np
from PIL import Image

RATIO = (3.0 / 4.0, 4.0 / 3.0)


def view_seed(relpath: str, view: int, salt: int = 0) -> int:
    """Seed of the augmentation of one image for one view: the same in every process."""
    digest = hashlib.sha256(f"{relpath}|{view}|{salt}".encode()).digest()
    return int.from_bytes(digest[:7], "little")


class CropFlip:
    def __init__(self, size: int, scale: tuple[float, float], mean, std):
        self.size = int(size)
        self.scale = (float(scale[0]), float(scale[1]))
        self.mean, self.std = tuple(mean), tuple(std)
        self._log_ratio = (math.log(RATIO[0]), math.log(RATIO[1]))

    def params(self, width: int, height: int, rng: random.Random) -> tuple[int, int, int, int, bool]:
        """(top, left, crop height, crop width, flip)."""
        area = width * height
        for _ in range(10):
            target = area * rng.uniform(*self.scale)
            aspect = math.exp(rng.uniform(*self._log_ratio))
            w = int(round(math.sqrt(target * aspect)))
            h = int(round(math.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                top = rng.randrange(height - h + 1)
                left = rng.randrange(width - w + 1)
                return top, left, h, w, rng.random() < 0.5
        in_ratio = width / height
        if in_ratio < RATIO[0]:
            w, h = width, int(round(width / RATIO[0]))
        elif in_ratio > RATIO[1]:
            h, w = height, int(round(height * RATIO[1]))
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w, rng.random() < 0.5

    def pil(self, img: Image.Image, seed: int) -> Image.Image:
        """The crop of ``img`` (RGB) for ``seed``, as a ``size`` x ``size`` PIL image."""
        top, left, h, w, flip = self.params(img.width, img.height, random.Random(seed))
        out = img.crop((left, top, left + w, top + h)).resize((self.size, self.size),
                                                              Image.BICUBIC)
        return out.transpose(Image.FLIP_LEFT_RIGHT) if flip else out

    def __call__(self, img: Image.Image, seed: int) -> np.ndarray:
        """(size, size, 3) uint8; normalized later on the model's device (mean, std)."""
        return np.asarray(self.pil(img, seed))
