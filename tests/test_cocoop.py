"""CoCoOp on the tiny random-init model: each image's prompt is CoOp's shifted by the meta-net,
the batched pass equals a per-image loop through CoOp's encoder, the chunked two-pass step is
exact, and the method trains, transfers to other class names and runs end to end."""

from __future__ import annotations

import json

import pytest
import torch

from bench.config import MethodSpec, load_method_file, method_schema, resolve_method_config
from bench.base.schema import ConfigError, check_config
from methods import METHODS
from methods.base import normalize
from methods.cocoop import CoCoOpModel, RowPromptEncoder, meta_net
from methods.coop import PromptEncoder, _token_rows, build_layout, text_tower
from tests.test_coop import NAMES, accuracy, blobs, make_task, text_blobs

CPU = torch.device("cpu")
FAST = {"epochs": 2, "batch_size": 8, "lr": 0.01, "warmup_epochs": 0}


def parts(backbone, names=NAMES, n_ctx=4, chunk=4096, seed=0):
    """A random context, a seeded meta-net, and the CoCoOp and CoOp encoders over ``names``."""
    tower = text_tower(backbone.model)
    layout = build_layout(backbone.tokenizer, names, n_ctx, "end", backbone.context_length)
    kw = dict(dtype=torch.float32, cut_sequence=True, grad_checkpointing=False, device=CPU)
    g = torch.Generator().manual_seed(seed)
    ctx = 0.3 * torch.randn(n_ctx, 64, generator=g)
    torch.manual_seed(seed)
    model = CoCoOpModel(ctx, meta_net(64, 64, 16), RowPromptEncoder(tower, layout, **kw), chunk)
    return model, PromptEncoder(tower, layout, **kw), tower


def images(n, seed=3):
    return normalize(torch.randn(n, 64, generator=torch.Generator().manual_seed(seed)))


def transformer_input(encoder, *args):
    """What enters the first transformer block when ``encoder(*args)`` runs."""
    seen = []
    hook = encoder.parts.transformer.resblocks[0].ln_1.register_forward_pre_hook(
        lambda mod, inp: seen.append(inp[0].detach().clone()))
    try:
        with torch.no_grad():
            encoder(*args)
    finally:
        hook.remove()
    return seen[0]


# -- the prompt ------------------------------------------------------------------------------
def test_prompt_is_the_coop_prompt_shifted_by_the_meta_net(tiny_backbone):
    model, coop, tower = parts(tiny_backbone)
    img = images(3)
    C = len(NAMES)
    with torch.no_grad():
        shift = model.meta(img)  # pi(x), (3, W)
        assert shift.abs().min() > 0  # the shift is not trivially zero
        ours = model.encoder.embed(model.ctx_rows(img).repeat_interleave(C, 0),
                                   torch.arange(C).repeat(3)).view(3, C, -1, 64)
    for b in range(3):
        ref = transformer_input(coop, model.ctx.detach() + shift[b], torch.arange(C))
        torch.testing.assert_close(ours[b], ref)
    # Against the token embeddings by hand: context slots 1..M hold v + pi(x), the rest the
    # embedded tokens of "[SOS] X X X X name. [EOT]", plus positions.
    ids = build_layout(tiny_backbone.tokenizer, NAMES, 4, "end", tiny_backbone.context_length).ids
    L = ours.shape[2]
    with torch.no_grad():
        tokens = tower.token_embedding(ids[:, :L]) + tower.positional_embedding[:L]
        slots = model.ctx + shift[1][None] + tower.positional_embedding[1:5]
    torch.testing.assert_close(ours[1][:, 1:5], slots.expand(C, -1, -1))
    torch.testing.assert_close(ours[1][:, 5:], tokens[:, 5:])
    torch.testing.assert_close(ours[1][:, 0], tokens[:, 0])


def test_text_features_equal_open_clip_when_the_shifted_context_spells_a_phrase(tiny_backbone):
    """Choose v so that v + pi(x_0) is "a photo of a": image 0's class texts are then open_clip's
    encode_text("a photo of a {name}."), image 1's are not."""
    model, _, tower = parts(tiny_backbone)
    img = images(2)
    phrase = tower.token_embedding(torch.tensor(_token_rows(tiny_backbone.tokenizer,
                                                            ["a photo of a"])[0])).detach()
    with torch.no_grad():
        model.ctx.copy_(phrase - model.meta(img[:1]))
        text = model.text(img, len(NAMES))
    ref = tiny_backbone.encode_text([f"a photo of a {n}." for n in NAMES])
    torch.testing.assert_close(text[0], ref, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(text[1], ref, atol=1e-3)


@pytest.mark.parametrize("chunk", [4096, 5, 1])
def test_batched_pass_equals_a_per_image_loop_through_coop(tiny_backbone, chunk):
    model, coop, _ = parts(tiny_backbone, chunk=chunk)
    img = images(5)
    with torch.no_grad():
        batched = model.text(img, len(NAMES))
        loop = torch.stack([coop(model.ctx + model.meta(img[b:b + 1])[0], torch.arange(len(NAMES)))
                            for b in range(5)])
    torch.testing.assert_close(batched, loop, rtol=1e-5, atol=1e-5)
    if chunk < 5 * len(NAMES):
        assert len(model.pairs(5, len(NAMES))) == -(-5 * len(NAMES) // chunk)


def test_gradient_reaches_context_and_meta_net(tiny_backbone):
    model, _, _ = parts(tiny_backbone)
    img = images(2)
    loss = model.text(img, len(NAMES)).pow(2).sum()
    loss.backward()
    assert model.ctx.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.meta.parameters())


# -- fit -------------------------------------------------------------------------------------
def fit(backbone, seed=1, **overrides):
    return METHODS.get("cocoop")(make_task("cocoop", backbone, seed=seed,
                                           overrides={**FAST, **overrides}))


def test_chunked_two_pass_step_equals_one_pass(tiny_backbone):
    """8 images x 4 classes per step in chunks of 12 prompts (with checkpointing, and without the
    sequence cut): the same trained model as one pass."""
    test = blobs(4, 5, 64, seed=90)
    one = fit(tiny_backbone)
    other = fit(tiny_backbone, prompt_chunk=12, grad_checkpointing=True, cut_sequence=False)
    assert other.info["prompt_chunk"] == 12 and other.info["seq_len"] > one.info["seq_len"]
    torch.testing.assert_close(other.logits(test.features), one.logits(test.features),
                               rtol=1e-4, atol=1e-4)
    untrained = fit(tiny_backbone, lr=1e-9)
    assert not torch.allclose(untrained.logits(test.features), one.logits(test.features),
                              atol=1e-2)  # training moved the model: the comparison can fail


@pytest.mark.parametrize("chunk", [4096, 10])  # 10: an image's prompts split across passes
def test_shared_prefix_is_the_same_model(tiny_backbone, chunk):
    """[SOS] + each image's context run once per image: the same trained model and logits as
    every (image, class) prompt run whole."""
    test = blobs(4, 5, 64, seed=91)
    plain = fit(tiny_backbone, shared_prefix=False, prompt_chunk=chunk)
    shared = fit(tiny_backbone, prompt_chunk=chunk)
    assert plain.info["shared_prefix_len"] == 0 and shared.info["shared_prefix_len"] == 1 + 4
    torch.testing.assert_close(shared.logits(test.features), plain.logits(test.features),
                               rtol=1e-4, atol=1e-4)


def test_same_seed_same_model_other_seed_differs(tiny_backbone):
    test = blobs(4, 5, 64, seed=97)
    a, b, c = fit(tiny_backbone, 1), fit(tiny_backbone, 1), fit(tiny_backbone, 2)
    assert torch.equal(a.logits(test.features), b.logits(test.features))
    assert not torch.allclose(a.logits(test.features), c.logits(test.features))


def test_for_classes_on_the_training_names_is_the_fitted_model(tiny_backbone):
    fitted = fit(tiny_backbone)
    x = blobs(4, 6, 64, seed=91).features
    same = fitted.on_classes(list(NAMES), ["a photo of a {}."], "dtd")
    torch.testing.assert_close(same.logits(x), fitted.logits(x))
    # permuted names: permuted columns (the names, not their positions, carry the classes)
    perm = [2, 0, 3, 1]
    permuted = fitted.on_classes([NAMES[i] for i in perm], [], "dtd")
    torch.testing.assert_close(permuted.logits(x), fitted.logits(x)[:, perm], rtol=1e-5, atol=1e-5)
    novel = fitted.on_classes(["cat", "sea lion", "airplane"], [], "other")
    assert novel.logits(x).shape == (len(x), 3)
    torch.testing.assert_close(novel.logits(x)[:, 1], fitted.logits(x)[:, 2], rtol=1e-5, atol=1e-5)


def test_evaluation_in_image_groups_is_the_same(tiny_backbone):
    """prompt_chunk 6 < 4 classes x 24 images: evaluation goes one image per pass."""
    fitted, small = fit(tiny_backbone), fit(tiny_backbone, prompt_chunk=6)
    x = blobs(4, 6, 64, seed=92).features
    torch.testing.assert_close(small.logits(x), fitted.logits(x), rtol=1e-4, atol=1e-4)
    assert fitted.logits(x[:0]).shape == (0, 4)


def test_learns_and_beats_untrained(tiny_backbone):
    train, test = text_blobs(tiny_backbone, 4, seed=1), text_blobs(tiny_backbone, 30, seed=99)

    def run(**o):
        task = make_task("cocoop", tiny_backbone,
                         overrides={"epochs": 10, "lr": 0.05, "batch_size": 4, **o})
        task.train = train
        task.train_views = type(task.train_views)(train.features[None], task.seed)
        return METHODS.get("cocoop")(task)

    fitted, untrained = run(), run(lr=0.0, warmup_lr=0.0)
    assert fitted.info["train_loss_last_epoch"] < 0.5 * fitted.info["train_loss_first_epoch"]
    assert accuracy(fitted, test) >= accuracy(untrained, test) + 0.05


def test_only_context_and_meta_net_train_backbone_untouched(tiny_backbone):
    before = {k: v.clone() for k, v in tiny_backbone.model.state_dict().items()}
    fitted = fit(tiny_backbone, epochs=1)
    after = tiny_backbone.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(p.requires_grad for p in tiny_backbone.model.parameters())
    assert fitted.info["meta_hidden"] == 64 // 16 and fitted.info["n_ctx"] == 4


@pytest.mark.parametrize("precision", ["amp_bf16", "fp16"])
def test_low_precision_options_run_and_agree(tiny_backbone, precision):
    test = blobs(4, 10, 64, seed=96)
    ref, low = fit(tiny_backbone), fit(tiny_backbone, precision=precision)
    assert low.info["precision"] == precision
    same = low.logits(test.features).argmax(1) == ref.logits(test.features).argmax(1)
    agree = same.float().mean()
    assert agree >= 0.9


# -- config ----------------------------------------------------------------------------------
def test_defaults_are_the_released_config():
    for dataset, shots in (("imagenet", 16), ("dtd", 1)):
        _, cfg = resolve_method_config(MethodSpec("cocoop"), dataset, shots)
        assert {k: cfg[k] for k in ("n_ctx", "ctx_init", "batch_size", "epochs", "lr",
                                    "warmup_epochs", "warmup_lr", "meta_ratio", "precision")} == \
            {"n_ctx": 4, "ctx_init": "a photo of a", "batch_size": 1, "epochs": 10, "lr": 0.002,
             "warmup_epochs": 1, "warmup_lr": 1e-5, "meta_ratio": 16, "precision": "auto"}
    data, schema = load_method_file("cocoop"), method_schema("cocoop")
    assert set(data["defaults"]) <= set(schema)
    for variant in [None, *data["variants"]]:
        _, cfg = resolve_method_config(MethodSpec("cocoop", variant), "dtd", 16)
        assert check_config(cfg, schema) == []
    assert check_config({**cfg, "prompt_chunk": 0}, schema) != []


@pytest.mark.parametrize("variant,n_ctx", [("ctx_rand", 4), ("c8", 8)])
def test_random_init_variants(tiny_backbone, variant, n_ctx):
    task = make_task("cocoop", tiny_backbone, variant=variant, overrides={**FAST, "epochs": 1})
    assert METHODS.get("cocoop")(task).info["n_ctx"] == n_ctx


def test_meta_ratio_too_large_is_a_clear_error(tiny_backbone):
    with pytest.raises(ConfigError, match="meta_ratio"):
        fit(tiny_backbone, meta_ratio=128)


def test_bench_run_end_to_end(tmp_path, miniroot, run_cli):
    out = tmp_path / "out"
    code, _, err = run_cli("run", "--data-root", miniroot, "--datasets", "eurosat", "--methods",
                           "cocoop", "--shots", "1", "--seeds", "1", "--backbone",
                           "bench-test-tiny", "--pretrained", "none", "--output", out, "--quiet",
                           "--set", "cocoop.epochs=2")
    assert code == 0, err
    records = sorted((out / "results").rglob("*.json"))
    assert len(records) == 1
    rec = json.loads(records[0].read_text())
    text = json.dumps(rec)
    assert '"cocoop"' in text and "train_loss_last_epoch" in text
