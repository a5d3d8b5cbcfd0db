"""The CLIP-Adapter `paper` variant (lr 1e-5 on CoOp's schedule, whose warm-up lr is also 1e-5)
still trains: on the demo model and demo_digits its adapter weights move and its train loss
falls below zero-shot CLIP's, only far more slowly than under the `code` variant (its train
accuracy stays near zero-shot's: 61.9% against 62.5% with the current demo model)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bench.config import MethodSpec, resolve_method_config
from methods import METHODS
from methods._training import seeded_rng
from methods.base import FeatureSplit, Task
from methods.clip_adapter import AdapterClassifier, _fit_one, _logit_scale


class _SameViews:
    """Every epoch sees the eval-transform features (no augmentation): a deterministic check."""

    mode, n_views = "cached", 1

    def __init__(self, x):
        self.x = x

    def for_epoch(self, epoch):
        return self.x


@pytest.fixture(scope="module")
def digits16(tmp_path_factory):
    """Demo CLIP, and the eval features of demo_digits' 16-shot seed-1 train subset."""
    from PIL import Image

    from bench.backbone import Backbone
    from bench.demo import CHECKPOINT, MODEL_NAME
    from datasets_registry._demo.suite import ensure_demo_data
    from datasets_registry import DATASETS
    from datasets_registry.fewshot import sample_fewshot

    root = ensure_demo_data(tmp_path_factory.mktemp("demo"))
    backbone = Backbone(MODEL_NAME, str(CHECKPOINT.resolve()), "cpu")
    ds = DATASETS.get("demo_digits")
    splits = ds.load(root)
    sub = sample_fewshot(splits.train, splits.val, 16, 1)
    images = torch.stack([backbone.eval_transform(Image.open(splits.image_dir / p).convert("RGB"))
                          for p, _ in sub.train])
    with torch.no_grad():
        x = backbone.encode_images(images).float().cpu()
    y = torch.tensor([label for _, label in sub.train])
    return backbone, splits.prompt_classnames, ds.templates, x, y


def _train(digits16, variant):
    backbone, classnames, templates, x, y = digits16
    _, cfg = resolve_method_config(MethodSpec("clip_adapter_visual", variant), "demo_digits", 16)
    empty = FeatureSplit(x[:0], y[:0])
    task = Task(dataset="demo_digits", classnames=classnames, templates=templates, shots=16,
                seed=1, config=cfg, device=torch.device("cpu"), train=FeatureSplit(x, y),
                val=empty, train_views=_SameViews(x), backbone=backbone)
    weights = backbone.class_weights(classnames, templates).float()
    scale = _logit_scale(cfg, task)
    with seeded_rng(task.seed, task.device):  # the initial adapter, as _fit_one draws it
        init = AdapterClassifier(weights, alpha=cfg["alpha"], beta=None,
                                 reduction=int(cfg["reduction"]),
                                 final_relu=bool(cfg["final_relu"]), logit_scale=scale)
    head, history = _fit_one(task, cfg, weights, cfg["alpha"], None, scale)
    moved = max(((b - a).norm() / a.norm()).item()
                for a, b in zip(init.parameters(), head.parameters()))
    with torch.no_grad():
        trained = head(x)
    zero_shot = METHODS.get("zero_shot")(task).logits(x)
    return cfg, moved, history, trained, zero_shot


def test_paper_variant_is_the_papers_lr_on_coops_schedule():
    _, paper = resolve_method_config(MethodSpec("clip_adapter_visual", "paper"), "dtd", 16)
    assert paper["lr"] == paper["warmup_lr"] == 1e-5  # so the warm-up epoch is a plain epoch
    assert paper["epochs"] == 200 and paper["batch_size"] == 32 and not paper["final_relu"]


def test_paper_variant_learns_slowly(digits16):
    _, _, _, x, y = digits16
    cfg, moved, history, trained, zero_shot = _train(digits16, "paper")
    assert cfg["lr"] == 1e-5 and cfg["epochs"] == 200
    ce = lambda logits: F.cross_entropy(logits, y).item()  # noqa: E731
    acc = lambda logits: (logits.argmax(1) == y).float().mean().item()  # noqa: E731
    # Measured with the demo model of issue 20 (pretrained at CLIP's logit scale 100, so its
    # zero-shot losses are already small): the weights move a little, the loss falls a little.
    assert moved > 0.005                             # measured 0.0117
    assert history[-1] < 0.99 * history[0]           # measured 1.360 -> 1.325
    assert ce(trained) < ce(zero_shot)               # measured 1.325 vs 1.376
    # the code variant (lr 0.002) on the same data moves far more and fits the train set
    _, moved_code, _, trained_code, _ = _train(digits16, "code")
    assert moved_code > 5 * moved                    # measured 0.252 vs 0.0117
    assert acc(trained_code) > acc(trained) + 0.05   # measured 0.70 vs 0.62
