"""The torch linear-probe solver reaches scikit-learn's optimum; the C search follows lpclip."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from methods.linear_probe import TorchLogReg, search_C


def blobs(n_classes=8, per_class=16, dim=32, noise=2.5, seed=0):
    g = np.random.default_rng(seed)
    centers = g.normal(0, 1, (n_classes, dim))
    X = np.concatenate([centers[c] + noise * g.normal(0, 1, (per_class, dim))
                        for c in range(n_classes)])
    y = np.repeat(np.arange(n_classes), per_class)
    return torch.tensor(X, dtype=torch.float32), torch.tensor(y)


@pytest.mark.parametrize("C", [1e-2, 1.0, 100.0])
def test_torch_solver_matches_sklearn_optimum(C):
    X, y = blobs(seed=1)
    Xt, yt = blobs(seed=1, per_class=50)  # same centers, new samples
    ours = TorchLogReg(X.shape[1], 8, "cpu").fit(X, y, C, tol=1e-9)
    ref = LogisticRegression(C=C, max_iter=5000, tol=1e-10).fit(X.double().numpy(), y.numpy())
    # Same optimum: the same objective value, weights equal up to the flatness of the optimum,
    # and the same test predictions.
    def objective(W, b):
        W, b = torch.as_tensor(W, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
        ce = torch.nn.functional.cross_entropy(X.double() @ W + b, y)
        return (ce + (W ** 2).sum() / (2 * C * len(y))).item()

    ours_obj = objective(ours.W.detach(), ours.b.detach())
    ref_obj = objective(ref.coef_.T, ref.intercept_)
    assert ours_obj == pytest.approx(ref_obj, rel=1e-4)
    np.testing.assert_allclose(ours.W.detach().numpy(), ref.coef_.T, atol=2e-2)
    pred_ref = ref.predict(Xt.double().numpy())
    assert (ours.predict(Xt).numpy() == pred_ref).mean() >= 0.995


def test_c_search_agrees_with_sklearn_solver():
    X, y = blobs(seed=2)
    Xv, yv = blobs(seed=2, per_class=4)
    Xt, yt = blobs(seed=2, per_class=60)
    accs = {}
    for solver in ("torch", "sklearn"):
        C, model, trace = search_C(X, y, Xv, yv, 8, {"solver": solver}, "cpu")
        accs[solver] = (model.predict(Xt).cpu() == yt).double().mean().item()
        assert len(trace) == 7 + 2 * 8  # coarse grid, then two fits per bisection step
    assert abs(accs["torch"] - accs["sklearn"]) <= 0.02


def test_c_search_uses_validation_labels():
    """Selection reads val: permuting val labels changes which C wins (or its val score)."""
    X, y = blobs(seed=3)
    Xv, yv = blobs(seed=3, per_class=4)
    _, _, trace = search_C(X, y, Xv, yv, 8, {"bisection_steps": 0}, "cpu")
    _, _, trace_perm = search_C(X, y, Xv, yv[torch.randperm(len(yv), generator=torch.Generator().manual_seed(0))],
                                8, {"bisection_steps": 0}, "cpu")
    assert [a for _, a in trace] != [a for _, a in trace_perm]
