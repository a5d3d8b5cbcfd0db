"""LP++ (Huang et al., CVPR 2024; FereshteShakeri/FewShot-CLIP-Strong-Baseline,
``methods/linear_probe_p2.py``): a linear probe blended with the zero-shot text classifier by
class-wise multipliers, with data-driven step sizes and initialization.

With ``f`` an L2-normalized image feature, ``T`` (C, D) the zero-shot classifier, and a learned
linear layer ``(W, b)``::

    logits_c = f w_c + b_c + alpha_c * f t_c          (no logit scale on the text term)

Training is full-batch on one 'tip' view of every train image (the release encodes its train
loader once, with Tip-Adapter's transform), L2-normalized, ``F`` (N, D):

* ``W`` starts at the per-class **sums** of the features (``compute_centroids`` has its division
  commented out), ``b`` at ``nn.Linear``'s uniform(-1/sqrt(D), 1/sqrt(D)) (seeded here);
* every ``alpha_c`` starts at ``250 * mean_c mean_{i in c} f_i t_c`` (``calculate_init_alpha``);
* ``W, b``: SGD, momentum 0.9, lr ``4 N / lambda_max(F^T F)`` (``calculate_lr_w``), one step per
  epoch on the mean cross-entropy;
* ``alpha``: every 10th epoch ``alpha -= lr_alpha * grad`` with ``lr_alpha = N / (4 max_c
  sum_i (f_i t_c)^2)``; the release never zeroes alpha's gradient, so ``grad`` is the sum of the
  gradients of every epoch so far (kept, as the release's numbers come from it).

After every epoch the few-shot val accuracy is computed; the epoch with the best one (the latest
of ties, the release's ``>=``) is kept. The release does the same on its own val split.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from bench.base.schema import ConfigError
from methods import METHODS
from methods._selection import Selection, correct, percent, require_val
from methods.base import Fitted, Task, ViewSpec, normalize
from methods.tip_adapter import _fixed_views
from methods.zero_shot import resolve_templates

LPP_VIEWS = ViewSpec("fixed", transform="tip", n_views=1)


def lpp_logits(f: torch.Tensor, W: torch.Tensor, b: torch.Tensor, alpha: torch.Tensor,
               text: torch.Tensor) -> torch.Tensor:
    """f W^T + b + alpha * (f T^T), alpha (C,) broadcast over rows; f normalized (M, D)."""
    return f @ W.T + b + alpha * (f @ text.T)


def lpp_init(x: torch.Tensor, y: torch.Tensor, text: torch.Tensor, n_classes: int,
             init_factor: float, generator: torch.Generator) -> dict:
    """The release's data-driven start: W, b, alpha (C,) and the two step sizes."""
    n, d = x.shape
    onehot = F.one_hot(y, n_classes).to(x.dtype)            # (N, C)
    W = onehot.T @ x                                         # per-class sums
    bound = 1.0 / math.sqrt(d)
    b = (torch.rand(n_classes, generator=generator) * 2 - 1) * bound
    zs = x @ text.T                                          # (N, C) cosines
    per_class = (onehot * zs).sum(0) / onehot.sum(0)         # mean_{i in c} f_i t_c
    alpha0 = init_factor * per_class.double().mean()
    lam = torch.linalg.eigvalsh((x.T @ x).double()).max()
    lr_w = 4.0 * n / float(lam)
    lr_alpha = n / (4.0 * float((zs.double() ** 2).sum(0).max()))
    return {"W": W, "b": b.to(x.device, x.dtype),
            "alpha": torch.full((n_classes,), float(alpha0), dtype=x.dtype, device=x.device),
            "lr_w": lr_w, "lr_alpha": lr_alpha}


@METHODS.register("lp_pp", display_name="LP++", order=11, family="linear probe", views=LPP_VIEWS,
                  description="linear probe blended with the text classifier by class-wise "
                              "multipliers, data-driven step sizes, epoch on val (Huang et al. 2024)")
def fit_lp_pp(task: Task) -> Fitted:
    cfg, dev = task.config, task.device
    epochs, every = int(cfg["epochs"]), int(cfg["alpha_every"])
    select = cfg["select_epoch"]
    views = _fixed_views(task, 1, "lp_pp")
    x = normalize(views[0].to(dev).float())
    y = task.train.labels.to(dev).long()
    missing = sorted(set(range(task.num_classes)) - set(y.tolist()))
    if missing:
        raise ConfigError(f"lp_pp: classes {missing[:5]} have no train image; LP++ starts "
                          f"from a per-class sum")
    # the epoch on val, ties: the latest (the release's >=); select_epoch: last keeps the last
    sel = None if select == "last" else Selection(
        "epoch", require_val(task, "lp_pp", "select_epoch 'val'", "set select_epoch: last"),
        ties="last")
    templates = resolve_templates(cfg.get("templates", "dataset"), task.templates, task.dataset, False)
    text = task.backbone.class_weights(task.classnames, templates).to(dev).float()
    gen = torch.Generator().manual_seed(int(task.seed))
    init = lpp_init(x, y, text, task.num_classes, float(cfg["init_alpha_factor"]), gen)
    W = init["W"].clone().requires_grad_(True)
    b = init["b"].clone().requires_grad_(True)
    alpha = init["alpha"].clone().requires_grad_(True)
    opt = torch.optim.SGD([W, b], lr=init["lr_w"], momentum=float(cfg["momentum"]))
    xv = normalize(task.val.features.to(dev).float()) if len(task.val) else None
    yv = task.val.labels.to(dev) if len(task.val) else None

    best, curve, loss = _train(x, y, xv, yv, text, W, b, alpha, opt, init, epochs, every, sel)
    Wf, bf, af = best
    best_epoch = epochs - 1 if sel is None else sel.value

    def logits_fn(features: torch.Tensor) -> torch.Tensor:
        f = normalize(features.to(dev).float())
        return lpp_logits(f, Wf, bf, af, text).to(features.device)

    info = {"epoch": best_epoch + 1, "epochs": epochs, "lr_w": init["lr_w"],
            "lr_alpha": init["lr_alpha"], "alpha_init": float(init["alpha"][0]),
            "alpha_mean": float(af.mean()), "train_loss_last_epoch": float(loss.detach())}
    if curve:
        info["val_acc"] = curve[best_epoch]
    if sel is not None:
        info["val_selection"] = sel.trace()
    return Fitted(logits_fn, info)


def _train(x, y, xv, yv, text, W, b, alpha, opt, init, epochs, every, sel):
    """The release's loop; returns ((W, b, alpha) of the kept epoch, val curve, last loss).
    ``sel``: the epoch's Selection on val, or None to keep the last epoch."""
    best, curve = None, []
    for epoch in range(epochs):
        loss = F.cross_entropy(lpp_logits(x, W, b, alpha, text), y)
        opt.zero_grad()                    # W and b only: alpha's gradient accumulates
        loss.backward()
        opt.step()
        if (epoch + 1) % every == 0:
            with torch.no_grad():
                alpha -= init["lr_alpha"] * alpha.grad
        state = (W.detach().clone(), b.detach().clone(), alpha.detach().clone())
        n_correct = None
        if xv is not None:
            with torch.no_grad():
                n_correct = correct(lpp_logits(xv, *state[:2], state[2], text), yv)
            curve.append(percent(n_correct, len(yv)))
        if sel is None or sel.offer(epoch, n_correct):
            best = state
    return best, curve, loss
