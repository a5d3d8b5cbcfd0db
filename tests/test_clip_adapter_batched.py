"""The ratio search's candidates trained side by side (StackedHeads) give what one fit per
candidate gives, within float rounding: same losses, same weights, same logits, same choice."""

from __future__ import annotations

import itertools

import pytest
import torch

from methods import METHODS
from methods.clip_adapter import (_fit_candidates, _fit_one, _logit_scale, _ratio_candidates)
from tests.test_coop import make_task

FAST = {"epochs": 5, "lr": 0.05, "batch_size": 8}


@pytest.mark.parametrize("method,keys", [("clip_adapter_visual", ("alpha",)),
                                         ("clip_adapter_text", ("beta",)),
                                         ("clip_adapter_both", ("alpha", "beta"))])
def test_side_by_side_equals_one_by_one(tiny_backbone, method, keys):
    overrides = {**FAST, **{k: "search" for k in keys}, "ratio_grid": [0.0, 0.3, 0.9]}
    task = make_task(method, tiny_backbone, overrides=overrides, shots=4, n_classes=5)
    cfg = task.config
    grid = cfg["ratio_grid"]
    alphas = _ratio_candidates(cfg["alpha"], grid, "alpha") if "alpha" in keys else [None]
    betas = _ratio_candidates(cfg["beta"], grid, "beta") if "beta" in keys else [None]
    candidates = list(itertools.product(alphas, betas))
    weights = tiny_backbone.class_weights(task.classnames, task.templates).float()
    scale = _logit_scale(cfg, task)
    batched = _fit_candidates(task, cfg, weights, candidates, scale)
    x = task.val.features.float()
    for (alpha, beta), (head, history) in zip(candidates, batched):
        ref, ref_history = _fit_one(task, cfg, weights, alpha, beta, scale)
        assert history == pytest.approx(ref_history, rel=1e-5, abs=1e-6)
        for name, p in ref.state_dict().items():
            assert torch.allclose(head.state_dict()[name], p, atol=1e-5), name
        with torch.no_grad():
            assert torch.allclose(head(x), ref(x), atol=1e-4)
    # the candidates really differ (a search that trained one model K times would pass above
    # only if every ratio gave the same model)
    with torch.no_grad():
        assert not torch.allclose(batched[0][0](x), batched[-1][0](x))


def test_search_picks_the_same_candidate_as_one_by_one(tiny_backbone):
    overrides = {**FAST, "alpha": "search", "ratio_grid": [0.0, 0.2, 0.5, 0.9]}
    task = make_task("clip_adapter_visual", tiny_backbone, overrides=overrides, shots=4,
                     n_classes=5)
    fitted = METHODS.get("clip_adapter_visual")(task)
    log = fitted.info["ratio_search"]
    cfg = task.config
    weights = tiny_backbone.class_weights(task.classnames, task.templates).float()
    accs = []
    for entry in log:
        ref, _ = _fit_one(task, cfg, weights, entry["alpha"], None, _logit_scale(cfg, task))
        with torch.no_grad():
            acc = (ref(task.val.features.float()).argmax(1) == task.val.labels).float().mean()
        accs.append(float(acc) * 100)
        assert entry["val_acc"] == pytest.approx(accs[-1], abs=1e-4)
    assert fitted.info["alpha"] == log[accs.index(max(accs))]["alpha"]
