"""methods/_clip_hooks.py: open_clip's towers run block by block equal the model's own encoders
with no hook, and each hook changes what it should (and nothing of the model)."""

from __future__ import annotations

import pytest
import torch

from methods._clip_hooks import (NO_HOOKS, LayerLoRA, TowerHooks, encode_image, encode_text,
                                 text_tower, vit_problem)


@pytest.fixture(scope="module")
def model(tiny_backbone):
    return tiny_backbone.model


def _images(model, n=5, seed=0):
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _tokens(tiny_backbone):
    return tiny_backbone.tokenizer(["a photo of a cat.", "a dog", "a very small red bird."])


def test_no_hooks_is_the_models_own_encoders_bitwise(model, tiny_backbone):
    images, tokens = _images(model), _tokens(tiny_backbone)
    with torch.no_grad():
        assert torch.equal(encode_image(model, images, NO_HOOKS), model.encode_image(images))
        tower = text_tower(model, "test")
        assert torch.equal(encode_text(tower, tokens, NO_HOOKS), model.encode_text(tokens))
        # cut at the longest EOT: the same maths under the causal mask, other rounding
        torch.testing.assert_close(encode_text(tower, tokens, NO_HOOKS, cut=True),
                                   model.encode_text(tokens), rtol=1e-5, atol=1e-5)


def test_zero_lora_is_the_frozen_model_and_a_trained_one_is_not(model):
    images = _images(model)
    width = model.visual.transformer.resblocks[0].attn.embed_dim
    lora = {i: LayerLoRA(width, ["q", "k", "v"], 2, 1.0, 0.0)
            for i in range(len(model.visual.transformer.resblocks))}
    with torch.no_grad():
        frozen = model.encode_image(images)
        torch.testing.assert_close(encode_image(model, images, TowerHooks(lora=lora)), frozen,
                                   rtol=1e-5, atol=1e-5)  # B = 0: the branch adds exactly 0
        for layer in lora.values():
            for branch in layer.values():
                for p in branch.parameters():
                    p.add_(0.1)
        assert (encode_image(model, images, TowerHooks(lora=lora)) - frozen).abs().max() > 1e-3


def test_hooks_write_nothing_into_the_model(model, tiny_backbone):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    tower = text_tower(model, "test")
    name = "transformer.resblocks.0.ln_1"
    ln = tower.get_submodule(name)
    w = torch.nn.Parameter(ln.weight.detach().clone() * 1.5)
    b = torch.nn.Parameter(ln.bias.detach().clone() + 0.1)
    out = encode_text(tower, _tokens(tiny_backbone), TowerHooks(norms={name: (w, b)}))
    out.sum().backward()
    assert w.grad is not None and w.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_vit_problem(model):
    from bench.backbone import Backbone

    assert vit_problem(model) is None
    assert "ModifiedResNet, not a ViT" in vit_problem(Backbone("bench-demo-rn", "none").model)
