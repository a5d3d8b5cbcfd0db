"""Linear probe (PROTOCOL §5): L2-regularized multinomial logistic regression on raw features.

The objective is scikit-learn's ``LogisticRegression(penalty="l2", C=C)``::

    mean_i CE(x_i W + b, y_i) + ||W||^2 / (2 C n)      (bias not penalized)

minimized here by full-batch L-BFGS in torch (float64, warm-started along the C search), which
reaches the same optimum as scikit-learn's lbfgs solver (tests/test_linear_probe.py compares
them); ``solver: sklearn`` runs scikit-learn itself. C is chosen on the few-shot val set as in
CoOp's ``lpclip``: the coarse grid 1e6 ... 1e-6, then 8 bisection steps in log space between
best/10 and best*10, keeping the better end each step.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from methods import METHODS
from methods.base import Fitted, Task


class TorchLogReg:
    """Multinomial logistic regression, sklearn's objective, torch L-BFGS (strong Wolfe)."""

    def __init__(self, n_features: int, n_classes: int, device, dtype=torch.float64):
        self.W = torch.zeros(n_features, n_classes, device=device, dtype=dtype, requires_grad=True)
        self.b = torch.zeros(n_classes, device=device, dtype=dtype, requires_grad=True)
        self.dtype = dtype

    def fit(self, X: torch.Tensor, y: torch.Tensor, C: float, max_iter: int = 1000,
            tol: float = 1e-6) -> "TorchLogReg":
        X = X.to(self.W.device, self.dtype)
        y = y.to(self.W.device)
        n = X.shape[0]
        reg = 1.0 / (2.0 * C * n)
        opt = torch.optim.LBFGS([self.W, self.b], lr=1.0, max_iter=max_iter, history_size=10,
                                tolerance_grad=tol, tolerance_change=1e-12,
                                line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(X @ self.W + self.b, y) + reg * (self.W ** 2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        return self

    @torch.no_grad()
    def decision(self, X: torch.Tensor) -> torch.Tensor:
        return X.to(self.W.device, self.dtype) @ self.W + self.b

    def predict(self, X: torch.Tensor) -> torch.Tensor:
        return self.decision(X).argmax(dim=1)


class SklearnLogReg:
    def __init__(self, n_features: int, n_classes: int, device, **_):
        self.device = device
        self.clf = None

    def fit(self, X, y, C, max_iter=1000, tol=1e-4):
        from sklearn.linear_model import LogisticRegression

        self.clf = LogisticRegression(C=C, max_iter=max_iter, tol=tol, solver="lbfgs")
        self.clf.fit(X.cpu().double().numpy(), y.cpu().numpy())
        return self

    def decision(self, X):
        scores = self.clf.decision_function(X.cpu().double().numpy())
        if scores.ndim == 1:  # binary problem: sklearn returns one column
            scores = np.stack([-scores, scores], axis=1)
        return torch.from_numpy(scores).to(self.device)

    def predict(self, X):
        return self.decision(X).argmax(dim=1)


SOLVERS = {"torch": TorchLogReg, "sklearn": SklearnLogReg}


def _accuracy(model, X, y) -> float:
    return (model.predict(X).cpu() == y.cpu()).double().mean().item()


def search_C(train_X, train_y, val_X, val_y, n_classes, cfg, device):
    """CoOp lpclip's search. Returns (best C, fitted model, trace of (C, val acc))."""
    solver = SOLVERS[cfg.get("solver", "torch")]
    max_iter = int(cfg.get("max_iter", 1000))
    tol = float(cfg.get("tol", 1e-6 if cfg.get("solver", "torch") == "torch" else 1e-4))
    trace: list[tuple[float, float]] = []
    warm = None

    def fit(C):
        nonlocal warm
        model = solver(train_X.shape[1], n_classes, device)
        if warm is not None and isinstance(model, TorchLogReg):
            with torch.no_grad():
                model.W.copy_(warm.W)
                model.b.copy_(warm.b)
        model.fit(train_X, train_y, C, max_iter=max_iter, tol=tol)
        if isinstance(model, TorchLogReg):
            warm = model
        acc = _accuracy(model, val_X, val_y)
        trace.append((float(C), acc))
        return model, acc

    grid = [float(c) for c in cfg.get("c_grid", [1e6, 1e4, 1e2, 1, 1e-2, 1e-4, 1e-6])]
    # Warm starts work best from strong to weak regularization, so fit the grid in increasing C
    # but choose exactly as lpclip does (first best in the listed order).
    accs = {}
    for C in sorted(grid):
        accs[C] = fit(C)[1]
    best = grid[int(np.argmax([accs[c] for c in grid]))]
    left, right = best / 10.0, best * 10.0
    final_C, final_model = None, None
    for _ in range(int(cfg.get("bisection_steps", 8))):
        m_left, acc_left = fit(left)
        m_right, acc_right = fit(right)
        mid = 10 ** (0.5 * (math.log10(left) + math.log10(right)))
        if acc_left < acc_right:
            final_C, final_model = right, m_right
            left = mid
        else:
            final_C, final_model = left, m_left
            right = mid
    if final_model is None:  # bisection_steps = 0: take the grid's best
        final_C = best
        final_model = fit(best)[0]
    return final_C, final_model, trace


@METHODS.register("linear_probe", display_name="Linear probe", order=10,
                  description="logistic regression on frozen image features, C on val (PROTOCOL §5)")
def linear_probe(task: Task) -> Fitted:
    cfg = task.config
    device = task.device
    C, model, trace = search_C(task.train.features, task.train.labels, task.val.features,
                               task.val.labels, task.num_classes, cfg, device)

    def logits(features):
        return model.decision(features).float()

    return Fitted(logits, {"C": C, "val_acc": round(100 * dict(trace)[C], 4),
                           "c_trace": [[c, round(100 * a, 4)] for c, a in trace]})
