"""Linear probe (PROTOCOL §5): L2-regularized multinomial logistic regression on raw features.

The objective is scikit-learn's ``LogisticRegression(penalty="l2", C=C)``::

    mean_i CE(x_i W + b, y_i) + ||W||^2 / (2 C n)      (bias not penalized)

minimized with the loss and gradient in torch and scipy's L-BFGS-B under scikit-learn's stopping
rule, warm-started along the C search; it reaches the same optimum as scikit-learn's lbfgs
solver (tests/test_linear_probe.py compares them); ``solver: sklearn`` runs scikit-learn itself. C is chosen on the few-shot val set as in
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
    """Multinomial logistic regression with scikit-learn's objective.

    The loss and its gradient are computed in torch (float64, on the task's device, analytic
    gradient); scipy's L-BFGS-B drives the iterations with scikit-learn's own settings (gtol =
    tol, ftol = 64 eps, maxls 50), so both stop by the same rule. Speed over scikit-learn comes
    from warm starts along the C search and from running the matmuls on the GPU when there is one.
    """

    def __init__(self, n_features: int, n_classes: int, device, dtype=torch.float64):
        self.device = torch.device(device)
        self.dtype = dtype
        self.W = torch.zeros(n_features, n_classes, device=self.device, dtype=dtype)
        self.b = torch.zeros(n_classes, device=self.device, dtype=dtype)
        self.n_iter = 0

    def fit(self, X: torch.Tensor, y: torch.Tensor, C: float, max_iter: int = 1000,
            tol: float = 1e-4) -> "TorchLogReg":
        from scipy.optimize import minimize

        X = X.to(self.device, self.dtype)
        n, d = X.shape
        k = self.W.shape[1]
        Y = torch.nn.functional.one_hot(y.to(self.device).long(), k).to(self.dtype)
        reg = 1.0 / (C * n)

        def loss_grad(w: np.ndarray):
            wt = torch.from_numpy(w).to(self.device)
            W, b = wt[:d * k].view(d, k), wt[d * k:]
            z = X @ W + b
            logp = z - torch.logsumexp(z, dim=1, keepdim=True)
            loss = -(Y * logp).sum() / n + 0.5 * reg * (W * W).sum()
            r = (logp.exp() - Y) / n
            grad = torch.cat([(X.T @ r + reg * W).reshape(-1), r.sum(0)])
            return loss.item(), grad.cpu().numpy()

        w0 = torch.cat([self.W.reshape(-1), self.b]).cpu().numpy()
        res = minimize(loss_grad, w0, method="L-BFGS-B", jac=True,
                       options={"maxiter": max_iter, "maxls": 50, "gtol": tol,
                                "ftol": 64 * np.finfo(float).eps})
        w = torch.from_numpy(res.x).to(self.device, self.dtype)
        self.W, self.b = w[:d * k].view(d, k).clone(), w[d * k:].clone()
        self.n_iter = int(res.nit)
        return self

    @torch.no_grad()
    def decision(self, X: torch.Tensor) -> torch.Tensor:
        return X.to(self.device, self.dtype) @ self.W + self.b

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
    tol = float(cfg.get("tol", 1e-4))
    trace: list[tuple[float, float]] = []
    solved: dict[float, TorchLogReg] = {}

    def fit(C):
        model = solver(train_X.shape[1], n_classes, device)
        if solved and isinstance(model, TorchLogReg):  # warm start from the nearest C solved
            near = min(solved, key=lambda c: abs(math.log10(c) - math.log10(C)))
            model.W, model.b = solved[near].W.clone(), solved[near].b.clone()
        model.fit(train_X, train_y, C, max_iter=max_iter, tol=tol)
        if isinstance(model, TorchLogReg):
            solved[C] = model
        acc = _accuracy(model, val_X, val_y)
        trace.append((float(C), acc))
        return model, acc

    grid = [float(c) for c in cfg.get("c_grid", [1e6, 1e4, 1e2, 1, 1e-2, 1e-4, 1e-6])]
    # Warm starts work best from strong to weak regularization, so fit the grid in increasing C,
    # but choose exactly as lpclip does (the first best in the listed order).
    fitted = {C: fit(C) for C in sorted(grid)}
    best = grid[int(np.argmax([fitted[c][1] for c in grid]))]
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
        final_C, final_model = best, fitted[best][0]
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
