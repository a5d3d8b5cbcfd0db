"""Zero-shot weights follow docs/protocol.md §4: per-template normalize, average, re-normalize."""

import pytest
import torch

from methods.zero_shot import resolve_templates, zero_shot
from methods.base import FeatureSplit, Task, normalize
from bench.views import NoViews


def _task(backbone, templates="dataset"):
    empty = FeatureSplit(torch.zeros(0, 64), torch.zeros(0, dtype=torch.long))
    return Task(dataset="x", classnames=["cat", "dog", "red car"], templates=["a photo of a {}."],
                shots=1, seed=1, config={"templates": templates}, device=torch.device("cpu"),
                train=empty, val=empty, train_views=NoViews(), backbone=backbone)


def test_ensemble_weights_are_normalized_mean_of_normalized(tiny_backbone):
    classes = ["cat", "dog", "red car"]
    templates = resolve_templates("simple7", [])
    assert len(templates) == 7
    model, tok = tiny_backbone.model, tiny_backbone.tokenizer
    with torch.no_grad():
        per_template = []
        for t in templates:
            e = model.encode_text(tok([t.format(c) for c in classes]))
            per_template.append(e / e.norm(dim=-1, keepdim=True))
        mean = torch.stack(per_template).mean(0)
        expected = mean / mean.norm(dim=-1, keepdim=True)
    got = tiny_backbone.class_weights(classes, templates)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got.norm(dim=-1), torch.ones(3))
    # An unnormalized average would differ: the per-template norms are not all equal.
    raw = torch.stack([model.encode_text(tok([t.format(c) for c in classes])) for t in templates])
    assert not torch.allclose(got, raw.mean(0) / raw.mean(0).norm(dim=-1, keepdim=True), atol=1e-6)


def test_zero_shot_logits_are_scaled_cosines(tiny_backbone):
    fitted = zero_shot(_task(tiny_backbone))
    feats = torch.randn(5, 64) * 3
    w = tiny_backbone.class_weights(["cat", "dog", "red car"], ["a photo of a {}."])
    cos = torch.nn.functional.cosine_similarity(feats[:, None, :], w[None, :, :], dim=-1)
    torch.testing.assert_close(fitted.logits(feats), tiny_backbone.logit_scale * cos,
                               rtol=1e-5, atol=1e-5)


def test_template_choices():
    assert resolve_templates("dataset", ["{} texture."]) == ["{} texture."]
    assert len(resolve_templates("imagenet80", [])) == 80
    assert resolve_templates(["a {}."], []) == ["a {}."]
    from bench.base.schema import ConfigError

    for bad in ("nope", ["no placeholder"]):
        with pytest.raises(ConfigError, match="templates"):
            resolve_templates(bad, [])


def test_ensembles_add_the_dataset_template_except_on_imagenet():
    """CoOp trainers/zsclip.py (ZeroshotCLIP2): templates += [CUSTOM_TEMPLATES[dataset]] unless
    the dataset is ImageNet."""
    seven = ["itap of a {}.", "a bad photo of the {}.", "a origami {}.", "a photo of the large {}.",
             "a {} in a video game.", "art of the {}.", "a photo of the small {}."]
    got = resolve_templates("simple7", ["{} texture."], "dtd", add_dataset_template=True)
    assert got == seven + ["{} texture."]
    assert resolve_templates("simple7", ["a photo of a {}."], "imagenet",
                             add_dataset_template=True) == seven
    eighty = resolve_templates("imagenet80", ["a photo of {}, a type of food."], "food101",
                               add_dataset_template=True)
    assert len(eighty) == 81 and eighty[-1] == "a photo of {}, a type of food."
    # off, or for 'dataset' and explicit lists, nothing is added
    assert resolve_templates("simple7", ["{} texture."], "dtd") == seven
    assert resolve_templates("dataset", ["{} texture."], "dtd",
                             add_dataset_template=True) == ["{} texture."]
    assert resolve_templates(["a {}."], ["{} texture."], "dtd",
                             add_dataset_template=True) == ["a {}."]


def test_ensemble_variants_resolve_with_the_dataset_template(tiny_backbone):
    from bench.config import MethodSpec, resolve_method_config

    _, cfg = resolve_method_config(MethodSpec("zero_shot", "ensemble7"), "dtd", 1)
    assert cfg["templates"] == "simple7" and cfg["add_dataset_template"] is True
    task = _task(tiny_backbone, "simple7")
    task.config = cfg
    task.dataset, task.templates = "dtd", ["{} texture."]
    fitted = zero_shot(task)
    assert fitted.info["n_templates"] == 8
    want = tiny_backbone.class_weights(task.classnames,
                                       resolve_templates("simple7", []) + ["{} texture."])
    feats = torch.randn(4, 64)
    torch.testing.assert_close(fitted.logits(feats),
                               tiny_backbone.logit_scale * normalize(feats) @ want.T)
    task.dataset = "imagenet"
    assert zero_shot(task).info["n_templates"] == 7
