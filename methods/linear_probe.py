"""Linear probe (docs/protocol.md §5): L2-regularized multinomial logistic regression on raw features.

The objective is scikit-learn's ``LogisticRegression(penalty="l2", C=C)``::

    mean_i CE(x_i W + b, y_i) + ||W||^2 / (2 C n)      (bias not penalized)

It is solved (``TorchLogReg``) in an exactly equivalent, well-conditioned parametrization computed
once per C search (``Basis``): features centered (exact, the bias is free), rotated to the
eigenbasis of their scatter and reduced to its rank (exact: the optimum lies in the row space),
then scaled per direction by h^-1/2, h = lambda/k + 1/(C n); L-BFGS in float32, then a float64
polish (during the C search a fit whose float32 phase meets the stopping rule with a margin,
gradient <= tol/2, skips the polish: it serves only to score a val accuracy, and the chosen C's
fit is polished at the end; any other fit is checked, and continued where needed, in float64). It
stops on scikit-learn's rule on the ORIGINAL gradient (max |gradient| <= tol) and also
requires the preconditioned gradient <= tol, so it never stops farther from the optimum than that
rule; tests/test_linear_probe.py checks it reaches scikit-learn's and the plain solver's optimum.
``precondition: false`` is the plain torch L-BFGS on (W, b); ``solver: sklearn`` runs
scikit-learn itself. C is chosen on the few-shot val set as in CoOp's ``lpclip``: the coarse grid
1e6 ... 1e-6, then 8 bisection steps in log space between best/10 and best*10, keeping the better
end each step; fits are warm-started from the nearest C solved.

Note: at tol 1e-4 very small C (W ~ 0) and very large C (separable data) stop at points that
depend on the solver, so val accuracy at those C can differ from scikit-learn's and a tie can
resolve to another C (100 classes synthetic: 1e-5 vs 1e-4, test accuracy -0.10 points).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from bench.base.schema import ConfigError
from methods import METHODS
from methods._selection import require_val, select, trace
from methods.base import Fitted, Task


class Basis:
    """Exact reparametrization of the training features, shared by every fit of a C search.

    The bias is unpenalized, so centering is exact: ``x W + b = (x - mu) W + (b + mu W)``. With
    ``Xc = X - mu = U S V^T`` (thin, rank r), the optimal W lies in the span of V (representer
    theorem: the loss sees W only through Xc W, and any component outside span(V) only adds to the
    penalty), so W = V Wr and the problem is solved on the r-dim features ``Xc V = U S``.
    """

    def __init__(self, X: torch.Tensor, rel_eps: float = 1e-10):
        X = X.double()
        n, d = X.shape
        self.mu = X.mean(dim=0)
        Xc = X - self.mu
        if n >= d:  # eigendecomposition of the d x d scatter
            lam, V = torch.linalg.eigh(Xc.T @ Xc)
            keep = lam > rel_eps * lam.max().clamp_min(1e-300)
            self.V = V[:, keep]
            self.F = Xc @ self.V
            self.lam = lam[keep] / n
        else:  # n x n Gram matrix, then V = Xc^T U / s
            lam, U = torch.linalg.eigh(Xc @ Xc.T)
            keep = lam > rel_eps * lam.max().clamp_min(1e-300)
            lam, U = lam[keep], U[:, keep]
            s = lam.sqrt()
            self.F = U * s          # = Xc V
            self.V = (Xc.T @ U) / s
            self.lam = lam / n      # eigenvalues of Xc^T Xc / n
        self.n = n


def _lbfgs(fg, theta, max_iter, check, start=None, history=10,
           ftol=64 * 2.220446049250313e-16, c1=1e-4):
    """Minimize fg (returns loss, grad) from theta; stops when check(grad, theta) is True,
    on no progress (relative loss change <= ftol) or after max_iter iterations. ``start``:
    (loss, grad) at theta when already known. Returns (theta, iterations, converged, (f, g))."""
    f, g = start if start is not None else fg(theta)
    S, Y, R = [], [], []
    it = 0
    if check(g, theta):
        return theta, 0, True, (f, g)
    while it < max_iter:
        # two-loop recursion
        q = g.clone()
        al = []
        for s, y, rho in zip(reversed(S), reversed(Y), reversed(R)):
            a = rho * torch.dot(s, q)
            q.add_(y, alpha=-a)
            al.append(a)
        if S:
            q.mul_(torch.dot(S[-1], Y[-1]) / torch.dot(Y[-1], Y[-1]))
        for (s, y, rho), a in zip(zip(S, Y, R), reversed(al)):
            bq = rho * torch.dot(y, q)
            q.add_(s, alpha=a - bq)
        p = -q
        gtp = torch.dot(g, p)
        if gtp >= 0:  # not a descent direction: reset
            S, Y, R = [], [], []
            p = -g
            gtp = torch.dot(g, p)
        step = 1.0
        for _ in range(40):
            t_new = theta + step * p
            f_new, g_new = fg(t_new)
            if f_new <= f + c1 * step * gtp:
                break
            step *= 0.5 if _ < 2 else 0.1
        else:
            return theta, it, False, (f, g)
        it += 1
        s_, y_ = t_new - theta, g_new - g
        sy = torch.dot(s_, y_)
        if sy > 1e-10 * torch.dot(y_, y_):
            S.append(s_); Y.append(y_); R.append(1.0 / sy)
            if len(S) > history:
                S.pop(0); Y.pop(0); R.pop(0)
        df = f - f_new
        theta, f, g = t_new, f_new, g_new
        if check(g, theta):
            return theta, it, True, (f, g)
        if abs(df) <= ftol * max(abs(f), abs(f_new), 1.0):
            return theta, it, False, (f, g)
    return theta, it, False, (f, g)



class _Preconditioned:
    """One C's problem in :class:`Basis` ``B``, in the variables L-BFGS runs on.

    theta = (Z, beta), flattened: Wr = Z / hs with hs = sqrt(h), h = lambda/k + 1/(C n) (the
    diagonal curvature model in the eigenbasis, 1/k being the softmax curvature at uniform
    probabilities), and b' = beta * sb with sb = sqrt(k); there the Hessian is close to the
    identity. Loss and gradient are analytic, with the matmuls in the phase's dtype.
    """

    def __init__(self, B: Basis, C: float, shape: tuple[int, int], k: int):
        self.B, self.k = B, k
        self.n, self.d = shape
        self.r = B.V.shape[1]
        reg = 1.0 / (C * self.n)
        c = 1.0 / k                        # softmax curvature at uniform probabilities
        h = c * B.lam + reg                # diagonal curvature model in the eigenbasis
        self.hs = h.sqrt()
        self.pen = (reg / h)[:, None]      # penalty weights of Z (float64)
        self.sb = 1.0 / math.sqrt(c)

    def split(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(Z, beta) views of theta."""
        rk = self.r * self.k
        return theta[:rk].view(self.r, self.k), theta[rk:]

    def to_theta(self, Wr: torch.Tensor, bp: torch.Tensor) -> torch.Tensor:
        return torch.cat([(Wr * self.hs[:, None]).reshape(-1), bp / self.sb])

    def from_theta(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(Wr, b') of theta, in the centered eigenbasis."""
        Z, beta = self.split(theta)
        return Z / self.hs[:, None], beta * self.sb

    def data_part(self, theta, f: float, g: torch.Tensor) -> tuple:
        """(data loss, F^T p, bias gradient) at theta, from its loss f and gradient g (float64):
        what a warm start in the same basis needs to skip its first pass over the features."""
        Z, _ = self.split(theta)
        gZ, gbeta = self.split(g)
        return (f - 0.5 * float((Z.pow(2) * self.pen).sum()),
                (gZ - Z * self.pen) * self.hs[:, None], gbeta / self.sb)

    def loss_and_grad_from_data(self, data_grad: tuple, theta: torch.Tensor) -> tuple:
        """(loss, gradient) at theta, given the data part of the solution theta comes from."""
        f_data, FtP, gb_data = data_grad
        Z0, _ = self.split(theta)
        gZ = FtP / self.hs[:, None] + Z0 * self.pen
        return (f_data + 0.5 * float((Z0.pow(2) * self.pen).sum()),
                torch.cat([gZ.reshape(-1), gb_data * self.sb]))

    def loss_and_grad(self, dtype, y: torch.Tensor):
        """theta -> (loss, gradient) with matmuls in ``dtype``, sums of the loss in float64."""
        n, r, k, sb = self.n, self.r, self.k, self.sb
        G = (self.B.F / self.hs).to(dtype)           # n x r preconditioned features
        ih = self.pen.to(dtype)
        rows = torch.arange(n, device=G.device)

        @torch.no_grad()
        def fg(th):
            Z, beta = th[:r * k].view(r, k), th[r * k:]
            z = torch.addmm(beta * sb, G, Z)
            lse = torch.logsumexp(z, dim=1)
            # sums in float64: in float32 the loss stops resolving the last decreases
            # (L-BFGS then stalls short of the gradient rule and needs the float64 phase)
            loss = ((lse.sum(dtype=torch.float64) - z[rows, y].sum(dtype=torch.float64)) / n
                    + 0.5 * (Z.pow(2) * ih).sum(dtype=torch.float64))
            p = torch.exp_(z.sub_(lse[:, None]))     # softmax, in place
            p[rows, y] -= 1.0
            p.div_(n)
            gZ = torch.addmm(Z * ih, G.T, p)
            return loss.item(), torch.cat([gZ.reshape(-1), p.sum(0) * sb])

        return fg


class _StoppingRule:
    """scikit-learn's rule on the ORIGINAL gradient (max |dF/dW|, |dF/db| <= tol), and the
    preconditioned gradient <= tol too. ``gmax``: the original gradient's max-norm at the last
    full check (inf before one)."""

    def __init__(self, P: _Preconditioned, dtype, tol: float):
        self.P, self.tol = P, tol
        self.hsd, self.Vd, self.mud = P.hs.to(dtype)[:, None], P.B.V.to(dtype), P.B.mu.to(dtype)
        self.sqdk = math.sqrt(P.d * P.k)
        self.mu_norm = P.B.mu.norm().item()
        self.gmax = math.inf

    @torch.no_grad()
    def __call__(self, g: torch.Tensor, theta: torch.Tensor) -> bool:
        tol, rk = self.tol, self.P.r * self.P.k
        if g.abs().max() > tol:                      # preconditioned gradient
            return False
        gWr = g[:rk].view(self.P.r, self.P.k) * self.hsd   # gradient in the centered eigenbasis
        gb = g[rk:] / self.P.sb
        if gb.abs().max() > tol:
            return False
        # ||grad W||_F >= ||gWr||_F - ||mu|| ||gb||: skip the d x r x k product when the
        # max-norm cannot be <= tol yet
        if gWr.norm().item() - self.mu_norm * gb.norm().item() > tol * self.sqdk:
            return False
        gW = torch.addr(self.Vd @ gWr, self.mud, gb)  # = X^T p + W/(C n), original variables
        self.gmax = float(torch.maximum(gW.abs().max(), gb.abs().max()))
        return self.gmax <= tol


class TorchLogReg:
    """Multinomial logistic regression with scikit-learn's objective, solved in a preconditioned basis.

    The loss and its analytic gradient are computed in torch (on the task's device). By default
    (``precondition=True``) the problem is solved in an exactly equivalent parametrization
    (:class:`Basis`: centered features, their eigenbasis, W = V diag(h^-1/2) Z with
    h = lambda/k + 1/(C n), the bias scaled by sqrt(k)), where the Hessian is close to the identity,
    by a small L-BFGS (history 10, Armijo backtracking from step 1); float32 matmuls first, then a
    float64 polish from that point. It stops on scikit-learn's rule evaluated on the ORIGINAL
    gradient (max |dF/dW|, |dF/db| <= tol, i.e. L-BFGS-B's pgtol with no bounds) AND on the
    preconditioned gradient (<= tol too), which makes it stop no earlier than the original rule and
    so no farther from the optimum; or on no progress (relative change <= 64 eps, sklearn's ftol),
    or after max_iter iterations in all. ``precondition=False`` is the previous solver: torch's
    L-BFGS (strong Wolfe) on the raw parametrization, float64.
    """

    def __init__(self, n_features: int, n_classes: int, device, dtype=torch.float64,
                 precondition: bool = True, fp32: bool = True):
        self.device = torch.device(device)
        self.dtype = dtype
        self.precondition = precondition
        self.fp32 = fp32
        self._W = torch.zeros(n_features, n_classes, device=self.device, dtype=dtype)
        self._b = torch.zeros(n_classes, device=self.device, dtype=dtype)
        self._basis = self._Wr = self._bp = None  # solution in a Basis, expanded to (W, b) lazily
        self._data_grad = None  # at the solution: (data loss, F^T p, bias gradient), float64
        self.n_classes = n_classes
        self.n_iter = 0
        # how the last fit ended: met the gradient rule (else: no progress or max_iter), and
        # whether its last phase ran in float64
        self.converged = self.polished = False

    @property
    def W(self) -> torch.Tensor:
        if self._W is None:
            self._W = (self._basis.V @ self._Wr).to(self.dtype)
        return self._W

    @W.setter
    def W(self, value):
        self._W, self._basis = value, None

    @property
    def b(self) -> torch.Tensor:
        if self._b is None:
            self._b = (self._bp - self._basis.mu @ self.W.double()).to(self.dtype)
        return self._b

    @b.setter
    def b(self, value):
        self._b, self._basis = value, None

    def warm_start_from(self, other: "TorchLogReg") -> None:
        """Start the next fit from another model's solution (kept in its basis when it has one)."""
        if other._basis is not None:
            self._basis, self._Wr, self._bp = other._basis, other._Wr.clone(), other._bp.clone()
            self._data_grad = other._data_grad
            self._W = self._b = None
        else:
            self.W, self.b = other.W.clone(), other.b.clone()

    def fit(self, X: torch.Tensor, y: torch.Tensor, C: float, max_iter: int = 1000,
            tol: float = 1e-4, basis: "Basis | None" = None, polish: bool = True) -> "TorchLogReg":
        """``polish=False``: when the float32 phase meets the stopping rule with a margin
        (gradient <= tol/2), skip the float64 pass (the C search's fits, whose only use is a val
        accuracy; the chosen one is then polished); otherwise the float64 phase checks the rule
        and goes on where needed."""
        if not self.precondition:
            return self._fit_plain(X, y, C, max_iter, tol)
        B = basis if basis is not None else Basis(X.to(self.device))
        P = _Preconditioned(B, C, X.shape, self.n_classes)
        y = y.to(self.device).long()
        theta = P.to_theta(*self._solution_in(B))
        # At a warm start in the same basis the logits are those of the solution it comes from,
        # so loss and gradient follow from its data part without a pass over the features.
        start = None
        if self._basis is B and self._data_grad is not None:
            start = P.loss_and_grad_from_data(self._data_grad, theta)
        self.n_iter = 0
        for dtype in ([torch.float32] if self.fp32 else []) + [torch.float64]:
            rule = _StoppingRule(P, dtype, tol)
            if start is not None:
                start = (start[0], start[1].to(dtype))
            theta, it, done, (f, g) = _lbfgs(P.loss_and_grad(dtype, y), theta.to(dtype),
                                             max_iter - self.n_iter, rule, start=start)
            start = None  # a later (float64) phase evaluates afresh
            self.n_iter += it
            theta, g = theta.double(), g.double()
            self.converged, self.polished = done, dtype == torch.float64
            # Met the rule in float32 with room to spare for float32's rounding of the gradient
            # (at large feature scales it reaches a few percent of tol): no float64 pass needed.
            if done and not polish and rule.gmax <= tol / 2:
                break
        self._data_grad = P.data_part(theta, f, g)
        self._basis, (self._Wr, self._bp) = B, P.from_theta(theta)
        self._W = self._b = None
        return self

    def _solution_in(self, B: Basis) -> tuple[torch.Tensor, torch.Tensor]:
        """The current solution (the warm start) as (Wr, b') in the centered eigenbasis of B."""
        if self._basis is B:
            return self._Wr, self._bp
        W0, b0 = self.W.to(self.device, torch.float64), self.b.to(self.device, torch.float64)
        return B.V.T @ W0, b0 + B.mu @ W0

    def _fit_plain(self, X, y, C, max_iter, tol):
        """The unpreconditioned solver: torch L-BFGS on (W, b), float64 (``precondition: false``)."""
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


def _correct(model, X, y, X_basis=None) -> int:
    """How many of the val rows X the model labels y."""
    if X_basis is not None and getattr(model, "_basis", None) is not None:
        # val features already in the model's basis: (X - mu) V Wr + b' (no d x r x k expansion)
        pred = torch.addmm(model._bp, X_basis, model._Wr).argmax(dim=1)
    else:
        pred = model.predict(X)
    return int((pred.cpu() == y.cpu()).sum())


def search_C(train_X, train_y, val_X, val_y, n_classes, cfg, device):
    """CoOp lpclip's search. Returns (best C, fitted model, trace of (C, val acc as a fraction))."""
    C, model, scored = _search_C(train_X, train_y, val_X, val_y, n_classes, cfg, device)
    return C, model, [(c, k / len(val_y)) for c, k in scored]


def _search_C(train_X, train_y, val_X, val_y, n_classes, cfg, device):
    """(best C, its model, [(C, correct val count)] in the order scored). Both stages keep the
    first of ties (``select``): the grid's first best in the listed order (lpclip's argmax), and
    at each bisection step the left end unless the right one is strictly better."""
    name = cfg.get("solver", "torch")
    if name not in SOLVERS:
        raise ConfigError(f"linear_probe: solver must be one of {', '.join(SOLVERS)}, not {name!r}")
    solver = SOLVERS[name]
    max_iter = int(cfg.get("max_iter", 1000))
    tol = float(cfg.get("tol", 1e-4))
    n_val = len(val_y)
    scored: list[tuple[float, int]] = []
    solved: dict[float, TorchLogReg] = {}
    opts = {}
    basis = val_basis = None
    if solver is TorchLogReg:
        opts = {"precondition": bool(cfg.get("precondition", True)),
                "fp32": bool(cfg.get("fp32_phase", True))}
        if opts["precondition"]:  # one decomposition of the training features for every C
            basis = Basis(train_X.to(device))
            val_basis = (val_X.to(device).double() - basis.mu) @ basis.V

    done: dict[float, tuple] = {}

    def fit(C):
        if C in done:  # bisection revisits the end it kept: same C, same model, same accuracy
            scored.append((float(C), done[C][1]))
            return done[C]
        model = solver(train_X.shape[1], n_classes, device, **opts)
        if solved and isinstance(model, TorchLogReg):  # warm start from the nearest C solved
            near = min(solved, key=lambda c: abs(math.log10(c) - math.log10(C)))
            model.warm_start_from(solved[near])
        kw = {"basis": basis, "polish": False} if basis is not None else {}
        model.fit(train_X, train_y, C, max_iter=max_iter, tol=tol, **kw)
        if isinstance(model, TorchLogReg):
            solved[C] = model
        k = _correct(model, val_X, val_y, val_basis)
        scored.append((float(C), k))
        done[C] = (model, k)
        return model, k

    grid = [float(c) for c in cfg.get("c_grid", [1e6, 1e4, 1e2, 1, 1e-2, 1e-4, 1e-6])]
    # Warm starts work best from strong to weak regularization, so fit the grid in increasing C,
    # but choose exactly as lpclip does (the first best in the listed order).
    fitted = {C: fit(C) for C in sorted(grid)}
    best = select("C", n_val, grid, [fitted[c][1] for c in grid], ties="first").value
    left, right = best / 10.0, best * 10.0
    final_C, final_model = None, None
    for _ in range(int(cfg.get("bisection_steps", 8))):
        m_left, k_left = fit(left)
        m_right, k_right = fit(right)
        mid = 10 ** (0.5 * (math.log10(left) + math.log10(right)))
        if select("C", n_val, ["left", "right"], [k_left, k_right], ties="first").value == "right":
            final_C, final_model = right, m_right
            left = mid
        else:
            final_C, final_model = left, m_left
            right = mid
    if final_model is None:  # bisection_steps = 0: take the grid's best
        final_C, final_model = best, fitted[best][0]
    if basis is not None and not (final_model.polished and final_model.converged):
        # the chosen fit gets the float64 polish (scikit-learn's stopping rule, docs/protocol.md §5), unless it already
        # met the rule in float64 during the search
        final_model.fit(train_X, train_y, final_C, max_iter=max_iter, tol=tol, basis=basis)
    return final_C, final_model, scored


@METHODS.register("linear_probe", display_name="Linear probe", order=10, family="linear probe",
                  description="logistic regression on frozen image features, C on val (docs/protocol.md §5)")
def linear_probe(task: Task) -> Fitted:
    cfg = task.config
    device = task.device
    n_val = require_val(task, "linear_probe", "the C search",
                        "use a split with val images (every few-shot sampler draws some)")
    C, model, scored = _search_C(task.train.features, task.train.labels, task.val.features,
                                 task.val.labels, task.num_classes, cfg, device)
    chosen = max(i for i, (c, _) in enumerate(scored) if c == C)

    def logits(features):
        return model.decision(features).float()

    return Fitted(logits, {"C": C, "val_acc": round(100 * (scored[chosen][1] / n_val), 4),
                           "c_trace": [[c, round(100 * (k / n_val), 4)] for c, k in scored],
                           "val_selection": trace(
                               "C", "first", n_val, [k for _, k in scored], chosen,
                               scored[chosen][1], search="grid, then bisection",
                               bisection_steps=int(cfg.get("bisection_steps", 8)))})
