"""CLIP-Adapter: each variant computes its equation, ratio 0 is zero-shot, only the adapters
train, the ratio search reads the few-shot val set only, and training learns."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from bench.base.errors import UsageError
from methods import METHODS
from methods.base import FeatureSplit, Task
from methods.clip_adapter import AdapterClassifier
from tests.test_coop import accuracy, blobs, make_task

FAST = {"epochs": 6, "lr": 0.05, "batch_size": 8}
BRANCHES = {"clip_adapter_visual": ("alpha",), "clip_adapter_text": ("beta",),
            "clip_adapter_both": ("alpha", "beta")}


def reference_logits(f, W, A_v, A_t, alpha, beta, scale, final_relu):
    """The paper's equations written out with plain tensors (no module code)."""
    def adapter(x, W1, W2):
        y = torch.relu(x @ W1.T) @ W2.T
        return torch.relu(y) if final_relu else y
    if A_v is not None:
        f = alpha * adapter(f, *A_v) + (1 - alpha) * f
    if A_t is not None:
        W = beta * adapter(W, *A_t) + (1 - beta) * W
    f = f / f.norm(dim=-1, keepdim=True)
    W = W / W.norm(dim=-1, keepdim=True)
    return scale * f @ W.T


@pytest.mark.parametrize("final_relu", [True, False])
@pytest.mark.parametrize("alpha,beta", [(0.3, None), (None, 0.7), (0.6, 0.4)])
def test_each_variant_computes_its_equation(alpha, beta, final_relu):
    g = torch.Generator().manual_seed(0)
    D, C = 16, 5
    W = F.normalize(torch.randn(C, D, generator=g), dim=-1)
    f = torch.randn(7, D, generator=g) * 3  # raw, un-normalized image features
    head = AdapterClassifier(W, alpha=alpha, beta=beta, reduction=4, final_relu=final_relu,
                             logit_scale=50.0)
    mats = {}
    for name in ("visual", "text"):
        module = getattr(head, name)
        if module is None:
            mats[name] = None
            continue
        W1, W2 = torch.randn(D // 4, D, generator=g), torch.randn(D, D // 4, generator=g)
        module.down.weight.data.copy_(W1)
        module.up.weight.data.copy_(W2)
        assert module.down.bias is None and module.up.bias is None
        mats[name] = (W1, W2)
    ref = reference_logits(f, W, mats["visual"], mats["text"], alpha, beta, 50.0, final_relu)
    torch.testing.assert_close(head(f), ref, rtol=1e-5, atol=1e-5)
    # the blend acts on the raw feature; a bias-free ReLU adapter is positively homogeneous
    # (A(c f) = c A(f), c > 0), so normalizing first gives the same logits (docs/methods.md)
    if alpha is not None:
        other = reference_logits(F.normalize(f, dim=-1), W, mats["visual"], mats["text"], alpha,
                                 beta, 50.0, final_relu)
        torch.testing.assert_close(head(f), other, rtol=1e-5, atol=1e-5)
    # other weights give other logits (the comparison can fail)
    for p in head.parameters():
        p.data.mul_(-1)
    assert not torch.allclose(head(f), ref, atol=1e-3)


@pytest.mark.parametrize("method", list(BRANCHES))
def test_ratio_zero_is_zero_shot(tiny_backbone, method):
    zeros = {r: 0.0 for r in BRANCHES[method]}
    task = make_task(method, tiny_backbone, overrides={**FAST, "epochs": 2, **zeros})
    fitted = METHODS.get(method)(task)
    zs = METHODS.get("zero_shot")(task)
    x = blobs(4, 5, 64, seed=3).features
    torch.testing.assert_close(fitted.logits(x), zs.logits(x), rtol=1e-5, atol=1e-5)
    # and with the default ratio (0.2) after training, it is not
    trained = METHODS.get(method)(make_task(method, tiny_backbone, overrides={**FAST, "epochs": 2}))
    assert not torch.allclose(trained.logits(x), zs.logits(x), atol=1e-3)


def test_logit_scale_option(tiny_backbone):
    x = blobs(4, 5, 64, seed=4).features
    run = lambda s: METHODS.get("clip_adapter_visual")(make_task(
        "clip_adapter_visual", tiny_backbone, overrides={**FAST, "epochs": 1, "alpha": 0.0,
                                                         "logit_scale": s}))
    model, hundred = run("model"), run(100)
    assert model.info["logit_scale"] == pytest.approx(tiny_backbone.logit_scale)
    torch.testing.assert_close(hundred.logits(x),
                               model.logits(x) * 100 / tiny_backbone.logit_scale, rtol=1e-5, atol=1e-4)


def test_only_adapter_parameters_receive_gradients(tiny_backbone):
    W = tiny_backbone.class_weights(["dog", "cat", "car"], ["a photo of a {}."])
    head = AdapterClassifier(W, alpha=0.5, beta=0.5, reduction=4, final_relu=True, logit_scale=10.0)
    names = {n for n, _ in head.named_parameters()}
    assert names == {"visual.down.weight", "visual.up.weight", "text.down.weight", "text.up.weight"}
    x = torch.randn(6, W.shape[1])
    F.cross_entropy(head(x), torch.tensor([0, 1, 2, 0, 1, 2])).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())
    assert not head.class_weights.requires_grad and x.grad is None
    assert not any(p.requires_grad for p in tiny_backbone.model.parameters())


def test_fit_leaves_the_backbone_untouched(tiny_backbone):
    before = {k: v.clone() for k, v in tiny_backbone.model.state_dict().items()}
    METHODS.get("clip_adapter_both")(make_task("clip_adapter_both", tiny_backbone,
                                               overrides={**FAST, "epochs": 2}))
    assert all(torch.equal(before[k], v) for k, v in tiny_backbone.model.state_dict().items())


@pytest.mark.parametrize("method", list(BRANCHES))
def test_training_learns_and_beats_zero_shot(tiny_backbone, method):
    """Class centers unrelated to the class names: zero-shot is at chance, the adapter learns."""
    test = blobs(4, 30, 64, seed=99)
    ratios = {r: 0.8 for r in BRANCHES[method]}
    task = make_task(method, tiny_backbone, overrides={**FAST, **ratios})
    fitted = METHODS.get(method)(task)
    zs = METHODS.get("zero_shot")(task)
    assert fitted.info["train_loss_last_epoch"] < 0.7 * fitted.info["train_loss_first_epoch"]
    assert accuracy(fitted, test) > accuracy(zs, test) + 0.25


def test_ratio_search_uses_val_only(tiny_backbone):
    assert "test" not in {f.name for f in dataclasses.fields(Task)}  # no way to reach test data
    overrides = {**FAST, "alpha": "search", "ratio_grid": [0.0, 0.3, 0.9]}
    task = make_task("clip_adapter_visual", tiny_backbone, overrides=overrides)
    fitted = METHODS.get("clip_adapter_visual")(task)
    log = fitted.info["ratio_search"]
    assert [e["alpha"] for e in log] == [0.0, 0.3, 0.9]
    best = max(log, key=lambda e: e["val_acc"])  # first of the best, as the method does
    assert fitted.info["alpha"] == best["alpha"]
    # the logged val accuracy is the chosen model's accuracy on task.val
    assert 100 * accuracy(fitted, task.val) == pytest.approx(best["val_acc"])
    # a val set whose labels are permuted changes the scores and the choice
    perm = torch.tensor([1, 2, 3, 0])[task.val.labels]
    task2 = make_task("clip_adapter_visual", tiny_backbone, overrides=overrides,
                      val=FeatureSplit(task.val.features, perm))
    fitted2 = METHODS.get("clip_adapter_visual")(task2)
    log2 = fitted2.info["ratio_search"]
    assert [e["val_acc"] for e in log2] != [e["val_acc"] for e in log]
    assert fitted2.info["alpha"] != fitted.info["alpha"]


def test_joint_search_for_both(tiny_backbone):
    overrides = {**FAST, "epochs": 1, "alpha": "search", "beta": 0.5, "ratio_grid": [0.2, 0.6]}
    fitted = METHODS.get("clip_adapter_both")(make_task("clip_adapter_both", tiny_backbone,
                                                        overrides=overrides))
    log = fitted.info["ratio_search"]
    assert [(e["alpha"], e["beta"]) for e in log] == [(0.2, 0.5), (0.6, 0.5)]
    assert fitted.info["beta"] == 0.5 and fitted.info["alpha"] in (0.2, 0.6)


def test_bad_ratio_is_a_clear_error(tiny_backbone):
    with pytest.raises(UsageError, match="alpha"):
        METHODS.get("clip_adapter_visual")(make_task("clip_adapter_visual", tiny_backbone,
                                                     overrides={"alpha": "serch"}))
    with pytest.raises(UsageError, match="alpha"):
        METHODS.get("clip_adapter_visual")(make_task("clip_adapter_visual", tiny_backbone,
                                                     overrides={"alpha": 1.5}))


def test_variants_resolve_to_the_documented_values():
    from bench.config import MethodSpec, resolve_method_config

    v, code = resolve_method_config(MethodSpec("clip_adapter_visual"), "eurosat", 16)
    assert v == "code" and code["alpha"] == 0.2 and code["final_relu"] and code["lr"] == 0.002
    assert code["epochs"] == 200 and code["batch_size"] == 32 and code["logit_scale"] == "model"
    _, paper = resolve_method_config(MethodSpec("clip_adapter_visual", "paper"), "eurosat", 16)
    assert paper["lr"] == 1e-5 and not paper["final_relu"] and paper["alpha"] == 0.6
    _, paper_in = resolve_method_config(MethodSpec("clip_adapter_visual", "paper"), "imagenet", 16)
    assert paper_in["alpha"] == 0.2 and paper_in["epochs"] == 50
    _, both = resolve_method_config(MethodSpec("clip_adapter_both", "search"), "dtd", 1)
    assert both["alpha"] == both["beta"] == "search" and both["epochs"] == 50
