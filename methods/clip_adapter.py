"""CLIP-Adapter (Gao et al., IJCV 2023, arXiv 2110.04544), docs/protocol.md §7: three registered methods.

A bottleneck adapter ``A(x) = ReLU(W2 ReLU(W1 x))`` (released code: two ReLUs, no biases,
``W1: d -> d/reduction``, ``W2: d/reduction -> d``; the paper's equation has only the first ReLU:
``final_relu: false``) is blended with the frozen feature by a residual ratio:

* ``clip_adapter_visual``: ``f' = alpha * A_v(f) + (1 - alpha) * f`` on the raw (un-normalized)
  image embedding ``f``, then normalized;
* ``clip_adapter_text``: ``W' = beta * A_t(W) + (1 - beta) * W`` on the zero-shot class
  embeddings ``W`` (the dataset's templates, ``task.backbone.class_weights``), then normalized;
* ``clip_adapter_both``: both.

Logits ``= s * cos(f', W')`` with ``s`` = the model's ``logit_scale`` (``logit_scale: model``,
100 for OpenAI weights, as the released code does) or a fixed number (``logit_scale: 100``, the
paper's wording). Cross-entropy; only the adapters train, in fp32, with the shared SGD loop
(methods/_training.py). With a ratio of 0 the method is exactly zero-shot CLIP.

A ratio set to ``search`` is chosen on the few-shot validation set (``task.val``) among
``ratio_grid``: one model is trained per candidate (same seed, same batches) and the one with
the best val accuracy is kept (ties: the earlier candidate). Test data never reaches a method.
"""

from __future__ import annotations

import copy
import itertools

import torch
import torch.nn as nn
import torch.nn.functional as F

from bench.base.schema import ConfigError
from methods import METHODS
from methods._selection import Selection, correct, require_val
from methods._training import OptimConfig, accuracy, seeded_rng, train
from methods.base import PER_EPOCH_VIEWS, Fitted, Task, normalize


class Adapter(nn.Module):
    """Linear(d -> d/r, no bias) -> ReLU -> Linear(d/r -> d, no bias) [-> ReLU]."""

    def __init__(self, dim: int, reduction: int, final_relu: bool):
        super().__init__()
        hidden = dim // reduction
        if hidden < 1:
            raise ConfigError(f"clip_adapter: reduction {reduction} leaves no hidden units "
                             f"for dimension {dim}")
        self.down = nn.Linear(dim, hidden, bias=False)
        self.up = nn.Linear(hidden, dim, bias=False)
        self.final_relu = final_relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.up(F.relu(self.down(x)))
        return F.relu(y) if self.final_relu else y


class AdapterClassifier(nn.Module):
    """The CLIP-Adapter head on frozen features: raw image features (N, D) -> logits (N, C)."""

    def __init__(self, class_weights: torch.Tensor, *, alpha: float | None, beta: float | None,
                 reduction: int, final_relu: bool, logit_scale: float):
        super().__init__()
        dim = class_weights.shape[1]
        self.register_buffer("class_weights", class_weights.detach().float().clone())
        self.alpha, self.beta = alpha, beta
        self.logit_scale = logit_scale
        # Created in this order (visual, then text) under the caller's seeded RNG.
        self.visual = Adapter(dim, reduction, final_relu) if alpha is not None else None
        self.text = Adapter(dim, reduction, final_relu) if beta is not None else None

    def forward(self, features: torch.Tensor,
                class_weights: torch.Tensor | None = None) -> torch.Tensor:
        """``class_weights``: other classes' zero-shot embeddings (the adapters are class
        agnostic, so the trained head scores classes it never saw: ``Fitted.for_classes``)."""
        f = features
        if self.visual is not None:
            f = self.alpha * self.visual(f) + (1.0 - self.alpha) * f
        w = self.class_weights if class_weights is None else class_weights
        if self.text is not None:
            w = self.beta * self.text(w) + (1.0 - self.beta) * w
        return self.logit_scale * normalize(f) @ normalize(w).t()


class StackedAdapter(nn.Module):
    """K adapters with the same shape in one module, for K candidates trained side by side:
    weights (K, d/r, d) and (K, d, d/r), applied with one batched matmul per layer. Candidate k
    computes what ``Adapter`` k would, in one kernel for all K."""

    def __init__(self, adapters: list[Adapter]):
        super().__init__()
        self.down = nn.Parameter(torch.stack([a.down.weight.detach() for a in adapters]))
        self.up = nn.Parameter(torch.stack([a.up.weight.detach() for a in adapters]))
        self.final_relu = adapters[0].final_relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (K, N, d) -> (K, N, d)
        y = torch.bmm(F.relu(torch.bmm(x, self.down.transpose(1, 2))), self.up.transpose(1, 2))
        return F.relu(y) if self.final_relu else y

    def unstack(self, k: int, template: Adapter) -> Adapter:
        one = copy.deepcopy(template)
        with torch.no_grad():
            one.down.weight.copy_(self.down[k])
            one.up.weight.copy_(self.up[k])
        return one


class StackedHeads(nn.Module):
    """The ratio search's K candidate heads as one model: every candidate starts from the same
    initial adapters (each one-by-one fit seeds its initialization with the task seed) and
    reads the same batches, so they train side by side: logits (K, N, C), the loss the sum of
    the K cross-entropies (each candidate's gradient is its own loss's)."""

    def __init__(self, head: AdapterClassifier, alphas: list, betas: list):
        super().__init__()
        self.head = head
        K = len(alphas)
        dev = head.class_weights.device
        self.alphas = torch.tensor([a or 0.0 for a in alphas], device=dev).view(K, 1, 1)
        self.betas = torch.tensor([b or 0.0 for b in betas], device=dev).view(K, 1, 1)
        self.visual = StackedAdapter([head.visual] * K) if head.visual is not None else None
        self.text = StackedAdapter([head.text] * K) if head.text is not None else None
        self.K = K

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        f = features.unsqueeze(0).expand(self.K, -1, -1)
        if self.visual is not None:
            f = self.alphas * self.visual(f) + (1.0 - self.alphas) * f
        w = self.head.class_weights.unsqueeze(0).expand(self.K, -1, -1)
        if self.text is not None:
            w = self.betas * self.text(w) + (1.0 - self.betas) * w
        return self.head.logit_scale * normalize(f) @ normalize(w).transpose(1, 2)

    def candidate(self, k: int, alpha, beta) -> AdapterClassifier:
        one = copy.deepcopy(self.head)
        one.alpha, one.beta = alpha, beta
        if self.visual is not None:
            one.visual = self.visual.unstack(k, self.head.visual)
        if self.text is not None:
            one.text = self.text.unstack(k, self.head.text)
        return one.eval()


def _ratio_candidates(value, grid: list[float], name: str) -> list[float]:
    if isinstance(value, str):
        if value != "search":
            raise ConfigError(f"clip_adapter: {name} must be a number in [0, 1] or 'search', "
                             f"not {value!r}")
        if not grid:
            raise ConfigError("clip_adapter: ratio_grid is empty")
        return [float(v) for v in grid]
    v = float(value)
    if not 0.0 <= v <= 1.0:
        raise ConfigError(f"clip_adapter: {name} must be in [0, 1], not {v}")
    return [v]


def _logit_scale(cfg: dict, task: Task) -> float:
    value = cfg["logit_scale"]
    if value == "model":
        return float(task.backbone.logit_scale)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"clip_adapter: logit_scale must be 'model' or a number, "
                         f"not {value!r}") from None


def _new_head(task: Task, cfg: dict, weights: torch.Tensor, alpha, beta,
              scale: float) -> AdapterClassifier:
    with seeded_rng(task.seed, task.device):
        head = AdapterClassifier(weights, alpha=alpha, beta=beta,
                                 reduction=int(cfg["reduction"]),
                                 final_relu=bool(cfg["final_relu"]), logit_scale=scale)
    return head.to(task.device).train()


def _fit_one(task: Task, cfg: dict, weights: torch.Tensor, alpha, beta,
             scale: float) -> tuple[AdapterClassifier, list[float]]:
    head = _new_head(task, cfg, weights, alpha, beta, scale)

    def step(x, y, scale_loss):
        loss = F.cross_entropy(head(x), y)
        scale_loss(loss).backward()
        return loss

    history = train(task, head.parameters(), step, OptimConfig.from_config(cfg))
    return head.eval(), history


def _fit_candidates(task: Task, cfg: dict, weights: torch.Tensor, candidates: list[tuple],
                    scale: float) -> list[tuple[AdapterClassifier, list[float]]]:
    """Every (alpha, beta) candidate of a ratio search trained side by side (StackedHeads):
    the same result as ``_fit_one`` per candidate within float rounding (batched matmuls sum
    in another order; tests/test_clip_adapter_batched.py), in one pass over the epochs."""
    alphas, betas = [a for a, _ in candidates], [b for _, b in candidates]
    stacked = StackedHeads(_new_head(task, cfg, weights, alphas[0], betas[0], scale),
                           alphas, betas)
    K = len(candidates)

    def step(x, y, scale_loss):
        logits = stacked(x)  # (K, B, C)
        losses = F.cross_entropy(logits.reshape(K * len(y), -1), y.repeat(K),
                                 reduction="none").view(K, -1).mean(dim=1)
        scale_loss(losses.sum()).backward()
        return losses

    params = [p for m in (stacked.visual, stacked.text) if m is not None for p in m.parameters()]
    history = train(task, params, step, OptimConfig.from_config(cfg))
    return [(stacked.candidate(k, a, b), [epoch[k] for epoch in history])
            for k, (a, b) in enumerate(candidates)]


def _search_ratios(task: Task, cfg: dict, weights: torch.Tensor, candidates: list[tuple],
                   scale: float) -> tuple[Selection, list[dict]]:
    """One head per (alpha, beta) candidate, the best on val kept (ties: the earlier one).
    Returns the selection (its value: head, loss history, alpha, beta) and the ratio_search log."""
    n_val = require_val(task, "clip_adapter", "a ratio set to 'search'",
                        "set alpha / beta to a number in [0, 1]")
    names = ", ".join(n for n, v in zip(("alpha", "beta"), candidates[0]) if v is not None)
    sel = Selection(names, n_val, ties="first")
    xv, yv = task.val.features.to(task.device).float(), task.val.labels
    if task.device.type == "cuda":  # launch-bound: one kernel a layer for all candidates
        fits = _fit_candidates(task, cfg, weights, candidates, scale)
    else:  # on a CPU fit thread, batching gains nothing (benchmarks/results/batched_fits.md)
        fits = [_fit_one(task, cfg, weights, a, b, scale) for a, b in candidates]
    log = []
    for (alpha, beta), (head, history) in zip(candidates, fits):
        with torch.no_grad():
            logits = head(xv)
        entry = {k: v for k, v in (("alpha", alpha), ("beta", beta)) if v is not None}
        log.append({**entry, "val_acc": accuracy(logits, yv)})  # the record's float percent
        sel.offer((head, history, alpha, beta), correct(logits, yv))
    return sel, log


def fit_adapter(task: Task, branches: str) -> Fitted:
    cfg = task.config
    grid = list(cfg.get("ratio_grid") or [])
    alphas = _ratio_candidates(cfg["alpha"], grid, "alpha") if "visual" in branches else [None]
    betas = _ratio_candidates(cfg["beta"], grid, "beta") if "text" in branches else [None]
    scale = _logit_scale(cfg, task)
    weights = task.backbone.class_weights(task.classnames, task.templates).to(task.device).float()

    candidates = list(itertools.product(alphas, betas))
    if len(candidates) == 1:
        head, history = _fit_one(task, cfg, weights, *candidates[0], scale)
        alpha, beta = candidates[0]
        sel = search_log = None
    else:
        sel, search_log = _search_ratios(task, cfg, weights, candidates, scale)
        head, history, alpha, beta = sel.value

    def logits_fn(features: torch.Tensor) -> torch.Tensor:
        return head(features.to(task.device).float()).to(features.device)

    def for_classes(classnames: list[str], templates: list[str], dataset: str):
        other = task.backbone.class_weights(classnames, templates).to(task.device).float()
        return lambda features: head(features.to(task.device).float(), other).to(features.device)

    info = {k: v for k, v in (("alpha", alpha), ("beta", beta)) if v is not None}
    info["logit_scale"] = scale
    if sel is not None:
        info["ratio_search"] = search_log
        info["val_selection"] = sel.trace()
    info["train_loss_first_epoch"], info["train_loss_last_epoch"] = history[0], history[-1]
    return Fitted(logits_fn, info, for_classes)


@METHODS.register("clip_adapter_visual", display_name="CLIP-Adapter (visual)", order=30,
                  family="adapter",
                  views=PER_EPOCH_VIEWS, new_classes=True, description="residual bottleneck adapter on the image feature "
                              "(Gao et al. 2023; the released variant)")
def fit_visual(task: Task) -> Fitted:
    return fit_adapter(task, "visual")


@METHODS.register("clip_adapter_text", display_name="CLIP-Adapter (text)", order=31,
                  family="adapter",
                  views=PER_EPOCH_VIEWS, new_classes=True, description="residual bottleneck adapter on the class text embeddings "
                              "(Gao et al. 2023; described, not released)")
def fit_text(task: Task) -> Fitted:
    return fit_adapter(task, "text")


@METHODS.register("clip_adapter_both", display_name="CLIP-Adapter (both)", order=32,
                  family="adapter",
                  views=PER_EPOCH_VIEWS, new_classes=True, description="residual bottleneck adapters on image and text features "
                              "(Gao et al. 2023; described, not released)")
def fit_both(task: Task) -> Fitted:
    return fit_adapter(task, "visual+text")
