"""What a method receives and returns.

A method gets a :class:`Task`: few-shot train and val features with labels (never test data),
augmented train views, class names, templates, a handle to the frozen backbone for text encoding
or prompt learning, its resolved config, the seed and the device. It returns a :class:`Fitted`
classifier that maps (raw, un-normalized) test image features to logits, plus ``info``: anything
it selected (C, alpha, ...) that belongs in the result record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import torch


class LazySplit:
    """A tensor, or a function that gives it on first use, and its labels (N,)."""

    def __init__(self, data: "torch.Tensor | Callable[[], torch.Tensor]", labels: torch.Tensor):
        self._data = data
        self.labels = labels

    def _tensor(self) -> torch.Tensor:
        if callable(self._data):
            self._data = self._data()
        return self._data

    def __len__(self) -> int:
        return len(self.labels)


class FeatureSplit(LazySplit):
    """Image features (N, D), raw from the image encoder, float32, and labels (N,).

    ``features`` may be given as a function: it runs on first use, so images are encoded only
    for the methods that read these features (the runner passes the eval-transform train and val
    features this way; methods that train on augmented views never pay for them).
    """

    @property
    def features(self) -> torch.Tensor:
        return self._tensor()


# Train transforms the core can apply to the few-shot train images (bench.backbone):
#   "protocol": RandomResizedCrop(scale 0.08-1, bicubic) + horizontal flip (CoOp, CLIP-Adapter)
#   "tip":      RandomResizedCrop(scale 0.5-1, bicubic) + horizontal flip (Tip-Adapter's cache)
VIEW_TRANSFORMS = ("protocol", "tip")


@dataclass(frozen=True)
class ViewSpec:
    """What augmented train views a method needs, declared where it registers
    (``METHODS.register(..., views=ViewSpec(...))``); the core prepares exactly that.

    * ``kind="none"``: no augmented views (zero-shot, linear probe: eval-transform features only).
    * ``kind="per_epoch"``: the protocol of methods that train for ``config[epochs_key]`` epochs on
      a fresh augmentation of every train image in every epoch (CoOp, CLIP-Adapter). The crop of
      (seed, image, epoch) is drawn from a generator keyed by exactly that, encoded once, and read
      by every method and shot count of that seed. The config key ``feature_mode: cached``
      (``n_views`` views pre-encoded once, the same for every seed) is an opt-in approximation
      of it that every report labels.
    * ``kind="fixed"``: ``n_views`` augmented views per image are the method's own protocol
      (Tip-Adapter averages 10); ``Task.train_views.all()`` gives them, (V, N, D). The config key
      ``n_views``, when present, overrides the declared number.
    """

    kind: str = "none"
    transform: str = "protocol"
    n_views: int = 0
    epochs_key: str = "epochs"

    def __post_init__(self):
        if self.kind not in ("none", "per_epoch", "fixed"):
            raise ValueError(f"ViewSpec.kind must be none, per_epoch or fixed, not {self.kind!r}")
        if self.transform not in VIEW_TRANSFORMS:
            raise ValueError(f"ViewSpec.transform must be one of {VIEW_TRANSFORMS}")


NO_VIEWS = ViewSpec("none")
PER_EPOCH_VIEWS = ViewSpec("per_epoch")


class TrainViews(Protocol):
    """Augmented views of the few-shot train images (docs/protocol.md §1 train augmentation).

    ``for_epoch(e)`` gives one view per train image for epoch ``e`` (N, D), rows in the order of
    ``Task.train``. ``mode`` is ``online`` (the protocol: a fresh augmentation of every image in
    every epoch, keyed by (seed, image, epoch)), ``cached`` (one of ``n_views`` pre-encoded views
    per image and epoch: the opt-in approximation), ``fixed`` (a method's own V views; ``all()``
    gives them) or ``none``.
    """

    mode: str
    n_views: int

    def for_epoch(self, epoch: int) -> torch.Tensor: ...

    def describe(self) -> dict: ...


class TextBackbone(Protocol):
    """The frozen CLIP model, for methods that encode text or learn prompts."""

    model: Any  # the open_clip model, eval mode, requires_grad False
    tokenizer: Callable
    logit_scale: float  # exp of the learned logit scale (100 for OpenAI weights)
    context_length: int

    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        """Raw text embeddings (P, D), float32, on the task device."""

    def class_weights(self, classnames: list[str], templates: list[str]) -> torch.Tensor:
        """Zero-shot classifier (C, D): per template normalize, average, re-normalize."""


@dataclass
class Task:
    dataset: str
    classnames: list[str]  # as they go into prompts (underscores replaced)
    templates: list[str]
    shots: int
    seed: int
    config: dict
    device: torch.device
    train: FeatureSplit  # few-shot train images, eval transform (no augmentation)
    val: FeatureSplit  # few-shot val images (min(K, 4) per class), eval transform
    train_views: TrainViews
    backbone: TextBackbone

    @property
    def num_classes(self) -> int:
        return len(self.classnames)


@dataclass
class Fitted:
    """A trained classifier: ``logits(features)`` maps raw image features (N, D) to (N, C).

    ``for_classes(classnames, templates, dataset)``, given by methods registered with
    ``new_classes=True``, returns the logits function of the same trained model over other
    classes (names as they go into prompts, the templates and key of the dataset they come
    from): CoOp's learned
    context with the new class names, CLIP-Adapter's adapter over the new zero-shot weights. The
    base-to-novel and cross-dataset protocols (docs/protocol.md) score classes the method never
    trained on through it; methods that learn per-class weights cannot, and are refused there.
    """

    logits_fn: Callable[[torch.Tensor], torch.Tensor]
    info: dict = field(default_factory=dict)
    for_classes: Callable[[list[str], list[str], str], Callable[[torch.Tensor], torch.Tensor]] | None = None

    @torch.no_grad()
    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.logits_fn(features)

    def on_classes(self, classnames: list[str], templates: list[str], dataset: str) -> "Fitted":
        """This model over ``classnames`` of ``dataset`` (see ``for_classes``)."""
        if self.for_classes is None:
            raise TypeError("this method's Fitted has no for_classes: it cannot score classes "
                            "it did not train on")
        return Fitted(self.for_classes(classnames, templates, dataset), self.info,
                      self.for_classes)


def normalize(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)
