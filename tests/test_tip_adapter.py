"""Tip-Adapter and Tip-Adapter-F: the cache logits against a loop written out by hand, the
release's search grid and tie rule, val-only selection, and that fine-tuning learns."""

from __future__ import annotations

import math

import pytest
import torch

from bench.base.schema import ConfigError
from bench.views import FixedViews
from methods import METHODS
from methods.base import FeatureSplit
from methods.tip_adapter import cache_logits, search_alpha_beta, search_grid, tip_logits
from tests.test_coop import accuracy, blobs, make_task

FAST_F = {"epochs": 3, "n_views": 13, "batch_size": 8}


def tip_task(method, backbone, *, overrides=None, n_views=10, val=None, seed=1, shots=4):
    """make_task with fixed 'tip' views: V noisy copies of the train features."""
    task = make_task(method, backbone, overrides=overrides, val=val, seed=seed, shots=shots)
    g = torch.Generator().manual_seed(100 + seed)
    x = task.train.features
    views = torch.stack([x + 0.5 * torch.randn(x.shape, generator=g) for _ in range(n_views)])
    task.train_views = FixedViews(views, seed, {"mode": "fixed"})
    return task


def test_cache_logits_equal_a_sum_written_out():
    g = torch.Generator().manual_seed(0)
    f = torch.nn.functional.normalize(torch.randn(3, 8, generator=g), dim=-1)
    keys = torch.nn.functional.normalize(torch.randn(5, 8, generator=g), dim=-1)
    labels = [0, 2, 1, 2, 0]
    values = torch.nn.functional.one_hot(torch.tensor(labels), 3).float()
    W = torch.nn.functional.normalize(torch.randn(3, 8, generator=g), dim=-1)
    alpha, beta, s = 1.7, 5.5, 100.0
    ours = tip_logits(f, W, keys, values, alpha, beta, s)
    for m in range(3):
        for c in range(3):
            cache = sum(math.exp(-beta * (1 - float(f[m] @ keys[j])))
                        for j in range(5) if labels[j] == c)
            ref = s * float(f[m] @ W[c]) + alpha * cache
            assert float(ours[m, c]) == pytest.approx(ref, rel=1e-5)
    # a key equal to the feature contributes exactly exp(0) = 1
    assert float(cache_logits(keys[:1], keys[:1], values[:1], 9.0)[0, 0]) == pytest.approx(1.0)


def test_search_grid_is_the_release_formula():
    grid = search_grid(12, 200)
    assert len(grid) == 200 and grid[0] == pytest.approx(0.1)
    assert grid[1] == pytest.approx(0.1 + 11.9 / 200) and grid[-1] < 12
    with pytest.raises(ConfigError):
        search_grid(3, 0)


def test_search_takes_the_first_best_in_beta_then_alpha_order():
    # one val image, zero-shot wrong; any alpha large enough fixes it: the smallest such alpha
    # at the first beta wins
    f = torch.tensor([[1.0, 0.0]])
    keys = torch.tensor([[1.0, 0.0]])
    values = torch.tensor([[0.0, 1.0]])
    clip = torch.tensor([[1.0, 0.0]])
    beta, alpha, correct = search_alpha_beta(f, torch.tensor([1]), clip, keys, values,
                                             [1.0, 2.0], [0.5, 1.5, 3.0])
    assert (beta, alpha, correct) == (1.0, 1.5, 1)


def release_search_hp(features, labels, clip_logits, keys, values, betas, alphas):
    """Tip-Adapter's utils.py search_hp (gaopengcuhk/Tip-Adapter@d0e2d6f), written out: the
    best starts at (0, 0) with accuracy 0 and moves only on a strictly better accuracy."""
    best_acc, best_beta, best_alpha = 0, 0, 0
    for beta in betas:
        for alpha in alphas:
            cache = torch.exp(-(beta - beta * (features @ keys.T))) @ values
            acc = float(((clip_logits + cache * alpha).argmax(1) == labels).float().mean())
            if acc > best_acc:
                best_acc, best_beta, best_alpha = acc, beta, alpha
    return best_beta, best_alpha


def test_no_pair_right_keeps_the_releases_start_and_zero_shot(tiny_backbone):
    # one val image of class 1; zero-shot and the cache both vote class 0 at every (beta, alpha)
    f, keys = torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]])
    values, clip, y = torch.tensor([[1.0, 0.0]]), torch.tensor([[5.0, 0.0]]), torch.tensor([1])
    grid = ([1.0, 2.0], [0.5, 1.5])
    assert release_search_hp(f, y, clip, keys, values, *grid) == (0, 0)
    assert search_alpha_beta(f, y, clip, keys, values, *grid) == (0.0, 0.0, 0)
    assert search_alpha_beta(f, y, clip, keys, values, *grid, start=None) == (1.0, 0.5, 0)
    # where some pair is right, the start changes nothing (the earlier test's case)
    f2, v2, c2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 0.0]])
    for start in ((0.0, 0.0), None):
        got = search_alpha_beta(f2, y, c2, keys, v2, [1.0, 2.0], [0.5, 1.5, 3.0], start=start)
        assert got[:2] == release_search_hp(f2, y, c2, keys, v2, [1.0, 2.0], [0.5, 1.5, 3.0])
    # through the method: every val label contradicts every pair -> alpha 0 = zero-shot logits
    for method in ("tip_adapter", "tip_adapter_f"):
        task = tip_task(method, tiny_backbone, overrides=FAST_F if method == "tip_adapter_f" else None,
                        n_views=13)
        task.val = FeatureSplit(task.val.features, torch.full_like(task.val.labels, -1))
        fitted = METHODS.get(method)(task)
        assert (fitted.info["alpha"], fitted.info["beta"]) == (0.0, 0.0)
        sel = fitted.info["val_selection"]
        assert sel["chosen"] is None and sel["start"] == (0.0, 0.0) and sel["correct"] == 0
        zs = METHODS.get("zero_shot")(make_task("zero_shot", tiny_backbone))
        x = blobs(4, 3, 64, seed=5).features
        torch.testing.assert_close(fitted.logits(x), zs.logits(x) * 100 / tiny_backbone.logit_scale,
                                   rtol=1e-5, atol=1e-4)
    grid_start = tip_task("tip_adapter", tiny_backbone, overrides={"search_start": None})
    grid_start.val = FeatureSplit(grid_start.val.features, torch.full_like(grid_start.val.labels, -1))
    fitted = METHODS.get("tip_adapter")(grid_start)
    assert (fitted.info["alpha"], fitted.info["beta"]) == (pytest.approx(0.1), pytest.approx(0.1))


def test_tip_adapter_keys_are_normalized_view_means(tiny_backbone):
    task = tip_task("tip_adapter", tiny_backbone, overrides={"search": False})
    fitted = METHODS.get("tip_adapter")(task)
    views = task.train_views.all()
    keys = views.mean(0)
    keys = keys / keys.norm(dim=-1, keepdim=True)
    values = torch.nn.functional.one_hot(task.train.labels, task.num_classes).float()
    W = tiny_backbone.class_weights(task.classnames, task.templates)
    x = blobs(4, 5, keys.shape[1], seed=3).features
    f = x / x.norm(dim=-1, keepdim=True)
    a, b = task.config["init_alpha"], task.config["init_beta"]
    ref = 100 * f @ W.T + a * torch.exp(-b * (1 - f @ keys.T)) @ values
    torch.testing.assert_close(fitted.logits(x), ref, rtol=1e-5, atol=1e-4)
    assert fitted.info["alpha"] == a and fitted.info["cache_size"] == len(task.train)
    # alpha 0: exactly zero-shot at scale 100
    zero = METHODS.get("tip_adapter")(tip_task("tip_adapter", tiny_backbone,
                                               overrides={"search": False, "init_alpha": 0}))
    torch.testing.assert_close(zero.logits(x), 100 * f @ W.T, rtol=1e-5, atol=1e-4)


def test_tip_adapter_beats_zero_shot_on_unrelated_classes(tiny_backbone):
    test = blobs(4, 30, tiny_backbone.model.text_projection.shape[1], seed=99)
    task = tip_task("tip_adapter", tiny_backbone)
    fitted = METHODS.get("tip_adapter")(task)
    zs = METHODS.get("zero_shot")(task)
    assert accuracy(fitted, test) > accuracy(zs, test) + 0.25
    assert fitted.info["val_acc"] >= fitted.info["val_acc_zero_shot"]


@pytest.mark.parametrize("method", ["tip_adapter", "tip_adapter_f"])
def test_search_reads_val_only(tiny_backbone, method):
    over = FAST_F if method == "tip_adapter_f" else {}
    task = tip_task(method, tiny_backbone, overrides=over, n_views=13)
    fitted = METHODS.get(method)(task)
    # the recorded val accuracy is the chosen model's accuracy on task.val
    assert 100 * accuracy(fitted, task.val) == pytest.approx(fitted.info["val_acc"])
    # permuted val labels change the val scores and the choice
    perm = torch.tensor([1, 2, 3, 0])[task.val.labels]
    task2 = tip_task(method, tiny_backbone, overrides=over, n_views=13,
                     val=FeatureSplit(task.val.features, perm))
    fitted2 = METHODS.get(method)(task2)
    assert (fitted2.info["alpha"], fitted2.info["beta"]) != (fitted.info["alpha"], fitted.info["beta"])
    assert fitted2.info["val_acc"] != fitted.info["val_acc"]


def test_tip_adapter_f_trains_the_keys_on_the_epoch_views(tiny_backbone):
    task = tip_task("tip_adapter_f", tiny_backbone, overrides={**FAST_F, "search": False},
                    n_views=13)
    fitted = METHODS.get("tip_adapter_f")(task)
    base = METHODS.get("tip_adapter")(tip_task("tip_adapter", tiny_backbone,
                                               overrides={"search": False}, n_views=13))
    x = blobs(4, 5, task.train.features.shape[1], seed=3).features
    assert not torch.allclose(fitted.logits(x), base.logits(x), atol=1e-4)  # keys moved
    assert fitted.info["train_loss_last_epoch"] < fitted.info["train_loss_first_epoch"]
    # the training views are views 10.. : changing only those changes the result, and
    # changing only a cache view changes it too
    views = task.train_views.all().clone()
    views[11] += 1.0
    task.train_views = FixedViews(views, 1, {"mode": "fixed"})
    moved = METHODS.get("tip_adapter_f")(task)
    assert not torch.allclose(moved.logits(x), fitted.logits(x), atol=1e-5)


def test_tip_adapter_f_needs_a_view_per_epoch(tiny_backbone):
    task = tip_task("tip_adapter_f", tiny_backbone, overrides={**FAST_F, "epochs": 5},
                    n_views=13)
    with pytest.raises(ConfigError, match="set n_views to 15"):
        METHODS.get("tip_adapter_f")(task)


def test_tip_adapter_refuses_per_epoch_views(tiny_backbone):
    task = make_task("tip_adapter", tiny_backbone)  # CachedViews: no all()
    with pytest.raises(ConfigError, match="fixed 'tip' train views"):
        METHODS.get("tip_adapter")(task)


def test_tip_adapter_f_follows_the_release_schedule():
    from methods._training import OptimConfig, batches_per_epoch, lr_at_iter
    from bench.config import MethodSpec, resolve_method_config

    _, cfg = resolve_method_config(MethodSpec("tip_adapter_f", None), "dtd", 16)
    opt = OptimConfig.from_config(cfg)
    assert (opt.optimizer, opt.lr, opt.eps, opt.batch_size, opt.epochs) == ("adamw", 1e-3, 1e-4, 256, 20)
    # 16 shots x 47 classes = 752 images: 3 batches of 256 (last one kept), 60 iterations
    total = opt.epochs * batches_per_epoch(752, 256, opt.drop_last)
    assert total == 60
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(
        torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=opt.lr), total)
    for it in range(total):
        assert lr_at_iter(it, total, opt) == pytest.approx(sched.get_last_lr()[0], rel=1e-9, abs=1e-15)
        sched.optimizer.step()
        sched.step()
    _, euro = resolve_method_config(MethodSpec("tip_adapter_f", None), "eurosat", 16)
    assert euro["epochs"] == 100 and euro["n_views"] == 110


@pytest.mark.parametrize("method", ["tip_adapter", "tip_adapter_f", "taskres", "gda"])
def test_schema_covers_every_default_and_passes_every_config(method):
    from bench.config import MethodSpec, load_method_file, method_schema, resolve_method_config
    from bench.base.schema import check_config

    data, schema = load_method_file(method), method_schema(method)
    assert set(data["defaults"]) <= set(schema)
    for variant in [None, *(data.get("variants") or {})]:
        for dataset in ["imagenet", "dtd", "eurosat", "oxford_flowers", "demo_digits"]:
            for shots in (1, 16):
                _, cfg = resolve_method_config(MethodSpec(method, variant), dataset, shots)
                assert check_config(cfg, schema) == [], (variant, dataset, shots)
    bad = dict(resolve_method_config(MethodSpec(method, None), "dtd", 1)[1], n_views=0)
    assert check_config(bad, schema)  # a bad value is reported
