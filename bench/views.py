"""Augmented train views handed to methods (``Task.train_views``, see methods.base.ViewSpec).

* :class:`EpochViewStore` + :class:`EpochViews`: the protocol (docs/protocol.md §1, §9). Every
  epoch sees a fresh augmentation of every train image, drawn from a generator keyed by
  (seed, image, epoch). The store of one (dataset, seed, transform) encodes each (image, epoch)
  crop once, for every epoch that any cell of that seed trains on that image, and every method
  and shot count of the seed reads it: CoOp and the three CLIP-Adapter methods at one seed see the
  same crops, and a 16-shot and an 8-shot subset that share an image share its crops.
* :class:`CachedViews`: the opt-in approximation (``feature_mode: cached``): V views encoded once
  per image and seed; each epoch picks one per image (seeded by (seed, epoch)).
* :class:`FixedViews`: V views that are a method's own protocol (Tip-Adapter's cache).
* :class:`NoViews`: methods that declare none.

The store lives in memory while the cells of its seed run (the runner orders a dataset's cells by
seed and releases each store after its last cell): about n_images x epochs x D x 4 bytes.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Callable, Sequence

import torch

from bench.base.errors import UsageError

FEATURE_MODES = ("online", "cached")


def resolve_views(spec, config: dict, seed: int) -> dict:
    """What train views a cell gets, from its method's ViewSpec and its resolved config.

    Returns a JSON-able description, recorded in the result and part of its identity:
    ``{"mode": "online", "transform": ..., "epochs": E}``, ``{"mode": "cached", "transform": ...,
    "n_views": V}``, ``{"mode": "fixed", ...}`` or ``{"mode": "none"}``.
    """
    if spec is None or spec.kind == "none":
        return {"mode": "none"}
    if spec.kind == "fixed":
        return {"mode": "fixed", "transform": spec.transform,
                "n_views": _positive_int(config.get("n_views", spec.n_views), "n_views")}
    mode = config.get("feature_mode", "online")
    if mode not in FEATURE_MODES:
        raise UsageError(f"feature_mode must be one of {', '.join(FEATURE_MODES)}, not {mode!r} "
                         f"(online = the protocol's fresh crops every epoch; cached = the "
                         f"approximation with n_views pre-encoded views)")
    if mode == "cached":
        return {"mode": "cached", "transform": spec.transform,
                "n_views": _positive_int(config.get("n_views", 10), "n_views")}
    return {"mode": "online", "transform": spec.transform,
            "epochs": _positive_int(config.get(spec.epochs_key), spec.epochs_key)}


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"{name} must be a positive integer, not {value!r}")
    return value


def epoch_salt(transform: str, seed: int) -> str:
    """The augmentation salt of the protocol's per-epoch views: view index = epoch."""
    return f"epoch:{transform}:seed{seed}"


def cached_salt(transform: str, seed: int) -> str:
    """The augmentation salt of V cached views (approximation, or a method's fixed views)."""
    return f"views:{transform}:seed{seed}"


class EpochViewStore:
    """Fresh views of one (dataset, seed, transform), each (image, epoch) encoded once.

    ``needs`` maps a train position to the number of epochs any cell trains on it.
    ``encode(positions, n_epochs)`` returns (n_epochs, len(positions), D): epochs 0..n-1 of each
    image (the features module decodes each image once for all of them). Images are encoded in
    groups that need the same number of epochs.
    """

    def __init__(self, needs: dict[int, int],
                 encode: Callable[[list[int], int], torch.Tensor],
                 dtype: torch.dtype = torch.float32):
        by_epochs: dict[int, list[int]] = defaultdict(list)
        for pos, n in sorted(needs.items()):
            by_epochs[n].append(pos)
        self.groups: list[torch.Tensor] = []  # (E_g, n_g, D)
        self.where: dict[int, tuple[int, int]] = {}  # position -> (group, column)
        for g, (n_epochs, positions) in enumerate(sorted(by_epochs.items())):
            self.groups.append(encode(positions, n_epochs).to(dtype))
            self.where.update({p: (g, c) for c, p in enumerate(positions)})
        self.n_encoded = sum(t.shape[0] * t.shape[1] for t in self.groups)

    def views(self, positions: Sequence[int], device: torch.device | str = "cpu",
              describe: dict | None = None) -> "EpochViews":
        missing = [p for p in positions if p not in self.where]
        if missing:
            raise RuntimeError(f"{len(missing)} train image(s) were not planned in this view "
                               f"store (positions {missing[:3]})")
        return EpochViews(self, list(positions), device, describe or {"mode": "online"})


class EpochViews:
    """One cell's rows of an :class:`EpochViewStore`: ``for_epoch(e)`` is (N, D) float32."""

    mode = "online"
    n_views = 0  # a fresh view every epoch

    def __init__(self, store: EpochViewStore, positions: list[int], device, description: dict):
        self._store = store
        self._device = torch.device(device)
        self._description = description
        per_group: dict[int, tuple[list[int], list[int]]] = defaultdict(lambda: ([], []))
        for row, p in enumerate(positions):
            g, c = store.where[p]
            per_group[g][0].append(row)
            per_group[g][1].append(c)
        self._parts = [(g, torch.tensor(rows), torch.tensor(cols))
                       for g, (rows, cols) in sorted(per_group.items())]
        self._n = len(positions)
        self.epochs = min((store.groups[g].shape[0] for g, _, _ in self._parts), default=0)

    def for_epoch(self, epoch: int) -> torch.Tensor:
        if not 0 <= epoch < self.epochs:
            raise RuntimeError(f"epoch {epoch} asked, but this cell's views were planned for "
                               f"{self.epochs} epochs (the method's ViewSpec.epochs_key)")
        dim = self._store.groups[0].shape[-1]
        out = torch.empty(self._n, dim, dtype=torch.float32)
        for g, rows, cols in self._parts:
            out[rows] = self._store.groups[g][epoch, cols].float()
        return out.to(self._device)

    def describe(self) -> dict:
        return dict(self._description)


class CachedViews:
    """V pre-encoded views; epoch e picks one per image with a generator seeded by (seed, e)."""

    mode = "cached"

    def __init__(self, views: torch.Tensor, seed: int, description: dict | None = None):
        if views.ndim != 3:
            raise ValueError(f"views must be (V, N, D), got {tuple(views.shape)}")
        self.views = views
        self.n_views = views.shape[0]
        self.seed = seed
        self._description = description or {"mode": "cached", "n_views": self.n_views}

    def for_epoch(self, epoch: int) -> torch.Tensor:
        if self.n_views == 1:
            return self.views[0]
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        pick = torch.randint(self.n_views, (self.views.shape[1],), generator=g)
        return self.views[pick.to(self.views.device), torch.arange(self.views.shape[1],
                                                                   device=self.views.device)]

    def describe(self) -> dict:
        return dict(self._description)


class FixedViews(CachedViews):
    """A method's own V augmented views (``all()``: (V, N, D)), e.g. Tip-Adapter's cache."""

    mode = "fixed"

    def all(self) -> torch.Tensor:
        return self.views


class NoViews:
    """For methods that declare no augmented views (zero-shot, linear probe)."""

    mode = "none"
    n_views = 0

    def for_epoch(self, epoch: int) -> torch.Tensor:
        raise RuntimeError("this method declared no augmented train views "
                           "(methods.base.ViewSpec); declare them where it registers")

    def describe(self) -> dict:
        return {"mode": "none"}
