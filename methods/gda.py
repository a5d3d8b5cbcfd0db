"""GDA (Wang et al., ICLR 2024, "A hard-to-beat baseline for training-free CLIP-based adaptation";
mrflogs/ICLR24, ``main_few_shots.py``): Gaussian discriminant analysis blended with zero-shot CLIP.

Samples: every one of the V augmented views (Tip-Adapter's transform, shared with
``tip_adapter`` at the same seed) of every train image, each L2-normalized. With ``mu_k`` the class
means, ``S`` the scatter of the class-centered samples (``(n - 1) * cov``) and D the dimension, the
release's shrinkage estimate of the precision matrix is::

    P = D * pinv(S + tr(S / (n - 1)) * I)

and the linear discriminant, with uniform priors, is ``w_k = P mu_k``,
``b_k = log(1/C) - mu_k^T P mu_k / 2``. Logits of a normalized feature ``f``::

    100 * f W^T + alpha * (f w_k + b_k)

alpha is chosen on the few-shot val set over the release's grid (1e-4 ... 100, the first best
kept); the release chooses it on its val split, and on the test set for ImageNet.

bench solves in float64 (``solve_dtype``, default): the shrunk scatter's pseudo-inverse is then
the formula's value, the same on every machine, where the release's float32 (on a GPU) rounds
by its device's SVD. Variant ``fp32`` (``solve_dtype: float32``) solves in float32 as released;
the two agree but at near ties of the alpha search (docs/methods.md).
"""

from __future__ import annotations

import math

import torch

from bench.base.schema import ConfigError
from methods import METHODS
from methods._selection import correct, percent, require_val, select
from methods.base import Fitted, Task, normalize
from methods.tip_adapter import TIP_VIEWS, _fixed_views, _scale
from methods.zero_shot import resolve_templates


SOLVE_DTYPES = {"float64": torch.float64, "float32": torch.float32}


def gda_classifier(x: torch.Tensor, y: torch.Tensor, n_classes: int,
                   dtype: torch.dtype = torch.float64):
    """(W (C, D), b (C,)) of the release's GDA from samples x (n, D), labels y (n,), computed in
    ``dtype`` (float64: bench's default; float32: the release's)."""
    x = x.to(dtype)
    d = x.shape[1]
    mus = torch.stack([x[y == k].mean(dim=0) for k in range(n_classes)])
    centered = x - mus[y]
    n = x.shape[0]
    cov = torch.cov(centered.T)                     # (n - 1) denominator, as torch's Tensor.cov
    precision = d * torch.linalg.pinv((n - 1) * cov + cov.trace() * torch.eye(d, dtype=x.dtype))
    W = mus @ precision                             # P symmetric: rows are (P mu_k)^T
    b = math.log(1.0 / n_classes) - 0.5 * (W * mus).sum(dim=1)
    return W.float(), b.float()


@METHODS.register("gda", display_name="GDA", order=13, family="linear probe", views=TIP_VIEWS,
                  description="Gaussian discriminant analysis on the few-shot features, blended "
                              "with zero-shot by alpha on val (Wang et al. 2024)")
def fit_gda(task: Task) -> Fitted:
    cfg, dev = task.config, task.device
    views = _fixed_views(task, int(cfg["n_views"]), "gda")  # (V, N, D)
    x = normalize(views.to(dev).float()).reshape(-1, views.shape[-1])
    y = task.train.labels.to(dev).long().repeat(views.shape[0])
    missing = sorted(set(range(task.num_classes)) - set(y.tolist()))
    if missing:
        raise ConfigError(f"gda: classes {missing[:5]} have no train image; GDA needs a mean per class")
    solve = str(cfg.get("solve_dtype", "float64"))
    if solve not in SOLVE_DTYPES:
        raise ConfigError(f"gda: solve_dtype must be one of {', '.join(SOLVE_DTYPES)}, not {solve!r}")
    W, b = gda_classifier(x, y, task.num_classes, SOLVE_DTYPES[solve])
    W, b = W.to(dev), b.to(dev)
    templates = resolve_templates(cfg.get("templates", "dataset"), task.templates, task.dataset, False)
    text = task.backbone.class_weights(task.classnames, templates).to(dev).float()
    scale = _scale(cfg, task)

    def parts(features):
        f = normalize(features.to(dev).float())
        return scale * f @ text.T, f @ W.T + b

    grid = [float(a) for a in cfg["alpha_grid"]]
    n = require_val(task, "gda", "the alpha search",
                    "use a split with val images (every few-shot sampler draws some)")
    zs, disc = parts(task.val.features)
    yv = task.val.labels.to(dev)
    scores = [correct(zs + a * disc, yv) for a in grid]
    # the release starts from best_alpha = 0.1 at accuracy 0 and keeps the first strictly better
    sel = select("alpha", n, grid, scores, ties="first", start=(0.1, 0))
    alpha = sel.value

    def logits_fn(features: torch.Tensor) -> torch.Tensor:
        z, g = parts(features)
        return (z + alpha * g).to(features.device)

    return Fitted(logits_fn, {"alpha": alpha, "val_acc": sel.val_acc,
                              "alpha_search": [[a, percent(s, n)] for a, s in zip(grid, scores)],
                              "n_samples": int(x.shape[0]), "logit_scale": scale,
                              "solve_dtype": solve,
                              "val_selection": sel.trace()})
