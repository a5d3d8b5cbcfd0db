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


class FeatureSplit:
    """Image features (N, D), raw from the image encoder, float32, and labels (N,).

    ``features`` may be given as a function: it runs on first use, so images are encoded only
    for the methods that read these features (the runner passes the eval-transform train and val
    features this way; methods that train on augmented views never pay for them).
    """

    def __init__(self, features: "torch.Tensor | Callable[[], torch.Tensor]", labels: torch.Tensor):
        self._features = features
        self.labels = labels

    @property
    def features(self) -> torch.Tensor:
        if callable(self._features):
            self._features = self._features()
        return self._features

    def __len__(self) -> int:
        return len(self.labels)


class TrainViews(Protocol):
    """Augmented views of the few-shot train images (PROTOCOL §1 train augmentation).

    ``for_epoch(e)`` gives one view per train image for epoch ``e`` (N, D), rows in the order of
    ``Task.train``. In ``cached`` mode it picks among a fixed number of pre-encoded views; in
    ``online`` mode it encodes fresh augmentations, as the original code did.
    """

    mode: str
    n_views: int

    def for_epoch(self, epoch: int) -> torch.Tensor: ...


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
    """A trained classifier: ``logits(features)`` maps raw image features (N, D) to (N, C)."""

    logits_fn: Callable[[torch.Tensor], torch.Tensor]
    info: dict = field(default_factory=dict)

    @torch.no_grad()
    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.logits_fn(features)


def normalize(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)
