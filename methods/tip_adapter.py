"""Tip-Adapter and Tip-Adapter-F (Zhang et al., ECCV 2022; gaopengcuhk/Tip-Adapter), docs/protocol.md §8.

A training-free cache model on top of zero-shot CLIP. With ``f`` the L2-normalized test feature,
``W`` (C, D) the zero-shot classifier, ``K`` (N, D) the cache keys and ``L`` (N, C) the one-hot
labels of the N few-shot train images::

    logits = s * f W^T + alpha * exp(-beta * (1 - f K^T)) L

* keys: the raw image features of V augmented views of every train image (its own transform:
  RandomResizedCrop scale 0.5-1, bicubic, flip; ``ViewSpec("fixed", transform="tip")``),
  averaged over the views, then L2-normalized (``build_cache_model`` in the release's utils.py);
* ``s = 100`` as in the release (``100. * features @ clip_weights``), or the model's scale;
* alpha and beta are searched on the few-shot val set (``task.val``) over the release's grid
  (``search_hp``: ``search_step`` values from 0.1 up to ``search_scale``, beta outer, alpha
  inner, the first best kept); test data never reaches a method.

Tip-Adapter-F makes the keys a parameter initialized from the cache and trains them with
cross-entropy at the dataset's ``init_alpha`` / ``init_beta`` (AdamW, cosine per iteration,
methods/_training.py) on a fresh augmented view of every train image per epoch. The release
draws those views with the same transform as the cache, so bench asks for ``n_views =
cache_views + epochs`` fixed views: views 0..cache_views-1 build the cache (shared with
``tip_adapter`` at the same seed), view ``cache_views + e`` is epoch ``e``'s. The last epoch's keys
are kept (the release keeps the epoch with the best *test* accuracy; bench never does), then
alpha and beta are searched on val as in the release.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.base.schema import ConfigError
from methods import METHODS
from methods._selection import Selection, correct, percent, require_val
from methods._training import OptimConfig, train
from methods.base import Fitted, Task, ViewSpec, normalize
from methods.zero_shot import resolve_templates

TIP_VIEWS = ViewSpec("fixed", transform="tip", n_views=10)


def cache_logits(f: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                 beta: float) -> torch.Tensor:
    """exp(-beta (1 - f K^T)) L for normalized features f (M, D), keys (N, D), values (N, C)."""
    return torch.exp(-beta * (1.0 - f @ keys.T)) @ values


def tip_logits(f: torch.Tensor, weights: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
               alpha: float, beta: float, scale: float) -> torch.Tensor:
    """The full Tip-Adapter logits for normalized features ``f``."""
    return scale * f @ weights.T + alpha * cache_logits(f, keys, values, beta)


def search_grid(scale: float, steps: int) -> list[float]:
    """The release's grid: ``[i * (scale - 0.1) / steps + 0.1 for i in range(steps)]``."""
    if steps < 1:
        raise ConfigError(f"tip_adapter: search_step values must be >= 1, not {steps}")
    return [i * (float(scale) - 0.1) / steps + 0.1 for i in range(int(steps))]


@torch.no_grad()
def alpha_beta_selection(f_val: torch.Tensor, y_val: torch.Tensor, clip_val: torch.Tensor,
                         keys: torch.Tensor, values: torch.Tensor, betas: list[float],
                         alphas: list[float], start: tuple | None = (0.0, 0.0)) -> Selection:
    """The release's ``search_hp``: (beta, alpha) pairs in (beta outer, alpha inner) order, the
    first best kept (its strict ``>``); the selection's value is (beta, alpha). ``start``: the
    release's ``best_beta, best_alpha = 0, 0`` at accuracy 0, kept when no pair gets a val image
    right (alpha 0: zero-shot CLIP); None: the grid's first pair then, whatever its score."""
    start = None if start is None else ((float(start[0]), float(start[1])), 0)
    sel = Selection("beta, alpha", len(y_val), ties="first", start=start)
    y = y_val.to(clip_val.device)
    for beta in betas:
        cache = cache_logits(f_val, keys, values, beta)
        for alpha in alphas:
            sel.offer((beta, alpha), correct(clip_val + alpha * cache, y))
    return sel


def search_alpha_beta(f_val: torch.Tensor, y_val: torch.Tensor, clip_val: torch.Tensor,
                      keys: torch.Tensor, values: torch.Tensor, betas: list[float],
                      alphas: list[float], start: tuple | None = (0.0, 0.0)
                      ) -> tuple[float, float, int]:
    """(beta, alpha, correct) of ``alpha_beta_selection``."""
    sel = alpha_beta_selection(f_val, y_val, clip_val, keys, values, betas, alphas, start)
    return (*sel.value, sel.correct)


def search_start(cfg: dict) -> tuple[float, float] | None:
    """``search_start``: the (beta, alpha) held before the grid, [0, 0] as the release; null:
    none (the grid's first pair wins when no pair gets a val image right)."""
    start = cfg.get("search_start", [0, 0])
    if start is None:
        return None
    try:
        beta, alpha = (float(v) for v in start)
    except (TypeError, ValueError):
        raise ConfigError(f"tip_adapter: search_start must be [beta, alpha] or null, "
                         f"not {start!r}") from None
    return beta, alpha


def _scale(cfg: dict, task: Task) -> float:
    value = cfg.get("logit_scale", 100)
    if value == "model":
        return float(task.backbone.logit_scale)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"tip_adapter: logit_scale must be 'model' or a number, "
                         f"not {value!r}") from None


def _fixed_views(task: Task, needed: int, name: str) -> torch.Tensor:
    views = getattr(task.train_views, "all", None)
    if views is None:
        raise ConfigError(f"{name}: needs the fixed 'tip' train views (ViewSpec kind 'fixed'); "
                         f"got {task.train_views.mode!r} views (feature_mode does not apply)")
    feats = views()
    if feats.shape[0] < needed:
        raise ConfigError(f"{name}: needs {needed} train views per image (cache_views + epochs), "
                         f"the config gives n_views = {feats.shape[0]}; set n_views to {needed}")
    return feats


class _Setup:
    """What both methods share: zero-shot classifier, cache keys and values, val features."""

    def __init__(self, task: Task, name: str, n_views_needed: int):
        cfg = task.config
        dev = task.device
        self.cfg, self.task = cfg, task
        n_cache = int(cfg["cache_views"])
        if n_cache < 1:
            raise ConfigError(f"{name}: cache_views must be >= 1, not {n_cache}")
        self.views = _fixed_views(task, max(n_cache, n_views_needed), name)
        templates = resolve_templates(cfg.get("templates", "dataset"), task.templates,
                                      task.dataset, False)
        self.weights = task.backbone.class_weights(task.classnames, templates).to(dev).float()
        self.scale = _scale(cfg, task)
        # keys: mean of the raw features over the cache views, then normalized (release utils.py)
        self.keys = normalize(self.views[:n_cache].to(dev).float().mean(dim=0))
        labels = task.train.labels.to(dev).long()
        self.values = F.one_hot(labels, task.num_classes).float()
        self.n_cache = n_cache
        # checked before Tip-Adapter-F trains, not after
        self.n_val = (require_val(task, name, "the alpha/beta search",
                                  "set search: false to use init_alpha / init_beta")
                      if cfg.get("search", True) else 0)

    def search(self, keys: torch.Tensor) -> dict:
        """alpha, beta: searched on the few-shot val set, or the init values (search: false)."""
        cfg, task = self.cfg, self.task
        if not cfg.get("search", True):
            return {"alpha": float(cfg["init_alpha"]), "beta": float(cfg["init_beta"])}
        (beta_scale, alpha_scale), (beta_steps, alpha_steps) = cfg["search_scale"], cfg["search_step"]
        betas, alphas = search_grid(beta_scale, beta_steps), search_grid(alpha_scale, alpha_steps)
        f_val = normalize(task.val.features.to(task.device).float())
        clip_val = self.scale * f_val @ self.weights.T
        sel = alpha_beta_selection(f_val, task.val.labels, clip_val, keys, self.values,
                                   betas, alphas, search_start(cfg))
        beta, alpha = sel.value
        return {"alpha": alpha, "beta": beta, "val_acc": sel.val_acc,
                "val_acc_zero_shot": percent(correct(clip_val, task.val.labels), self.n_val),
                "grid": {"beta": [betas[0], betas[-1], len(betas)],
                         "alpha": [alphas[0], alphas[-1], len(alphas)]},
                "val_selection": sel.trace(keep_scores=False)}

    def fitted(self, keys: torch.Tensor, info: dict) -> Fitted:
        weights, values, scale = self.weights, self.values, self.scale
        alpha, beta, dev = info["alpha"], info["beta"], self.task.device

        def logits_fn(features: torch.Tensor) -> torch.Tensor:
            f = normalize(features.to(dev).float())
            return tip_logits(f, weights, keys, values, alpha, beta, scale).to(features.device)

        info = {**info, "logit_scale": scale, "cache_size": int(keys.shape[0]),
                "cache_views": self.n_cache}
        return Fitted(logits_fn, info)


@METHODS.register("tip_adapter", display_name="Tip-Adapter", order=40, family="cache model",
                  views=TIP_VIEWS,
                  description="training-free cache model of the few-shot features, alpha/beta "
                              "on val (Zhang et al. 2022)")
def fit_tip_adapter(task: Task) -> Fitted:
    setup = _Setup(task, "tip_adapter", 0)
    return setup.fitted(setup.keys, setup.search(setup.keys))


@METHODS.register("tip_adapter_f", display_name="Tip-Adapter-F", order=41,
                  family="cache model", views=TIP_VIEWS,
                  description="Tip-Adapter with fine-tuned cache keys (AdamW, last epoch), "
                              "alpha/beta on val (Zhang et al. 2022)")
def fit_tip_adapter_f(task: Task) -> Fitted:
    cfg = task.config
    opt = OptimConfig.from_config(cfg)
    n_cache = int(cfg["cache_views"])
    setup = _Setup(task, "tip_adapter_f", n_cache + opt.epochs)
    keys = torch.nn.Parameter(setup.keys.clone())
    alpha0, beta0 = float(cfg["init_alpha"]), float(cfg["init_beta"])
    weights, values, scale, views = setup.weights, setup.values, setup.scale, setup.views

    def step(x, y, scale_loss):
        f = normalize(x)
        logits = scale * f @ weights.T + alpha0 * cache_logits(f, keys, values, beta0)
        loss = F.cross_entropy(logits, y)
        scale_loss(loss).backward()
        return loss

    history = train(task, [keys], step, opt,
                    features_for_epoch=lambda e: views[n_cache + e])
    trained = keys.detach()
    info = setup.search(trained)
    info["train_loss_first_epoch"], info["train_loss_last_epoch"] = history[0], history[-1]
    info["epochs"] = opt.epochs
    return setup.fitted(trained, info)
