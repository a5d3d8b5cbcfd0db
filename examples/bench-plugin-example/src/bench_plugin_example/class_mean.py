"""Class-mean prototypes blended with zero-shot CLIP: a training-free few-shot method.

logits = logit_scale * ((1 - alpha) * cos(image, class text embedding)
                        + alpha * cos(image, mean of the class's few-shot train features))

``alpha`` is fixed by the config, or chosen on the few-shot val set from ``alpha_grid`` when
``alpha: search``. Everything the method reads comes from the ``Task`` (bench never gives it
test data); the config values come from class_mean.yaml next to this file.
"""

from __future__ import annotations

import torch

from methods import METHODS
from methods._selection import correct, require_val, select
from methods.base import NO_VIEWS, Fitted, Task, normalize


def _prototypes(task: Task) -> torch.Tensor:
    feats = normalize(task.train.features.float())
    protos = torch.zeros(task.num_classes, feats.shape[1], device=feats.device)
    protos.index_add_(0, task.train.labels, feats)
    return normalize(protos)  # a class without images stays zero: it falls back to text


def _blend(text: torch.Tensor, protos: torch.Tensor, alpha: float, scale: float):
    def logits(features: torch.Tensor) -> torch.Tensor:
        x = normalize(features.float())
        return scale * ((1 - alpha) * x @ text.T + alpha * x @ protos.T)

    return logits


@METHODS.register("class_mean", display_name="Class-mean + ZS", order=15,
                  family="linear probe",
                  description="class-mean prototypes blended with zero-shot text weights "
                              "(example plugin)",
                  views=NO_VIEWS)
def class_mean(task: Task) -> Fitted:
    text = task.backbone.class_weights(task.classnames, task.templates)
    protos = _prototypes(task)
    scale = task.backbone.logit_scale
    alpha = task.config["alpha"]
    info = {}
    if alpha == "search":  # the first best value of the grid on the few-shot val set
        n = require_val(task, "class_mean", "alpha: search", "set alpha to a number")
        grid = [float(a) for a in task.config["alpha_grid"]]
        scores = [correct(_blend(text, protos, a, scale)(task.val.features), task.val.labels)
                  for a in grid]
        choice = select("alpha", n, grid, scores, ties="first")
        alpha, info["val_selection"] = choice.value, choice.trace()
    return Fitted(_blend(text, protos, float(alpha), scale), {"alpha": float(alpha), **info})
