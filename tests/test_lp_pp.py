"""LP++: the blend against a sum written out, the data-driven start against numpy, one training
step against a hand-written gradient, val-only epoch selection, and that it learns."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.base.schema import ConfigError
from methods import METHODS
from methods.base import FeatureSplit
from methods.lp_pp import lpp_init, lpp_logits
from tests.test_coop import accuracy, blobs
from tests.test_tip_adapter import tip_task


def _norm(a):
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def test_blend_equals_a_sum_written_out():
    g = torch.Generator().manual_seed(0)
    f = torch.nn.functional.normalize(torch.randn(3, 6, generator=g), dim=-1)
    W, T = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    b, alpha = torch.randn(4, generator=g), torch.tensor([0.5, 2.0, -1.0, 3.0])
    out = lpp_logits(f, W, b, alpha, T)
    for m in range(3):
        for c in range(4):
            ref = float(f[m] @ W[c]) + float(b[c]) + float(alpha[c]) * float(f[m] @ T[c])
            assert float(out[m, c]) == pytest.approx(ref, rel=1e-5, abs=1e-5)


def test_init_matches_the_release_formulas_in_numpy():
    rng = np.random.default_rng(0)
    C, K, d = 3, 4, 8
    y = np.repeat(np.arange(C), K)
    x = _norm(rng.normal(size=(C * K, d)) + 2 * np.eye(C, d)[y])
    T = _norm(rng.normal(size=(C, d)))
    init = lpp_init(torch.tensor(x).float(), torch.tensor(y), torch.tensor(T).float(), C, 250.0,
                    torch.Generator().manual_seed(1))
    sums = np.stack([x[y == c].sum(0) for c in range(C)])
    np.testing.assert_allclose(init["W"].numpy(), sums, rtol=1e-5, atol=1e-6)
    own = np.mean([np.mean([x[i] @ T[c] for i in range(len(y)) if y[i] == c]) for c in range(C)])
    np.testing.assert_allclose(init["alpha"].numpy(), np.full(C, 250 * own), rtol=1e-4, atol=1e-5)
    assert init["lr_w"] == pytest.approx(4 * len(y) / np.linalg.eigvalsh(x.T @ x).max(), rel=1e-5)
    assert init["lr_alpha"] == pytest.approx(len(y) / (4 * ((x @ T.T) ** 2).sum(0).max()), rel=1e-5)
    assert float(init["b"].abs().max()) <= 1 / np.sqrt(d)


def test_one_epoch_is_one_sgd_step_on_the_cross_entropy(tiny_backbone):
    task = tip_task("lp_pp", tiny_backbone, n_views=1,
                    overrides={"epochs": 1, "select_epoch": "last"})
    fitted = METHODS.get("lp_pp")(task)
    x = torch.nn.functional.normalize(task.train_views.all()[0], dim=-1).double()
    y = task.train.labels
    T = tiny_backbone.class_weights(task.classnames, task.templates).double()
    init = lpp_init(x.float(), y, T.float(), 4, 250.0, torch.Generator().manual_seed(task.seed))
    W, b, a = init["W"].double(), init["b"].double(), init["alpha"].double()
    z = x @ W.T + b + a * (x @ T.T)
    p = torch.softmax(z, dim=1)
    G = (p - torch.nn.functional.one_hot(y, 4).double()) / len(y)  # d mean CE / d logits
    W1, b1 = W - init["lr_w"] * G.T @ x, b - init["lr_w"] * G.sum(0)  # momentum: first step = grad
    t = blobs(4, 5, x.shape[1], seed=3).features
    f = torch.nn.functional.normalize(t, dim=-1).double()
    ref = f @ W1.T + b1 + a * (f @ T.T)                                  # alpha moves at epoch 10
    torch.testing.assert_close(fitted.logits(t).double(), ref, rtol=1e-4, atol=1e-3)


def test_learns_and_beats_zero_shot(tiny_backbone):
    task = tip_task("lp_pp", tiny_backbone, n_views=1)
    fitted = METHODS.get("lp_pp")(task)
    test = blobs(4, 30, task.train.features.shape[1], seed=99)
    assert accuracy(fitted, test) > accuracy(METHODS.get("zero_shot")(task), test) + 0.25
    assert fitted.info["alpha_mean"] != pytest.approx(fitted.info["alpha_init"])  # alpha was updated


def test_epoch_is_chosen_on_val_only(tiny_backbone):
    over = {"epochs": 40}
    task = tip_task("lp_pp", tiny_backbone, n_views=1, overrides=over)
    fitted = METHODS.get("lp_pp")(task)
    assert 100 * accuracy(fitted, task.val) == pytest.approx(fitted.info["val_acc"])
    perm = torch.tensor([1, 2, 3, 0])[task.val.labels]
    other = METHODS.get("lp_pp")(tip_task("lp_pp", tiny_backbone, n_views=1, overrides=over,
                                          val=FeatureSplit(task.val.features, perm)))
    assert (other.info["epoch"], other.info["val_acc"]) != (fitted.info["epoch"], fitted.info["val_acc"])


def test_no_val_set_is_one_clear_config_error(tiny_backbone):
    empty = FeatureSplit(torch.zeros(0, 8), torch.zeros(0, dtype=torch.long))
    task = tip_task("lp_pp", tiny_backbone, n_views=1, val=empty)
    with pytest.raises(ConfigError, match="select_epoch: last"):
        METHODS.get("lp_pp")(task)
