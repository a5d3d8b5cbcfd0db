"""Cells of the methods that tune inside the encoders (methods/tuning.py, ``kind="encoder"``).

The runner (bench/runner/) runs them like every cell (subset, fit, evaluate, record); what
differs is here:

* the task: an :class:`methods.tuning.EncoderTask` with the few-shot train *images*, decoded
  once per (dataset, seed) and kept while that seed's cells run (:func:`decoded_images`), each
  epoch's crop of an image the protocol's crop of (seed, image, epoch), the very crop the
  frozen-feature methods' per-epoch views encode (bench/views.py ``epoch_salt``);
* the evaluation: the test images under the eval transform, decoded batch by batch
  (:class:`TestImages`) and scored through the method's adapted model (``bench.evaluate.chunked_logits``),
  never cached: the model is the cell's own;
* a check after the fit that the shared frozen model is as it was (eval mode, no gradient):
  a method that changed it fails its cell (:func:`check_frozen`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from PIL import Image, UnidentifiedImageError

from bench.base.errors import BenchError
from bench.base.registry import Entry
from bench.evaluate import InvalidResult, Target
from bench.features import ImageFiles, image_loader, normalize_uint8
from bench.views import epoch_salt
from methods.tuning import EncoderTask, ImageSplit

# the transform of the train crops (docs/protocol.md §1), as the per-epoch views name it
TRAIN_TRANSFORM = "protocol"


class TestImages:
    """Eval-transform images of ``positions`` of one split, decoded when scored, in batches
    (a DataLoader over the files, ``workers`` processes as for feature extraction)."""

    def __init__(self, splits, split: str, positions, backbone, workers: int = 0):
        self.splits, self.split, self.backbone, self.workers = splits, split, backbone, workers
        self.positions = [int(p) for p in positions]

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, rows) -> "TestImages":
        if isinstance(rows, slice):
            picked = self.positions[rows]
        else:
            picked = [self.positions[int(r)] for r in rows]
        return TestImages(self.splits, self.split, picked, self.backbone, self.workers)

    def batches(self, size: int, device):
        """(B, 3, H, W) float32 on ``device``, in order."""
        items = self.splits.split(self.split)
        files = ImageFiles(self.splits.image_dir, [items[p][0] for p in self.positions],
                           self.backbone.eval_transform, image_size=self.backbone.image_size)
        for images, errors in image_loader(files, size, self.workers, torch.device(device)):
            bad = [e for e in errors if e]
            if bad:
                raise BenchError(f"cannot read image {bad[0]} (a truncated download or not an "
                                 f"image? replace the file, or check the dataset with `bench "
                                 f"data check`)")
            images = images.to(device)
            if files.normalization:
                images = normalize_uint8(images, *files.normalization)
            yield images


def decoded_images(ctx, seed: int, positions: list[int]) -> list:
    """The decoded RGB images of train ``positions``: decoded once per (dataset, seed) and kept
    on ``ctx`` until a cell of another seed asks (the runner runs one seed's cells at a time)."""
    memo = getattr(ctx, "_decoded_train", None)
    if memo is None or memo[0] != seed:
        memo = (seed, {})
        ctx._decoded_train = memo
    cache = memo[1]
    items = ctx.splits.split("train")
    for p in positions:
        if p not in cache:
            cache[p] = _decode(ctx.splits.image_dir / items[p][0])
    return [cache[p] for p in positions]


def _decode(path: Path):
    from bench.runner.context import DatasetDataError  # the runner fails the dataset's cells with it

    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise DatasetDataError(f"cannot read image {path}: {type(exc).__name__}: {exc} (replace "
                               f"the file, or check the dataset with `bench data check`)") from None


def encoder_task(cell, ctx, backbone, classnames, subset) -> EncoderTask:
    """The :class:`EncoderTask` of ``cell`` (its few-shot ``subset``, ``classnames`` as the
    model sees them)."""
    device = backbone.device
    train_pos = ctx.positions("train", subset.train)
    val_pos = ctx.positions("val", subset.val)
    relpaths = [ctx.splits.split("train")[p][0] for p in train_pos]
    train = DecodedTrainImages(decoded_images(ctx, cell["seed"], train_pos), relpaths,
                               torch.tensor([lbl for _, lbl in subset.train]), cell["seed"],
                               backbone.image_size, backbone.mean, backbone.std, device,
                               TRAIN_TRANSFORM)
    assert train.salt == epoch_salt(TRAIN_TRANSFORM, cell["seed"])  # the per-epoch views' key
    val_images = TestImages(ctx.splits, "val", val_pos, backbone, ctx.job.options.get("workers", 0))

    def val_tensor() -> torch.Tensor:
        batches = list(val_images.batches(256, device))
        return torch.cat(batches) if batches else torch.empty(0, 3, backbone.image_size,
                                                              backbone.image_size)

    val = ImageSplit(val_tensor, torch.tensor([lbl for _, lbl in subset.val], device=device))
    return EncoderTask(dataset=cell["dataset"], classnames=classnames,
                       templates=ctx.dataset.templates, shots=cell["shots"], seed=cell["seed"],
                       config=cell["config"], device=device, train=train, val=val,
                       backbone=backbone)


def test_inputs(ctx) -> TestImages:
    """The source dataset's test images, as the evaluation scores them."""
    return TestImages(ctx.splits, "test", range(len(ctx.splits.test)), ctx.backbone,
                      ctx.job.options.get("workers", 0))


class ImageTargets:
    """``ctx`` for bench.evaluate.evaluate_cell with each transfer target's test *images*
    (the domain and cross-dataset protocols) in place of its features."""

    def __init__(self, ctx):
        self._ctx = ctx
        self._targets: dict[str, Target] = {}

    def __getattr__(self, name):
        return getattr(self._ctx, name)

    def target(self, name: str) -> Target:
        if name not in self._targets:
            from datasets_registry import DATASETS

            dataset = DATASETS.get(name)
            splits = dataset.load(Path(self._ctx.job.data_root))
            images = TestImages(splits, "test", range(len(splits.test)), self._ctx.backbone,
                                self._ctx.job.options.get("workers", 0))
            self._targets[name] = Target(dataset, splits, images,
                                         torch.tensor([lbl for _, lbl in splits.test]))
        return self._targets[name]


def check_frozen(backbone) -> None:
    """The shared model after a fit: still in eval mode with no parameter requiring a gradient
    (a cheap check of every cell; tests/test_conformance.py compares every tensor). A method
    that changed either fails its cell, and the model is put back for the cells after it."""
    model = backbone.model
    training = any(m.training for m in model.modules())
    grads = any(p.requires_grad for p in model.parameters())
    model.eval().requires_grad_(False)  # the next cells get the model as it must be
    if training:
        raise InvalidResult("the method left the shared frozen model in training mode; an "
                            "encoder-tuning method must tune its own copies (methods/tuning.py)")
    if grads:
        raise InvalidResult("the method made parameters of the shared frozen model trainable; "
                            "an encoder-tuning method must tune its own copies "
                            "(methods/tuning.py)")


# --- the backbone check and the train images of encoder cells --------------------------------
def vit_config_problem(backbone: str) -> str | None:
    """Why open_clip model ``backbone`` has no ViT image tower (read from its config, nothing
    built), or None when it has one."""
    from bench.backbone import _open_clip  # with the demo models' configs

    cfg = _open_clip().get_model_config(backbone) or {}
    vision = cfg.get("vision_cfg") or {}
    if vision.get("timm_model_name"):
        return f"its image tower is the timm model {vision['timm_model_name']}"
    if isinstance(vision.get("layers"), (list, tuple)):
        return "its image tower is a ResNet"
    return None


def backbone_problem(entry: Entry, backbone: str) -> str | None:
    """One line why method ``entry`` cannot run on ``backbone``, or None."""
    if not entry.extra.get("needs_vit"):
        return None
    problem = vit_config_problem(backbone)
    if problem is None:
        return None
    return (f"{entry.name} tunes inside a ViT image tower; {backbone} cannot be used: {problem} "
            f"(use a ViT backbone, e.g. --backbone ViT-B-16, or --backbone bench-demo-vit on "
            f"the demo)")


class DecodedTrainImages:
    """The protocol's crops of decoded images, keyed as the per-epoch views are.

    ``images``: the decoded RGB PIL images of the few-shot train subset, ``relpaths`` their
    paths relative to the dataset's image folder (the crop key), ``labels`` (N,). Epoch ``e``'s
    crop of image ``i`` is ``CropFlip(image_size, scale)(images[i], view_seed(relpaths[i], e,
    epoch_salt(transform, seed)))``: the crop the frozen-feature methods' view store encodes for
    (seed, image, epoch), normalized with ``mean``, ``std`` exactly as they are."""

    def __init__(self, images: Sequence, relpaths: Sequence[str], labels: torch.Tensor, seed: int,
                 image_size: int, mean, std, device: torch.device | str = "cpu",
                 transform: str = "protocol"):
        from bench.augment import CropFlip
        from bench.features import TRAIN_TRANSFORMS

        if len(images) != len(relpaths) or len(images) != len(labels):
            raise ValueError("images, relpaths and labels must have the same length")
        self.images, self.relpaths = list(images), list(relpaths)
        self.labels = labels.to(device)
        self.device = torch.device(device)
        self.transform, self.seed = transform, int(seed)
        self.salt = epoch_salt(transform, seed)
        self.augment = CropFlip(image_size, TRAIN_TRANSFORMS[transform], mean, std)

    def __len__(self) -> int:
        return len(self.images)

    def crops(self, epoch: int, rows: torch.Tensor) -> torch.Tensor:
        import numpy as np

        from bench.features import view_seed

        rows = [int(r) for r in rows]
        arr = np.stack([self.augment(self.images[r], view_seed(self.relpaths[r], epoch, self.salt))
                        for r in rows])
        x = torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous().to(self.device)
        return normalize_uint8(x, self.augment.mean, self.augment.std)

    def describe(self) -> dict:
        return {"mode": "online", "transform": self.transform, "inputs": "images"}
