"""KgCoOp on the tiny random-init model: with weight 0 it is CoOp step for step; the extra term
against a direct computation; the released defaults."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import methods.coop as coop_module
from bench.config import MethodSpec, resolve_method_config
from bench.views import CachedViews
from methods import METHODS
from methods.kgcoop import kg_term
from tests.test_coop import NAMES, blobs, make_task

SHORT = {"epochs": 3, "lr": 0.05, "batch_size": 8}


@pytest.fixture()
def histories(monkeypatch):
    """Every loss history the shared training loop returns, in call order."""
    seen = []
    real = coop_module.train

    def spy(*args, **kwargs):
        seen.append(real(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(coop_module, "train", spy)
    return seen


def coop_config_for_kgcoop(extra: dict) -> dict:
    """kgcoop overrides that make its config CoOp's (the prompt and optimization keys)."""
    _, cfg = resolve_method_config(MethodSpec("coop"), "dtd", 4, {**SHORT, **extra})
    return {k: v for k, v in cfg.items() if k not in ("feature_mode", "n_views")}


@pytest.mark.parametrize("extra", [{"n_ctx": 4}, {"ctx_init": "a photo of a", "class_chunk": 3}])
def test_weight_zero_is_coop_step_for_step(tiny_backbone, histories, extra):
    x = blobs(4, 5, 64, seed=9).features
    coop = METHODS.get("coop")(make_task("coop", tiny_backbone, overrides={**SHORT, **extra}))
    same = coop_config_for_kgcoop(extra)
    kg = METHODS.get("kgcoop")(make_task("kgcoop", tiny_backbone,
                                         overrides={**same, "kg_weight": 0.0}))
    kg8 = METHODS.get("kgcoop")(make_task("kgcoop", tiny_backbone,
                                          overrides={**same, "kg_weight": 8.0}))
    assert len(histories) == 3 and len(histories[0]) == 3
    assert histories[1] == histories[0]  # identical floats, every epoch
    assert torch.equal(kg.logits(x), coop.logits(x))
    assert histories[2] != histories[0]  # the term is really there when weighted
    assert not torch.allclose(kg8.logits(x), coop.logits(x))


def test_kg_term_is_half_the_mean_squared_distance():
    t = torch.tensor([[3.0, 4.0, 0.0], [1.0, 0.0, 0.0]])
    zs = torch.tensor([[0.0, 1.0, 0.0], [0.6, 0.8, 0.0]])
    # by hand: class 0 cos = 4/5, class 1 cos = 0.6 -> 1 - mean = 1 - 0.7 = 0.3
    assert float(kg_term(t, zs)) == pytest.approx(0.3, abs=1e-6)
    g = torch.Generator().manual_seed(0)
    t, zs = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    zs = zs / zs.norm(dim=-1, keepdim=True)
    sq = sum(float(((t[c] / t[c].norm() - zs[c]) ** 2).sum()) for c in range(5)) / 5
    assert float(kg_term(t, zs)) == pytest.approx(sq / 2, rel=1e-5)


def test_first_loss_is_cross_entropy_plus_weighted_term(tiny_backbone, histories):
    """lr 0, one full batch: the logged loss is CE of the "a photo of a" init plus
    kg_weight * (1 - mean cos) to the zero-shot embeddings of kg_templates, computed directly."""
    task = make_task("kgcoop", tiny_backbone, overrides={
        "epochs": 1, "lr": 1e-9, "warmup_lr": 0.0, "batch_size": 64, "kg_weight": 5.0,
        "kg_templates": ["itap of a {}."]})
    task.train_views = CachedViews(task.train.features[None], task.seed)
    METHODS.get("kgcoop")(task)
    t = tiny_backbone.encode_text([f"a photo of a {n}." for n in NAMES])
    t = t / t.norm(dim=-1, keepdim=True)
    zs = tiny_backbone.encode_text([f"itap of a {n}." for n in NAMES])
    zs = zs / zs.norm(dim=-1, keepdim=True)
    x = task.train.features / task.train.features.norm(dim=-1, keepdim=True)
    ce = F.cross_entropy(tiny_backbone.logit_scale * x @ t.T, task.train.labels)
    direct = float(ce) + 5.0 * (1 - float((t * zs).sum(-1).mean()))
    assert histories[0][0] == pytest.approx(direct, rel=1e-4)


def test_a_heavy_weight_keeps_the_model_near_zero_shot(tiny_backbone):
    x = blobs(4, 5, 64, seed=3).features
    base = {**SHORT, "epochs": 6, "lr": 0.05, "kg_templates": ["a photo of a {}."]}
    task = make_task("kgcoop", tiny_backbone, overrides=base)
    zs = METHODS.get("zero_shot")(task).logits(x)
    free = METHODS.get("kgcoop")(make_task("kgcoop", tiny_backbone,
                                           overrides={**base, "kg_weight": 0.0}))
    held = METHODS.get("kgcoop")(make_task("kgcoop", tiny_backbone,
                                           overrides={**base, "kg_weight": 50.0}))
    assert (held.logits(x) - zs).abs().mean() < 0.5 * (free.logits(x) - zs).abs().mean()


def test_scores_other_classes_with_the_learned_context(tiny_backbone):
    fitted = METHODS.get("kgcoop")(make_task("kgcoop", tiny_backbone, overrides=SHORT))
    x = blobs(4, 3, 64, seed=4).features
    torch.testing.assert_close(fitted.on_classes(NAMES[::-1], ["{}"], "dtd").logits(x),
                               fitted.logits(x).flip(1), rtol=1e-4, atol=1e-4)
    assert fitted.on_classes(["cat", "tree", "car"], ["{}"], "x").logits(x).shape == (12, 3)
    flag = METHODS.entry("kgcoop").extra.get("new_classes")
    assert flag({"csc": False}) and not flag({"csc": True})


def test_released_defaults():
    cfg = resolve_method_config(MethodSpec("kgcoop"), "eurosat", 16)[1]
    assert (cfg["kg_weight"], cfg["batch_size"], cfg["epochs"], cfg["lr"]) == (8.0, 128, 100, 0.002)
    assert cfg["ctx_init"] == "a photo of a" and cfg["kg_templates"] == "dataset"
    dtd = resolve_method_config(MethodSpec("kgcoop"), "dtd", 1)[1]
    assert dtd["kg_templates"] == ["a photo of a {}, a type of texture."]


@pytest.mark.parametrize("precision", ["fp16", "amp_bf16"])
def test_low_precision_runs_and_agrees(tiny_backbone, precision):
    x = blobs(4, 10, 64, seed=6).features
    ref = METHODS.get("kgcoop")(make_task("kgcoop", tiny_backbone, overrides=SHORT))
    low = METHODS.get("kgcoop")(make_task("kgcoop", tiny_backbone,
                                          overrides={**SHORT, "precision": precision}))
    assert low.info["precision"] == precision
    agree = (low.logits(x).argmax(1) == ref.logits(x).argmax(1)).float().mean()
    assert agree >= 0.9
