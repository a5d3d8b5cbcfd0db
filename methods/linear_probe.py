"""Linear probe (PROTOCOL §5): L2-regularized multinomial logistic regression on raw features.

The objective is scikit-learn's ``LogisticRegression(penalty="l2", C=C)``::

    mean_i CE(x_i W + b, y_i) + ||W||^2 / (2 C n)      (bias not penalized)

minimized with torch's L-BFGS (analytic loss and gradient) under scikit-learn's stopping rule
(max |gradient| <= tol), warm-started along the C search; it reaches the same optimum as scikit-learn's lbfgs
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
    gradient) and torch's L-BFGS drives the iterations; it stops on scikit-learn's main rule
    (max |gradient| <= tol, which is L-BFGS-B's pgtol without bounds). Speed over scikit-learn comes
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
        X = X.to(self.device, self.dtype)
        n, d = X.shape
        k = self.W.shape[1]
        y = y.to(self.device).long()
        rows = torch.arange(n, device=self.device)
        reg = 1.0 / (C * n)
        w = torch.cat([self.W.reshape(-1), self.b]).detach().clone()
        w.grad = torch.zeros_like(w)

        @torch.no_grad()
        def closure():
            W, b = w[:d * k].view(d, k), w[d * k:]
            z = torch.addmm(b, X, W)
            lse = torch.logsumexp(z, dim=1)
            loss = (lse.sum() - z[rows, y].sum()) / n + 0.5 * reg * W.pow(2).sum()
            r = torch.exp_(z.sub_(lse[:, None]))  # softmax, in place
            r[rows, y] -= 1.0
            r.div_(n)
            gW = w.grad[:d * k].view(d, k)
            torch.addmm(W, X.T, r, beta=reg, out=gW)
            torch.sum(r, dim=0, out=w.grad[d * k:])
            return loss

        # L-BFGS (history 10, strong-Wolfe line search) entirely in torch: scipy's L-BFGS-B spends
        # most of its time in its bound-handling bookkeeping at this size (100k+ variables).
        # Stops as scikit-learn's lbfgs does: max |gradient| <= tol (L-BFGS-B's pgtol with no
        # bounds), or no more progress, or max_iter iterations.
        opt = torch.optim.LBFGS([w], lr=1, max_iter=max_iter, max_eval=max_iter * 20,
                                tolerance_grad=tol, tolerance_change=64 * float(np.finfo(float).eps),
                                history_size=10, line_search_fn="strong_wolfe")
        opt.step(closure)
        state = opt.state[opt._params[0]]
        self.n_iter = int(state.get("n_iter", 0))
        w = w.detach()
        self.W, self.b = w[:d * k].view(d, k).clone(), w[d * k:].clone()
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

    done: dict[float, tuple] = {}

    def fit(C):
        if C in done:  # bisection revisits the end it kept: same C, same model, same accuracy
            trace.append((float(C), done[C][1]))
            return done[C]
        model = solver(train_X.shape[1], n_classes, device)
        if solved and isinstance(model, TorchLogReg):  # warm start from the nearest C solved
            near = min(solved, key=lambda c: abs(math.log10(c) - math.log10(C)))
            model.W, model.b = solved[near].W.clone(), solved[near].b.clone()
        model.fit(train_X, train_y, C, max_iter=max_iter, tol=tol)
        if isinstance(model, TorchLogReg):
            solved[C] = model
        acc = _accuracy(model, val_X, val_y)
        trace.append((float(C), acc))
        done[C] = (model, acc)
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
