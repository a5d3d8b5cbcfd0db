"""TaskRes (Yu et al., CVPR 2023; geekyutao/TaskRes): a learned residual on the zero-shot classifier.

With ``t`` (C, D) the base text classifier and ``x`` (C, D) a learnable residual, initialized to
zero (``TaskResLearner`` in the release's trainers/taskres.py)::

    t' = t + alpha * x,        logits = s * cos(f, t')

``s`` is the model's logit scale (``clip_model.logit_scale.exp()``). The base ``t`` is the
release's ``_get_base_text_features``: the *raw* (un-normalized) text embeddings of the class
prompts, averaged over the templates without normalizing each first (one template on every
dataset but ImageNet, whose 7 selected templates plus "a photo of a {}." are set in the YAML), so
alpha acts at the scale of the raw embedding. Only ``x`` trains: cross-entropy, the release's
Dassl setup (Adam, constant warm-up epoch, cosine per epoch, batch 256) on a fresh crop of every
train image per epoch (the protocol's views, shared with CoOp and CLIP-Adapter); the last epoch
is evaluated (Dassl's default). With ``alpha = 0`` or before any step it is zero-shot CLIP on
the base classifier.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn as nn
import torch.nn.functional as F

from bench.base.schema import ConfigError
from methods import METHODS
from methods._training import OptimConfig, train
from methods.base import PER_EPOCH_VIEWS, Fitted, Task, normalize
from methods.zero_shot import resolve_templates


TEXT_PRECISIONS = ("fp32", "fp16")


def base_text_features(task: Task, templates: list[str], precision: str = "fp32") -> torch.Tensor:
    """(C, D): per class, the mean over templates of the raw text embeddings, from the fp32 text
    encoder (bench's default) or, ``precision: fp16``, from an fp16 copy of it: the releases'
    ``_get_base_text_features`` runs CLIP's fp16 model (their ``PREC`` default "fp16"; the model
    is cast to fp32 only after the base is computed)."""
    if precision not in TEXT_PRECISIONS:
        raise ConfigError(f"text_base_precision must be one of {', '.join(TEXT_PRECISIONS)}, "
                          f"not {precision!r}")
    prompts = [t.format(name) for name in task.classnames for t in templates]
    if precision == "fp16":
        from methods.coop import half_text_features

        raw = half_text_features(task.backbone, prompts, task.device)
    else:
        raw = task.backbone.encode_text(prompts).float()
    return raw.view(len(task.classnames), len(templates), -1).mean(dim=1)


@contextlib.contextmanager
def tf32(enabled: bool, device: torch.device):
    """TF32 matmuls and convolutions on CUDA while inside (``tf32: true``: the releases set
    ``torch.backends.cuda.matmul.allow_tf32 = True`` and ``cudnn.allow_tf32 = True`` at import),
    restored after; nothing changes on other devices or when ``enabled`` is false."""
    if not enabled or torch.device(device).type != "cuda":
        yield
        return
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def release_precision(cfg: dict, task: Task) -> dict:
    """The precision keys of the ``release_precision`` variant, as recorded in ``info``."""
    return {"text_base_precision": str(cfg.get("text_base_precision", "fp32")),
            "tf32": bool(cfg.get("tf32", False)) and task.device.type == "cuda"}


class TaskResHead(nn.Module):
    """Raw image features (N, D) -> logits (N, C) through ``t + alpha * x``."""

    def __init__(self, base: torch.Tensor, alpha: float, logit_scale: float):
        super().__init__()
        self.register_buffer("base", base.detach().float().clone())
        self.residual = nn.Parameter(torch.zeros_like(self.base))
        self.alpha, self.logit_scale = alpha, logit_scale

    def classifier(self) -> torch.Tensor:
        return self.base + self.alpha * self.residual

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.logit_scale * normalize(features) @ normalize(self.classifier()).t()


@METHODS.register("taskres", display_name="TaskRes", order=33, family="adapter",
                  views=PER_EPOCH_VIEWS, stochastic="batch_order",
                  description="learned residual on the zero-shot text classifier, t + alpha*x "
                              "(Yu et al. 2023)")
def fit_taskres(task: Task) -> Fitted:
    cfg = task.config
    try:
        alpha = float(cfg["alpha"])
    except (TypeError, ValueError):
        raise ConfigError(f"taskres: alpha must be a number, not {cfg['alpha']!r}") from None
    templates = resolve_templates(cfg.get("templates", "dataset"), task.templates, task.dataset,
                                  False)
    scale = float(task.backbone.logit_scale)
    precision = release_precision(cfg, task)
    base = base_text_features(task, templates, precision["text_base_precision"])
    head = TaskResHead(base.to(task.device), alpha, scale)
    head = head.to(task.device).train()  # the residual starts at zero: nothing random

    def step(x, y, scale_loss):
        loss = F.cross_entropy(head(x), y)
        scale_loss(loss).backward()
        return loss

    with tf32(precision["tf32"], task.device):
        history = train(task, head.parameters(), step, OptimConfig.from_config(cfg))
    head.eval()

    def logits_fn(features: torch.Tensor) -> torch.Tensor:
        with tf32(precision["tf32"], task.device):
            return head(features.to(task.device).float()).to(features.device)

    return Fitted(logits_fn, {"alpha": alpha, "logit_scale": scale, "n_templates": len(templates),
                              **precision,
                              "residual_norm": round(float(head.residual.detach().norm()), 6),
                              "train_loss_first_epoch": history[0],
                              "train_loss_last_epoch": history[-1]})
