"""The second kind of method: those that tune inside the encoders (``kind="encoder"``).

A frozen-feature method (methods/base.py) gets image *features* and returns logits over
features. An encoder-tuning method (CLIP-LoRA, PromptSRC, MaPLe, 2SFS) changes what the
encoders compute, so no feature can be cached for it: it gets the few-shot *images*.

What it receives, an :class:`EncoderTask`:

* ``train``: the few-shot train images as :class:`TrainImages`: ``labels`` (N,), and
  ``crops(epoch, rows)`` -> (len(rows), 3, H, W) float32, normalized, on the task device: the
  protocol's fresh augmentation (docs/protocol.md §1: RandomResizedCrop 0.08-1 bicubic + flip)
  of those rows for that epoch, the crop of (seed, image, epoch) drawn from the same generator
  keys as the frozen-feature methods' per-epoch views (bench/views.py ``epoch_salt``,
  bench/features.py ``view_seed``), so an encoder-tuning method and CoOp see the same crops.
  An epoch is one pass over the train set; methods with an iteration budget (CLIP-LoRA's
  500 x shots) use as many epochs as it takes, the last one partly. :class:`bench.encoder_cells.DecodedTrainImages`
  is that provider over decoded images; :class:`TensorTrainImages` serves given tensors (tests).
* ``val``: the few-shot val images under the eval transform (:class:`ImageSplit`; never test
  data), for the methods that select on val (none of the four does).
* ``backbone``: the shared frozen open_clip model (``backbone.model``, eval mode,
  requires_grad False) with its tokenizer, ``logit_scale``, ``context_length``. A method must
  NEVER change it: no parameter, buffer, mode or attribute. It trains its own tensors (LoRA
  matrices, prompts, LayerNorm copies) and runs the towers through methods/_clip_hooks.py,
  which reads the model and writes nothing (tests/test_encoder_methods.py checks every
  parameter bitwise after a fit).
* ``classnames``, ``templates`` (the dataset's), ``shots``, ``seed``, ``config`` (resolved),
  ``device``, ``dataset``.

What it returns, an :class:`EncoderFitted` (a :class:`methods.base.Fitted` whose inputs are
images): ``logits(images)`` maps a batch of test images (eval transform, (N, 3, H, W) float) to
finite logits (N, C), deterministic and independent of how the test set is batched; ``info``
(JSON values, for the record); ``for_classes(classnames, templates, dataset)`` where the
method can score classes it did not train on (base-to-novel, cross-dataset), as in base.py.
The core encodes the test set through it per cell, in batches (``eval_batch_size`` suggests one).

Registration, in the method's module (what the core reads from the entry's extras):

    @METHODS.register("clip_lora", kind="encoder", needs_vit=True, epochs=train_epochs,
                      new_classes=True, display_name=..., family=..., order=..., description=...)
    def fit(task: EncoderTask) -> EncoderFitted: ...

* ``kind="encoder"`` (frozen-feature methods have no ``kind``, i.e. ``"feature"``); a plugin
  registers the same way (bench/base/plugins.py);
* ``needs_vit=True``: the method tunes a ViT image tower; other backbones are refused with one
  line before anything runs (:func:`bench.encoder_cells.backbone_problem`);
* ``epochs(config, n_train, shots) -> int``: how many epochs of crops a cell trains on (for the
  record; ``crops`` serves any epoch);
* ``new_classes`` and ``stochastic`` as for frozen-feature methods.

The core (bench/encoder_cells.py) builds the :class:`EncoderTask` of a cell and scores the test
images through the returned model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

import torch

from bench.base.errors import UsageError
from bench.base.registry import Entry
from methods.base import Fitted, LazySplit, TextBackbone

KIND = "encoder"
KINDS = ("feature", KIND)


def kind_of(entry: Entry) -> str:
    """``feature`` (the default) or ``encoder``; a registration naming another kind is refused
    with one line."""
    kind = entry.extra.get("kind", "feature")
    if kind not in KINDS:
        raise UsageError(f"method {entry.name} ({entry.source}) is registered with kind="
                         f"{kind!r}; choose one of {', '.join(KINDS)}")
    return kind


def is_encoder(entry: Entry) -> bool:
    return kind_of(entry) == KIND



def check_backbone(method: str, extra: dict, model, backbone_name: str = "this backbone") -> None:
    """One line (exit 2) when ``method`` (registered with ``extra``) cannot tune ``model``."""
    if extra.get("needs_vit"):
        from methods._clip_hooks import check_vit

        check_vit(model, method, backbone_name)


# -- what a method receives ------------------------------------------------------------------------

class ImageSplit(LazySplit):
    """Images (N, 3, H, W) float32 under the eval transform, and labels (N,). ``images`` may be
    a function, run on first use (most methods never read val)."""

    @property
    def images(self) -> torch.Tensor:
        return self._tensor()


class TrainImages(Protocol):
    """The few-shot train images, one fresh augmentation per (image, epoch)."""

    labels: torch.Tensor  # (N,) on the task device

    def __len__(self) -> int: ...

    def crops(self, epoch: int, rows: torch.Tensor) -> torch.Tensor:
        """(len(rows), 3, H, W) float32 normalized, on the task device: epoch ``epoch``'s crop
        of each train image ``rows`` (indices into ``labels``)."""

    def describe(self) -> dict:
        """JSON for the record (what the frozen-feature methods' views describe)."""



class TensorTrainImages:
    """Given tensors as the train images (tests, benchmarks): ``images`` (N, 3, H, W), or a
    function ``epoch -> (N, 3, H, W)`` for images that change per epoch."""

    def __init__(self, images: "torch.Tensor | Callable[[int], torch.Tensor]",
                 labels: torch.Tensor):
        self._images = images
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def crops(self, epoch: int, rows: torch.Tensor) -> torch.Tensor:
        images = self._images(epoch) if callable(self._images) else self._images
        return images[rows.to(images.device)].to(self.labels.device, torch.float32)

    def describe(self) -> dict:
        return {"mode": "tensors", "inputs": "images"}


@dataclass
class EncoderTask:
    dataset: str
    classnames: list[str]  # as they go into prompts (underscores replaced)
    templates: list[str]
    shots: int
    seed: int
    config: dict
    device: torch.device
    train: TrainImages  # few-shot train images: labels + per-epoch crops
    val: ImageSplit  # few-shot val images (min(K, 4) per class), eval transform
    backbone: TextBackbone  # the shared frozen model: read only

    @property
    def num_classes(self) -> int:
        return len(self.classnames)


# -- what a method returns -------------------------------------------------------------------------

class EncoderFitted(Fitted):
    """A tuned model: ``logits(images)`` maps eval-transform test images (N, 3, H, W) to (N, C);
    ``for_classes`` as in :class:`methods.base.Fitted`, its functions taking images too."""

    inputs = "images"

    def __init__(self, logits_fn: Callable[[torch.Tensor], torch.Tensor], info: dict | None = None,
                 for_classes: Callable | None = None, eval_batch_size: int = 256):
        super().__init__(logits_fn, info or {}, for_classes)
        self.eval_batch_size = eval_batch_size

    def on_classes(self, classnames: list[str], templates: list[str], dataset: str) -> "EncoderFitted":
        if self.for_classes is None:
            raise TypeError("this method's fitted model has no for_classes: it cannot score "
                            "classes it did not train on")
        return EncoderFitted(self.for_classes(classnames, templates, dataset), self.info,
                             self.for_classes, self.eval_batch_size)


def score_in_batches(fitted: Fitted, images: torch.Tensor, batch_size: int | None = None
                     ) -> torch.Tensor:
    """``fitted.logits`` over ``images`` in batches, concatenated (what the core does per
    cell; a test helper too)."""
    size = batch_size or getattr(fitted, "eval_batch_size", 256)
    return torch.cat([fitted.logits(images[i:i + size]) for i in range(0, len(images), size)])


Info = dict[str, Any]
