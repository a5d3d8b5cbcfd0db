"""GDA: the classifier against a direct numpy computation, the blend, and val-only selection."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from methods import METHODS
from methods.base import FeatureSplit
from methods.gda import gda_classifier
from tests.test_coop import accuracy, blobs
from tests.test_tip_adapter import tip_task


def numpy_gda(x, y, C):
    d = x.shape[1]
    mus = np.stack([x[y == k].mean(0) for k in range(C)])
    c = x - mus[y]
    S = c.T @ c                                   # scatter = (n - 1) * sample covariance
    shrink = np.trace(S) / (len(x) - 1)
    P = d * np.linalg.pinv(S + shrink * np.eye(d))
    W = np.stack([P @ m for m in mus])
    b = np.log(1.0 / C) - 0.5 * np.array([m @ P @ m for m in mus])
    return W, b


def test_classifier_equals_numpy():
    rng = np.random.default_rng(0)
    C, d = 3, 6
    y = np.repeat(np.arange(C), 5)
    x = rng.normal(size=(len(y), d)) + 2 * np.eye(C, d)[y]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    W, b = gda_classifier(torch.tensor(x), torch.tensor(y), C)
    Wn, bn = numpy_gda(x, y, C)
    np.testing.assert_allclose(W.numpy(), Wn, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(b.numpy(), bn, rtol=1e-4, atol=1e-4)


def test_fit_blends_zero_shot_and_the_discriminant(tiny_backbone):
    task = tip_task("gda", tiny_backbone)
    fitted = METHODS.get("gda")(task)
    views = task.train_views.all()
    x = torch.nn.functional.normalize(views, dim=-1).reshape(-1, views.shape[-1])
    y = task.train.labels.repeat(views.shape[0])
    Wn, bn = numpy_gda(x.double().numpy(), y.numpy(), task.num_classes)
    text = tiny_backbone.class_weights(task.classnames, task.templates)
    t = blobs(4, 5, x.shape[1], seed=3).features
    f = torch.nn.functional.normalize(t, dim=-1)
    a = fitted.info["alpha"]
    ref = 100 * f @ text.T + a * (f @ torch.tensor(Wn).float().T + torch.tensor(bn).float())
    torch.testing.assert_close(fitted.logits(t), ref, rtol=1e-4, atol=1e-3)
    test = blobs(4, 30, x.shape[1], seed=99)
    assert accuracy(fitted, test) > accuracy(METHODS.get("zero_shot")(task), test) + 0.25


def test_alpha_is_chosen_on_val_only(tiny_backbone):
    task = tip_task("gda", tiny_backbone)
    fitted = METHODS.get("gda")(task)
    assert 100 * accuracy(fitted, task.val) == pytest.approx(fitted.info["val_acc"])
    scores = dict(fitted.info["alpha_search"])
    assert scores[fitted.info["alpha"]] == max(scores.values())
    perm = torch.tensor([1, 2, 3, 0])[task.val.labels]
    other = METHODS.get("gda")(tip_task("gda", tiny_backbone,
                                        val=FeatureSplit(task.val.features, perm)))
    assert other.info["alpha_search"] != fitted.info["alpha_search"]
    assert other.info["alpha"] != fitted.info["alpha"]


def test_fp32_variant_solves_in_float32_as_released(tiny_backbone):
    """The release (main_few_shots.py) computes the means, the scatter and the pseudo-inverse in
    float32; bench's default in float64. Both are the numpy formula, up to their rounding."""
    from bench.config import MethodSpec, resolve_method_config

    rng = np.random.default_rng(1)
    C, d = 4, 16
    y = np.repeat(np.arange(C), 6)
    x = rng.normal(size=(len(y), d)) + 2 * np.eye(C, d)[y]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    Wn, bn = numpy_gda(x, y, C)
    xt = torch.tensor(x, dtype=torch.float32)
    W64, b64 = gda_classifier(xt, torch.tensor(y), C)
    W32, b32 = gda_classifier(xt, torch.tensor(y), C, torch.float32)
    err64, err32 = np.abs(W64.numpy() - Wn).max(), np.abs(W32.numpy() - Wn).max()
    assert err64 < 1e-5 and err64 < err32 < 1e-2  # float32 rounding shows, and stays small
    np.testing.assert_allclose(b32.numpy(), bn, rtol=1e-3, atol=1e-3)
    # the variant, through the method
    assert resolve_method_config(MethodSpec("gda", "fp32"), "dtd", 4)[1]["solve_dtype"] == "float32"
    fp32 = METHODS.get("gda")(tip_task("gda", tiny_backbone, overrides={"solve_dtype": "float32"}))
    default = METHODS.get("gda")(tip_task("gda", tiny_backbone))
    assert (fp32.info["solve_dtype"], default.info["solve_dtype"]) == ("float32", "float64")
    t = blobs(4, 5, tiny_backbone.model.text_projection.shape[1], seed=3).features
    if fp32.info["alpha"] == default.info["alpha"]:
        torch.testing.assert_close(fp32.logits(t), default.logits(t), rtol=1e-3, atol=1e-2)
