"""CLAP / ZS-LP: the multipliers and the penalty against numpy, the zero-shot start, the release's
batches per epoch, determinism, no val set read, and `bench run` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bench.base.schema import ConfigError
from methods import METHODS
from methods._training import OptimConfig, lr_at
from methods.base import FeatureSplit
from methods.clap import clap_logits, constraint_penalty, lagrangian_multipliers
from methods.taskres import base_text_features
from tests.conftest import TINY
from tests.test_coop import accuracy, blobs
from tests.test_tip_adapter import tip_task

FAST = {"epochs": 30}


def clap_task(backbone, n_views, overrides=None, **kw):
    """A Task with V fixed views and the config's n_views set to V (as the runner does)."""
    return tip_task("clap", backbone, n_views=n_views,
                    overrides={"n_views": n_views, **(overrides or {})}, **kw)


def _numpy_multipliers(logits, y, C):
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return np.array([np.mean([p[i, c] for i in range(len(y)) if y[i] == c]) for c in range(C)])


def test_multipliers_and_penalty_equal_numpy():
    rng = np.random.default_rng(0)
    C, d = 3, 5
    y = np.array([0, 0, 1, 2, 2, 2, 1])
    logits = rng.normal(size=(len(y), C)) * 3
    lam = _numpy_multipliers(logits, y, C)
    got = lagrangian_multipliers(torch.tensor(logits), torch.tensor(y), C)
    np.testing.assert_allclose(got.numpy(), lam, rtol=1e-5, atol=1e-6)
    # the code's ablations
    bal = lagrangian_multipliers(torch.tensor(logits), torch.tensor(y), C, "balanced")
    np.testing.assert_allclose(bal.numpy(), np.ones(C))
    cor = lagrangian_multipliers(torch.tensor(logits), torch.tensor(y), C, "corrected")
    np.testing.assert_allclose(cor.numpy(), lam * C / lam.sum(), rtol=1e-5)
    const = lagrangian_multipliers(torch.tensor(logits), torch.tensor(y), C, "constant")
    np.testing.assert_allclose(const.numpy(), np.full(C, lam.mean()), rtol=1e-5)

    W, T = rng.normal(size=(C, d)), rng.normal(size=(C, d))
    ref = sum(lam[c] * sum((W[c, j] - T[c, j]) ** 2 for j in range(d)) for c in range(C)) / C
    pen = constraint_penalty(torch.tensor(W), torch.tensor(T), torch.tensor(lam))
    assert float(pen) == pytest.approx(ref, rel=1e-6)
    assert float(constraint_penalty(torch.tensor(T), torch.tensor(T), torch.tensor(lam))) == 0.0


def test_zs_init_is_zero_shot(tiny_backbone):
    # warm-up at lr 0 for the only epoch: the prototypes never move from the zero-shot start
    task = clap_task(tiny_backbone, 3, {"epochs": 1, "warmup_epochs": 1, "warmup_lr": 0.0})
    fitted = METHODS.get("clap")(task)
    zs = METHODS.get("zero_shot")(task)
    x = blobs(4, 5, task.train.features.shape[1], seed=3).features
    torch.testing.assert_close(fitted.logits(x), zs.logits(x), rtol=1e-5, atol=1e-4)
    assert fitted.info["prototype_shift"] == 0.0
    # and the base is the mean of the raw embeddings (several templates: not the zero-shot weights)
    templates = ["a photo of a {}.", "a drawing of a {}."]
    base = base_text_features(task, templates)
    raw = tiny_backbone.encode_text([t.format(task.classnames[1]) for t in templates])
    torch.testing.assert_close(base[1], raw.mean(0), rtol=1e-5, atol=1e-5)
    f = torch.nn.functional.normalize(x, dim=-1)
    ref = 7.0 * f @ (raw.mean(0) / raw.mean(0).norm())
    torch.testing.assert_close(clap_logits(x, base, 7.0)[:, 1], ref, rtol=1e-5, atol=1e-4)


def test_multipliers_come_from_zero_shot_on_the_train_views(tiny_backbone):
    task = clap_task(tiny_backbone, 4, FAST)
    fitted = METHODS.get("clap")(task)
    views = task.train_views.all()[:4]
    x, y = views.reshape(-1, views.shape[-1]), task.train.labels.repeat(4)
    zs = METHODS.get("zero_shot")(task).logits(x)        # one template: the same classifier
    lam = _numpy_multipliers(zs.double().numpy(), y.numpy(), 4)
    assert fitted.info["multiplier_mean"] == pytest.approx(lam.mean(), abs=1e-5)
    assert fitted.info["multiplier_min"] == pytest.approx(lam.min(), abs=1e-5)
    assert fitted.info["n_samples"] == 4 * len(task.train)


def test_constraint_keeps_prototypes_nearer_zero_shot_and_both_learn(tiny_backbone):
    test = blobs(4, 30, tiny_backbone.model.text_projection.shape[1], seed=99)
    task = clap_task(tiny_backbone, 5, FAST)
    clap = METHODS.get("clap")(task)
    zslp = METHODS.get("clap")(clap_task(tiny_backbone, 5, {**FAST, "constraint": "none"}))
    zs = METHODS.get("zero_shot")(task)
    assert 0 < clap.info["prototype_shift"] < 0.8 * zslp.info["prototype_shift"]
    assert "multipliers" not in zslp.info
    for fitted in (clap, zslp):
        assert fitted.info["train_loss_last_epoch"] < 0.7 * fitted.info["train_loss_first_epoch"]
        assert accuracy(fitted, test) > accuracy(zs, test) + 0.25


def test_epoch_has_the_image_loaders_batch_count(tiny_backbone, monkeypatch):
    """16 images, batch 8: 2 steps per epoch (len(train_loader_x)), not 20 * 16 / 8 = 40."""
    import methods.clap as clap_mod

    steps = []
    real = clap_mod.make_optimizer

    def counting(params, opt):
        optimizer = real(params, opt)
        step = optimizer.step
        optimizer.step = lambda *a, **k: (steps.append(1), step(*a, **k))[1]
        return optimizer

    monkeypatch.setattr(clap_mod, "make_optimizer", counting)
    task = clap_task(tiny_backbone, 20, {"epochs": 3, "batch_size": 8})
    assert len(task.train) == 16
    fitted = METHODS.get("clap")(task)
    assert len(steps) == 3 * 2 and fitted.info["batches_per_epoch"] == 2
    steps.clear()
    METHODS.get("clap")(clap_task(tiny_backbone, 20, {"epochs": 3}))
    assert len(steps) == 3  # fewer images than the batch: one batch of 256 of the 320 samples


def test_deterministic_for_a_seed(tiny_backbone):
    x = blobs(4, 5, tiny_backbone.model.text_projection.shape[1], seed=3).features
    runs = []
    for seed in (1, 1, 2):
        task = clap_task(tiny_backbone, 20, FAST)
        task.seed = seed                                  # same data, other shuffling
        runs.append(METHODS.get("clap")(task).logits(x))
    assert torch.equal(runs[0], runs[1])
    assert not torch.allclose(runs[0], runs[2])


class _Untouchable(FeatureSplit):
    def __init__(self):
        pass

    def _boom(self, *_):
        raise AssertionError("clap read the val split")

    features = property(_boom)
    labels = property(_boom)
    __len__ = _boom


def test_val_split_is_never_read(tiny_backbone):
    for over in (FAST, {**FAST, "constraint": "none"}):
        fitted = METHODS.get("clap")(clap_task(tiny_backbone, 3, over,
                                              val=_Untouchable()))
        assert "val_acc" not in fitted.info


def test_missing_class_is_one_clear_config_error(tiny_backbone):
    task = clap_task(tiny_backbone, 2, FAST)
    task.train.labels = task.train.labels.clamp(max=2)    # class 3 has no train image
    with pytest.raises(ConfigError, match=r"classes \[3\] have no train image"):
        METHODS.get("clap")(task)


def test_release_settings():
    from bench.config import MethodSpec, resolve_method_config

    _, cfg = resolve_method_config(MethodSpec("clap", None), "dtd", 1)
    opt = OptimConfig.from_config(cfg)
    assert (opt.optimizer, opt.lr, opt.momentum, opt.weight_decay, opt.batch_size, opt.epochs) == \
        ("sgd", 0.1, 0.9, 0.0, 256, 300)
    assert (cfg["constraint"], cfg["multipliers"], cfg["n_views"]) == ("l2", "class_adaptive", 20)
    assert lr_at(0, opt) == 1e-5 and lr_at(1, opt) == pytest.approx(0.1)
    assert resolve_method_config(MethodSpec("clap", None), "dtd", 16)[1]["epochs"] == 300
    assert resolve_method_config(MethodSpec("clap", "zs_lp"), "dtd", 4)[1]["constraint"] == "none"
    imnet = resolve_method_config(MethodSpec("clap", None), "imagenet", 4)[1]
    assert len(imnet["templates"]) == 8 and imnet["templates"][-1] == "a photo of a {}."
    assert METHODS.entry("clap").extra["views"].transform == "protocol"


def test_bench_run_end_to_end(run_cli, miniroot, tmp_path):
    out = tmp_path / "out"
    code, _, err = run_cli("run", "--backbone", TINY, "--pretrained", "none", "--quiet",
                           "--data-root", miniroot, "--datasets", "eurosat",
                           "--methods", "clap,clap:zs_lp", "--shots", "2", "--seeds", "1",
                           "--set", "epochs=20", "--output", out)
    assert code == 0, err
    recs = [json.loads(p.read_text()) for p in sorted((out / "results").rglob("*.json"))]
    assert len(recs) == 2 and all(r["status"] == "ok" for r in recs)
    by_constraint = {r["config"]["constraint"]: r for r in recs}
    assert set(by_constraint) == {"l2", "none"}
    assert by_constraint["l2"]["config"]["n_views"] == 20
    assert 0 <= by_constraint["l2"]["metrics"]["top1"] <= 100
    code, table, err = run_cli("report", out, "--color", "never")
    assert code == 0 and "CLAP" in table, err
    # a bad value is refused at plan time with one line naming it
    code, _, err = run_cli("run", "--backbone", TINY, "--pretrained", "none", "--quiet",
                           "--data-root", miniroot, "--datasets", "eurosat", "--methods", "clap",
                           "--set", "constraint=l1", "--output", tmp_path / "bad")
    assert code == 2 and "constraint = 'l1'" in err and "Traceback" not in err


def test_release_precision_starts_from_the_fp16_base(tiny_backbone):
    # variant release_precision: the prototypes start at the fp16 text model's base (the release's
    # PREC fp16), so an epoch at lr 0 scores with exactly that base; TF32 is off on a CPU
    task = clap_task(tiny_backbone, 3, {"epochs": 1, "warmup_epochs": 1, "warmup_lr": 0.0,
                                        "text_base_precision": "fp16", "tf32": True})
    fitted = METHODS.get("clap")(task)
    assert (fitted.info["text_base_precision"], fitted.info["tf32"]) == ("fp16", False)
    base16 = base_text_features(task, task.templates, "fp16")
    x = blobs(4, 5, task.train.features.shape[1], seed=3).features
    torch.testing.assert_close(fitted.logits(x), clap_logits(x, base16, tiny_backbone.logit_scale),
                               rtol=0, atol=0)
    default = METHODS.get("clap")(clap_task(tiny_backbone, 3, {"epochs": 1, "warmup_epochs": 1,
                                                              "warmup_lr": 0.0}))
    assert not torch.equal(fitted.logits(x), default.logits(x))
