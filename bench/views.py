"""Augmented train views handed to methods (see methods.base.TrainViews).

``CachedViews`` picks, for each epoch, one of V pre-encoded augmented views per image (the
choice is seeded by (seed, epoch), so a cell is deterministic). ``OnlineViews`` encodes a fresh
augmentation of every image every epoch, as the original CoOp/CLIP-Adapter code did.
"""

from __future__ import annotations

from typing import Callable

import torch


class CachedViews:
    mode = "cached"

    def __init__(self, views: torch.Tensor, seed: int):
        if views.ndim != 3:
            raise ValueError(f"views must be (V, N, D), got {tuple(views.shape)}")
        self.views = views
        self.n_views = views.shape[0]
        self.seed = seed

    def for_epoch(self, epoch: int) -> torch.Tensor:
        if self.n_views == 1:
            return self.views[0]
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        pick = torch.randint(self.n_views, (self.views.shape[1],), generator=g)
        return self.views[pick.to(self.views.device), torch.arange(self.views.shape[1],
                                                                   device=self.views.device)]


class OnlineViews:
    """Fresh augmentations each epoch; ``encode(epoch)`` returns (N, D) features."""

    mode = "online"
    n_views = 0  # unbounded

    def __init__(self, encode: Callable[[int], torch.Tensor]):
        self._encode = encode

    def for_epoch(self, epoch: int) -> torch.Tensor:
        return self._encode(epoch)


class NoViews:
    """For methods whose config asks for no augmented views (zero-shot, linear probe)."""

    mode = "none"
    n_views = 0

    def for_epoch(self, epoch: int) -> torch.Tensor:
        raise RuntimeError("this method's config has no feature_mode/n_views, so no augmented "
                           "train views were prepared; add them to its YAML")
