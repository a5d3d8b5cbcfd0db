"""CLAP, class-adaptive linear probing (Silva-Rodriguez et al., CVPR 2024; jusiro/CLAP,
``trainers/adapters.py``), and its unconstrained form ZS-LP.

A linear probe whose class prototypes ``W`` (C, D) start at the zero-shot text prototypes ``T``:
the **raw** text embeddings of the class prompts averaged over the templates
(``_get_base_text_features``, the same base as TaskRes). With ``s`` the model's logit scale::

    logits = s * cos(f, w_c)                                    (forward_lp)
    loss   = CE(logits, y) + mean_c lambda_c * ||w_c - t_c||^2   (zero_shot_constraint, "l2")

so before any step the logits are zero-shot CLIP's on that base. The multipliers ``lambda_c`` are
fixed before training from the zero-shot predictions on the augmented train samples
(``init_lagrangian_multipliers``): the mean softmax probability of the true class over the
samples of class c. ZS-LP (``constraint: none``) drops the penalty.

Train samples: V = 20 augmented views of every train image (``extract_features(reps=20,
transforms=True)``: Dassl's RandomResizedCrop + flip, the protocol's transform), pooled (V * N
rows, not averaged). An epoch shuffles the pool and takes as many batches of 256 as the image
loader has (``len(train_loader_x)``: N // 256, or 1 below 256 images), so it reads
min(V * N, 256 * batches) rows. SGD with Dassl's constant warm-up then cosine per epoch; the last
epoch is evaluated. Nothing is selected on the val set: the val split is never read.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.base.schema import ConfigError
from methods import METHODS
from methods._training import OptimConfig, batches_per_epoch, lr_at, make_optimizer
from methods.base import Fitted, Task, ViewSpec, normalize
from methods.taskres import base_text_features, release_precision, tf32
from methods.tip_adapter import _fixed_views
from methods.zero_shot import resolve_templates

CLAP_VIEWS = ViewSpec("fixed", transform="protocol", n_views=20)
CONSTRAINTS = ("l2", "none")
MULTIPLIERS = ("class_adaptive", "balanced", "corrected", "constant")


def clap_logits(features: torch.Tensor, prototypes: torch.Tensor, scale: float) -> torch.Tensor:
    """s * cos(f, w_c) for raw features (M, D) and raw prototypes (C, D)."""
    return scale * normalize(features) @ normalize(prototypes).T


def lagrangian_multipliers(zs_logits: torch.Tensor, labels: torch.Tensor, n_classes: int,
                           kind: str = "class_adaptive") -> torch.Tensor:
    """(C,): per class, the mean zero-shot softmax probability of the true class over its samples
    (the release's ``init_lagrangian_multipliers``), or one of its ablations:
    ``balanced`` all ones, ``corrected`` rescaled to sum to C, ``constant`` their mean everywhere."""
    if kind == "balanced":
        return torch.ones(n_classes, dtype=torch.float32, device=zs_logits.device)
    onehot = F.one_hot(labels, n_classes).to(zs_logits.dtype)
    perf = (torch.softmax(zs_logits, dim=-1) * onehot).sum(0) / onehot.sum(0)
    if kind == "corrected":
        perf = perf * (n_classes / perf.sum())
    elif kind == "constant":
        perf = torch.full_like(perf, float(perf.mean()))
    return perf.float()


def constraint_penalty(prototypes: torch.Tensor, base: torch.Tensor,
                       multipliers: torch.Tensor) -> torch.Tensor:
    """mean_c lambda_c * ||w_c - t_c||^2 (the release's ``zero_shot_constraint`` with l2)."""
    return (multipliers * (prototypes - base).pow(2).sum(-1)).mean()


def _pool(task: Task, n_views: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The V * N augmented train samples, view-major as the release concatenates its passes."""
    views = _fixed_views(task, 1, "clap")
    if views.shape[0] < n_views:
        raise ConfigError(f"clap: n_views = {n_views} but the task holds {views.shape[0]} train "
                          f"views per image")
    views = views[:n_views].to(task.device).float()  # (V, N, D)
    labels = task.train.labels.to(task.device).long()
    return views.reshape(-1, views.shape[-1]), labels.repeat(views.shape[0])


def _check(cfg: dict) -> None:
    if cfg["constraint"] not in CONSTRAINTS:
        raise ConfigError(f"clap: constraint must be one of {', '.join(CONSTRAINTS)}, "
                          f"not {cfg['constraint']!r}")
    if cfg["multipliers"] not in MULTIPLIERS:
        raise ConfigError(f"clap: multipliers must be one of {', '.join(MULTIPLIERS)}, "
                          f"not {cfg['multipliers']!r}")


@METHODS.register("clap", display_name="CLAP", order=12, family="linear probe", views=CLAP_VIEWS,
                  description="zero-shot-initialized linear probe kept near the text prototypes "
                              "by class-adaptive multipliers; no val search (Silva-Rodriguez et al. 2024)")
def fit_clap(task: Task) -> Fitted:
    cfg, dev = task.config, task.device
    _check(cfg)
    opt = OptimConfig.from_config(cfg)
    x, y = _pool(task, int(cfg["n_views"]))
    missing = sorted(set(range(task.num_classes)) - set(y.tolist()))
    if missing:
        raise ConfigError(f"clap: classes {missing[:5]} have no train image; the multipliers "
                          f"are a per-class mean")
    templates = resolve_templates(cfg.get("templates", "dataset"), task.templates, task.dataset,
                                  False)
    precision = release_precision(cfg, task)
    base = base_text_features(task, templates, precision["text_base_precision"]).to(dev).float()
    scale = float(task.backbone.logit_scale)
    constrained = cfg["constraint"] != "none"
    with tf32(precision["tf32"], dev):
        prototypes, lam, history, n_batches = _train(task, opt, x, y, base, scale, constrained)

    def logits_fn(features: torch.Tensor) -> torch.Tensor:
        with tf32(precision["tf32"], dev):
            return clap_logits(features.to(dev).float(), prototypes, scale).to(features.device)

    info = {"constraint": cfg["constraint"], "logit_scale": scale, "n_templates": len(templates),
            "n_samples": int(x.shape[0]), "batches_per_epoch": n_batches, **precision,
            "prototype_shift": round(float((prototypes - base).norm(dim=-1).mean()), 6),
            "train_loss_first_epoch": history[0], "train_loss_last_epoch": history[-1]}
    if constrained:
        info.update(multipliers=cfg["multipliers"], multiplier_mean=round(float(lam.mean()), 6),
                    multiplier_min=round(float(lam.min()), 6),
                    multiplier_max=round(float(lam.max()), 6))
    return Fitted(logits_fn, info)


def _train(task: Task, opt, x, y, base, scale: float, constrained: bool):
    """The multipliers from the zero-shot start, then the release's epochs: (prototypes,
    multipliers, loss per epoch, batches per epoch)."""
    cfg, dev = task.config, task.device
    n_images = len(task.train.labels)
    with torch.no_grad():
        lam = lagrangian_multipliers(clap_logits(x, base, scale), y, task.num_classes,
                                     cfg["multipliers"])
    W = base.clone().requires_grad_(True)
    optimizer = make_optimizer([W], opt)
    n_batches = batches_per_epoch(n_images, opt.batch_size, opt.drop_last)
    gen = torch.Generator().manual_seed(int(task.seed))

    history = []
    for epoch in range(opt.epochs):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(epoch, opt)
        perm = torch.randperm(x.shape[0], generator=gen).to(dev)
        total, count = 0.0, 0
        for b in range(n_batches):
            idx = perm[b * opt.batch_size:(b + 1) * opt.batch_size]
            loss = F.cross_entropy(clap_logits(x[idx], W, scale), y[idx])
            if constrained:
                loss = loss + constraint_penalty(W, base, lam)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        history.append(total / count)
    return W.detach(), lam, history, n_batches
