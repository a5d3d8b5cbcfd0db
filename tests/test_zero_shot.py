"""Zero-shot weights follow PROTOCOL §4: per-template normalize, average, re-normalize."""

import torch

from methods.zero_shot import resolve_templates, zero_shot
from methods.base import FeatureSplit, Task
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
    for bad in ("nope", ["no placeholder"]):
        try:
            resolve_templates(bad, [])
        except ValueError as exc:
            assert "templates" in str(exc)
        else:
            raise AssertionError(f"{bad!r} accepted")
