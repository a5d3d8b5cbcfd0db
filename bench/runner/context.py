"""What the cells of one (backbone, dataset) share: the dataset, its feature extractor and
cache, the few-shot subsets, the eval-transform rows encoded once for all cells, the per-seed
view stores (built for the seed's first cell, freed after its last), transfer targets; and the
planning of which views the cells need."""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

import torch

from bench.base.errors import BenchError
from bench.evaluate import Target
from bench.features import DatasetFeatures, FeatureCache
from bench.identity import draw_subset, sampler_of
from bench.protocols import BaseNovel, base_subset, protocol_of
from bench.views import EpochViewStore, cached_salt, epoch_salt, resolve_views
from datasets_registry import DATASETS
from datasets_registry.fewshot import FewShotSubset
from methods import METHODS


class DatasetDataError(BenchError):
    """A dataset's images or files failed while a cell ran: the dataset's cells fail, not one."""


def dataset_features(backbone, splits, cache: FeatureCache, opts: dict) -> DatasetFeatures:
    """The feature extractor of one dataset, with the run's options (batch size, decoding
    workers and where images are decoded, autocast, progress bars)."""
    return DatasetFeatures(
        backbone, splits, cache, batch_size=opts.get("batch_size", 64),
        workers=opts.get("workers", 0), decode=opts.get("decode", "cpu"),
        autocast=_autocast(opts.get("autocast", "auto"), backbone.device),
        progress=opts.get("progress", True))


def _autocast(option, device: torch.device) -> bool:
    """fp16 autocast for image encoding: 'on', 'off', or 'auto' (on for CUDA; docs/protocol.md §6: the
    original code runs CLIP in fp16 on a GPU). Autocast never applies on a CPU."""
    if option in (True, "on"):
        return True
    return option == "auto" and device.type == "cuda"


class Context:
    """What all cells of one (backbone, dataset) share."""

    def __init__(self, job, backbone, dataset_name: str):
        opts = job.options
        self.dataset = DATASETS.get(dataset_name)
        self.splits = self.dataset.load(Path(job.data_root))
        self.features = dataset_features(
            backbone, self.splits,
            FeatureCache(Path(job.cache_dir), opts.get("cache_dtype", "float32")), opts)
        self.position = {s: _positions(self.splits.split(s)) for s in ("train", "val")}
        self.subsets: dict[tuple[int, int, str], FewShotSubset] = {}
        self.union: dict[str, list[int]] = {}  # per split, the positions any cell uses
        self._encoded: set[str] = set()
        self._broken: dict = {}  # split or view store key -> its DatasetDataError
        self.data_errors: list[DatasetDataError] = []
        # The protocol's per-epoch views: per (transform, seed), the epochs each train position
        # is trained on by some cell, the store once built, and how many cells still read it.
        self.epoch_needs: dict[tuple[str, int], dict[int, int]] = defaultdict(dict)
        self.epoch_readers: dict[tuple[str, int], int] = defaultdict(int)
        self.epoch_stores: dict[tuple[str, int], EpochViewStore] = {}
        self.view_encodes = 0  # (image, epoch) crops encoded into the stores
        self.job, self.backbone = job, backbone
        self.targets: dict[str, Target] = {}

    def eval_rows(self, split: str, positions: list[int]) -> torch.Tensor:
        """Eval-transform features of ``positions``; the first call for a split encodes what all
        cells of the dataset need in one pass. A data error here is the dataset's, kept: later
        cells that read the split fail with it at once."""
        if split in self._broken:
            raise self._broken[split]
        try:
            if split not in self._encoded:
                self.features.eval_features(split, self.union.get(split, positions))
                self._encoded.add(split)
            return self.features.eval_features(split, positions)
        except BenchError as exc:
            self._broken[split] = DatasetDataError(str(exc))
            raise self._broken[split] from None

    def subset(self, shots: int, seed: int, sampler: str = "dassl") -> FewShotSubset:
        key = (shots, seed, sampler)
        if key not in self.subsets:
            subset = draw_subset(self.splits, shots, seed, sampler)
            if subset.short_classes:
                note = short_classes_note(self.dataset.display_name, subset, self.splits.classnames)
                print(f"bench: warning: {note}", file=sys.stderr)
            self.subsets[key] = subset
        return self.subsets[key]

    def cell_subset(self, cell) -> FewShotSubset:
        subset = self.subset(cell["shots"], cell["seed"], sampler_of(cell["config"]))
        if protocol_of(cell) == "base2novel":
            return base_subset(subset, BaseNovel(len(self.splits.classnames)))
        return subset

    def target(self, name: str) -> "Target":
        """A transfer protocol's target dataset: its test features (encoded once per job)."""
        if name not in self.targets:
            target = DATASETS.get(name)
            splits = target.load(Path(self.job.data_root))
            extractor = dataset_features(self.backbone, splits, self.features.cache,
                                         self.job.options)
            extractor.meter = self.features.meter
            feats = extractor.eval_features("test", list(range(len(splits.test))))
            self.targets[name] = Target(target, splits, feats,
                                        torch.tensor([lbl for _, lbl in splits.test]))
            self.features.encode_seconds += extractor.encode_seconds
        return self.targets[name]

    def positions(self, split: str, items) -> list[int]:
        return [self.position[split][tuple(it)] for it in items]

    def epoch_views(self, transform: str, seed: int, positions: list[int]):
        """The cell's rows of the (transform, seed) view store, built on first use (every
        (image, epoch) the seed's cells need, encoded once) and freed after its last reader."""
        key = (transform, seed)
        if key in self._broken:
            raise self._broken[key]
        if key not in self.epoch_stores:
            salt = epoch_salt(transform, seed)
            dtype = torch.float16 if self.features.cache.dtype == "float16" else torch.float32

            def encode(pos: list[int], n_epochs: int) -> torch.Tensor:
                return self.features.augmented(
                    pos, range(n_epochs), transform, salt, cache=False,
                    desc=f"{self.splits.name} seed {seed}: {len(pos)} img x {n_epochs} epochs")

            try:
                store = EpochViewStore(self.epoch_needs[key], encode, dtype)
            except BenchError as exc:
                self._broken[key] = DatasetDataError(str(exc))
                raise self._broken[key] from None
            self.epoch_stores[key] = store
            self.view_encodes += store.n_encoded
        return self.epoch_stores[key]

    def done_reading(self, transform: str, seed: int) -> None:
        key = (transform, seed)
        self.epoch_readers[key] -= 1
        if self.epoch_readers[key] <= 0:
            self.epoch_stores.pop(key, None)


def short_classes_note(dataset: str, subset: FewShotSubset, classnames: list[str]) -> str:
    """One line: which classes had fewer images than asked (all of them are then used)."""
    parts = []
    for split, short in subset.short_classes.items():
        want = subset.shots if split == "train" else min(subset.shots, 4)
        names = ", ".join(f"{classnames[label]!r} {n}" for label, n in sorted(short.items())[:3])
        more = f" and {len(short) - 3} more" if len(short) > 3 else ""
        parts.append(f"{len(short)} class(es) of {split} have fewer than {want} distinct "
                     f"images ({names}{more})")
    return (f"{dataset} {subset.shots}-shot seed {subset.seed}: {'; '.join(parts)}; all their "
            f"images are used (CoOp's rule), recorded in the result as fewshot.short_classes")


def _positions(items) -> dict:
    pos: dict = {}
    for i, it in enumerate(items):
        pos.setdefault(tuple(it), i)
    return pos


def views_of(cell) -> dict:
    """The train views a cell gets (planned into ``cell["inputs"]``; resolved here otherwise)."""
    planned = (cell.get("inputs") or {}).get("views")
    if planned:
        return planned
    spec = METHODS.entry(cell["method"]).extra.get("views")
    return resolve_views(spec, cell["config"], cell["seed"])


def extract(ctx: Context, cells, views_of=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Extract what the cells need up front, in few large batches; test features/labels.

    Test features once for every cell; V cached or fixed views of the union of the images that
    need them; the protocol's per-epoch views are only planned here (which image for how many
    epochs, per seed) and encoded when the seed's first cell runs (Context.epoch_views).
    """
    test_feats = ctx.features.eval_features("test", list(range(len(ctx.splits.test))))
    test_labels = torch.tensor([lbl for _, lbl in ctx.splits.test])
    subsets = [ctx.cell_subset(c) for c in cells]
    ctx.union["train"] = sorted({p for s in subsets for p in ctx.positions("train", s.train)})
    ctx.union["val"] = sorted({p for s in subsets for p in ctx.positions("val", s.val)})
    plan_views(ctx, cells if views_of is None else views_of)
    # Train and val with the eval transform: encoded on first use (see Context.eval_rows).
    return test_feats, test_labels


def plan_views(ctx: Context, cells) -> None:
    """The train views of ``cells`` (the cells this process holds): per-epoch views planned into
    their seed's store (encoded when its first cell runs), cached or fixed views encoded now."""
    subsets = [ctx.cell_subset(c) for c in cells]
    fixed: dict[tuple, set[int]] = defaultdict(set)
    for cell, subset in zip(cells, subsets):
        views = views_of(cell)
        train_pos = ctx.positions("train", subset.train)
        if views["mode"] == "online":
            key = (views["transform"], cell["seed"])
            needs = ctx.epoch_needs[key]
            for p in train_pos:
                needs[p] = max(needs.get(p, 0), views["epochs"])
            ctx.epoch_readers[key] += 1
        elif views["mode"] in ("cached", "fixed"):
            fixed[(views["transform"], views["n_views"], cell["seed"])].update(train_pos)
    for (transform, n_views, seed), positions in fixed.items():
        ctx.features.augmented(sorted(positions), range(n_views), transform,
                               cached_salt(transform, seed))
