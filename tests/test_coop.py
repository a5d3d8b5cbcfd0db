"""CoOp on the tiny random-init model: the prompt encoder reproduces open_clip's text encoder,
the memory/speed options do not change results, and training learns."""

from __future__ import annotations

import copy

import pytest
import torch

from bench.config import MethodSpec, resolve_method_config
from bench.base.errors import UsageError
from bench.views import CachedViews
from methods import METHODS
from methods._training import OptimConfig, batches, lr_at, seeded_generator
from methods.base import FeatureSplit, Task
from methods.coop import PromptEncoder, _text_block, _token_rows, build_layout, text_tower

NAMES = ["dog", "golden retriever", "sea lion", "x ray machine"]
CPU = torch.device("cpu")


def blobs(n_classes: int, per_class: int, dim: int, seed: int, noise: float = 0.6,
          centers_seed: int = 123) -> FeatureSplit:
    """Raw features around random class centers (unrelated to the class names' text)."""
    centers = torch.randn(n_classes, dim, generator=torch.Generator().manual_seed(centers_seed))
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n_classes).repeat_interleave(per_class)
    x = 3 * centers[y] + noise * 3 * torch.randn(len(y), dim, generator=g)
    return FeatureSplit(x, y)


def make_task(method: str, backbone, *, variant=None, overrides=None, shots=4, seed=1,
              n_classes=4, dataset="dtd", n_views=2, val=None) -> Task:
    _, cfg = resolve_method_config(MethodSpec(method, variant), dataset, shots, overrides)
    dim = backbone.model.text_projection.shape[1]
    train = blobs(n_classes, shots, dim, seed=10 + seed)
    views = torch.stack([train.features + 0.3 * torch.randn(train.features.shape,
                                                            generator=torch.Generator().manual_seed(v))
                         for v in range(n_views)])
    return Task(dataset=dataset, classnames=NAMES[:n_classes] if n_classes <= len(NAMES)
                else [f"class {i}" for i in range(n_classes)],
                templates=["a photo of a {}."], shots=shots, seed=seed, config=cfg, device=CPU,
                train=train, val=val if val is not None else blobs(n_classes, min(shots, 4), dim, seed=20 + seed),
                train_views=CachedViews(views, seed), backbone=backbone)


def accuracy(fitted, split: FeatureSplit) -> float:
    return (fitted.logits(split.features).argmax(1) == split.labels).float().mean().item()


# -- the prompt encoder ------------------------------------------------------------------------
@pytest.mark.parametrize("cut", [True, False])
@pytest.mark.parametrize("position,template", [
    ("end", "a photo of a {}."),      # [SOS][a photo of a][name][.][EOT]
    ("front", "{} a photo of a."),    # [SOS][name][a photo of a][.][EOT]
    ("middle", "a photo {} of a."),   # [SOS][a photo][name][of a][.][EOT]: ctx halves around the name
])
def test_prompt_encoder_equals_open_clip_encode_text(tiny_backbone, position, template, cut):
    tower = text_tower(tiny_backbone.model)
    tokens = _token_rows(tiny_backbone.tokenizer, ["a photo of a"])[0]
    assert len(tokens) == 4
    ctx = tower.token_embedding(torch.tensor(tokens)).detach()
    layout = build_layout(tiny_backbone.tokenizer, NAMES, 4, position,
                          tiny_backbone.context_length)
    enc = PromptEncoder(tower, layout, dtype=torch.float32, cut_sequence=cut,
                        grad_checkpointing=False, device=CPU)
    assert enc.seq_len == (int(layout.eot.max()) + 1 if cut else tiny_backbone.context_length)
    assert enc.seq_len < tiny_backbone.context_length or not cut
    ours = enc(ctx, torch.arange(len(NAMES)))
    ref = tiny_backbone.encode_text([template.format(n) for n in NAMES])
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    # a different context gives different embeddings (the comparison can fail)
    assert not torch.allclose(enc(ctx.flip(0), torch.arange(len(NAMES))), ref, atol=1e-3)


def test_text_blocks_run_the_causal_kernels_with_the_same_result(tiny_backbone, monkeypatch):
    """The text blocks call attention with is_causal=True: scaled_dot_product_attention gets no
    mask (its causal kernels run), and outputs and gradients equal open_clip's float-mask call."""
    import torch.nn.functional as F

    tower = text_tower(tiny_backbone.model)
    block, L = tower.transformer.resblocks[0], 9
    mask = tower.attn_mask[:L, :L]
    width = tower.token_embedding.weight.shape[1]
    shape = (3, L, width) if tower.transformer.batch_first else (L, 3, width)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    calls, sdpa = [], F.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, **kw):
        calls.append((attn_mask is None, is_causal))
        return sdpa(q, k, v, attn_mask, dropout_p, is_causal, **kw)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours, ref = _text_block(block, xa, mask), block(xb, attn_mask=mask)
    assert calls == [(True, True), (False, False)]
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    ours.square().sum().backward()
    ref.square().sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-5, atol=1e-5)
    # without a mask (a non-causal tower) the block is called as open_clip calls it
    torch.testing.assert_close(_text_block(block, x, None), block(x), rtol=0, atol=0)


@pytest.mark.parametrize("names,position,prefix", [
    (NAMES, "end", 1 + 4),                                   # [SOS] + the context
    (["red fox", "red panda", "red kite"], "end", 1 + 4 + 1),  # ... + the names' common token
    (NAMES, "middle", 1 + 2),                                # [SOS] + the context's first half
    (["dog"], "end", None),                                  # one class: all but its EOT
    (NAMES, "front", 0),                                     # only [SOS] in common: not used
])
@pytest.mark.parametrize("cut", [True, False])
def test_shared_prefix_encoder_gives_the_same_embeddings_and_gradients(tiny_backbone, names,
                                                                         position, prefix, cut):
    """The positions every prompt shares run once: same class embeddings and context gradient
    as the plain encoder, for every class subset.

    The two paths compute the same sums in another order, so in float32 they differ by rounding
    alone. That is checked from the arithmetic, not with a tolerance fitted to one CPU: in
    float64 the two paths agree to 1e-12 (the algorithm is exact), and in float32 the shared
    path is no farther from the float64 result than a small multiple of the plain path's own
    rounding error (plus a few float32 ulps of the largest value)."""
    tower64 = text_tower(copy.deepcopy(tiny_backbone.model).double())
    layout = build_layout(tiny_backbone.tokenizer, names, 4, position, tiny_backbone.context_length)
    ctx0 = 0.3 * torch.randn(4, tower64.token_embedding.weight.shape[1],
                             generator=torch.Generator().manual_seed(1))
    weights = torch.randn(len(names), tower64.text_projection.shape[1],
                          generator=torch.Generator().manual_seed(2))
    outs, grads = {}, {}
    for dtype, tower in ((torch.float32, text_tower(tiny_backbone.model)),
                         (torch.float64, tower64)):
        kw = dict(dtype=dtype, cut_sequence=cut, grad_checkpointing=False, device=CPU)
        plain, shared = PromptEncoder(tower, layout, **kw), PromptEncoder(tower, layout, **kw,
                                                                         shared_prefix=True)
        expected = int(layout.eot[0]) if prefix is None else prefix
        assert plain.prefix_len == 0 and shared.prefix_len == expected
        for kind, enc in (("plain", plain), ("shared", shared)):
            ctx = ctx0.to(dtype, copy=True).requires_grad_()
            out = enc(ctx, torch.arange(len(names)))
            (out * weights.to(out.dtype)).sum().backward()
            outs[kind, dtype], grads[kind, dtype] = out.detach(), ctx.grad.clone()
            for subset in ([len(names) - 1], [0, len(names) - 1][:len(names)]):
                torch.testing.assert_close(enc(ctx, torch.tensor(subset)).detach(),
                                           out[subset].detach(), rtol=1e-5, atol=1e-5)
    for got in (outs, grads):
        exact = got["plain", torch.float64]
        assert (got["shared", torch.float64] - exact).abs().max() <= 1e-12 * exact.abs().max()
        plain_err = (got["plain", torch.float32].double() - exact).abs().max()
        shared_err = (got["shared", torch.float32].double() - exact).abs().max()
        ulps = 4 * torch.finfo(torch.float32).eps * exact.abs().max()
        assert shared_err <= 4 * plain_err + ulps, (shared_err, plain_err)
    assert grads["plain", torch.float32].abs().sum() > 0


def test_shared_prefix_with_checkpointing_and_class_specific_context(tiny_backbone):
    tower = text_tower(tiny_backbone.model)
    layout = build_layout(tiny_backbone.tokenizer, NAMES, 4, "end", tiny_backbone.context_length)
    kw = dict(dtype=torch.float32, cut_sequence=True, device=CPU, shared_prefix=True)
    ctx = (0.3 * torch.randn(4, tower.token_embedding.weight.shape[1],
                             generator=torch.Generator().manual_seed(1))).requires_grad_()
    grads = []
    for ckpt in (False, True):
        enc = PromptEncoder(tower, layout, grad_checkpointing=ckpt, **kw)
        enc(ctx, torch.arange(4)).square().sum().backward()
        grads.append(ctx.grad.clone())
        ctx.grad = None
    torch.testing.assert_close(grads[1], grads[0])
    # a class-specific context shares nothing: the plain path, same result as without the option
    csc = ctx.detach()[None].repeat(4, 1, 1) + 0.1 * torch.randn(4, 4, ctx.shape[1])
    plain = PromptEncoder(tower, layout, grad_checkpointing=False,
                          **{**kw, "shared_prefix": False})
    torch.testing.assert_close(enc(csc, torch.arange(4)), plain(csc, torch.arange(4)),
                               rtol=0, atol=0)


def test_class_specific_context_and_subsets(tiny_backbone):
    """csc: class c reads its own context; encoding a subset of classes gives the same rows."""
    tower = text_tower(tiny_backbone.model)
    layout = build_layout(tiny_backbone.tokenizer, NAMES, 4, "end", tiny_backbone.context_length)
    enc = PromptEncoder(tower, layout, dtype=torch.float32, cut_sequence=True,
                        grad_checkpointing=False, device=CPU)
    phrases = ["a photo of a", "a picture of a", "an image of a", "a drawing of a"]
    ctx = torch.stack([tower.token_embedding(torch.tensor(_token_rows(tiny_backbone.tokenizer, [p])[0]))
                       for p in phrases]).detach()
    ours = enc(ctx, torch.arange(4))
    ref = tiny_backbone.encode_text([f"{p} {n}." for p, n in zip(phrases, NAMES)])
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(enc(ctx, torch.tensor([2, 0])), ours[[2, 0]], rtol=1e-5, atol=1e-5)


def test_prompt_too_long_is_a_clear_error(tiny_backbone):
    with pytest.raises(UsageError, match="tokens"):
        build_layout(tiny_backbone.tokenizer, ["dog"], 38, "end", tiny_backbone.context_length)


# -- the shared training loop ------------------------------------------------------------------
def test_schedule_and_batches_follow_dassl():
    opt = OptimConfig(lr=0.002, momentum=0.9, weight_decay=5e-4, batch_size=32, epochs=50,
                      warmup_epochs=1, warmup_lr=1e-5)
    assert lr_at(0, opt) == 1e-5
    assert lr_at(1, opt) == pytest.approx(0.002)
    assert lr_at(26, opt) == pytest.approx(0.001)
    assert 0 < lr_at(49, opt) < 0.002 * 0.01
    g = seeded_generator(0)
    assert [len(b) for b in batches(20, 32, g)] == [20]  # fewer than 32: kept
    assert [len(b) for b in batches(40, 32, g)] == [32]  # the incomplete last batch is dropped
    assert [len(b) for b in batches(64, 32, g)] == [32, 32]
    a, b = batches(40, 32, seeded_generator(5)), batches(40, 32, seeded_generator(5))
    assert torch.equal(a[0], b[0])


# -- fit ---------------------------------------------------------------------------------------
FAST = {"epochs": 8, "lr": 0.05, "n_ctx": 4, "batch_size": 8}


def text_blobs(backbone, per_class: int, seed: int, noise: float = 1.0) -> FeatureSplit:
    """Features near the text embeddings of another prompt ("itap of the {name}."): a learned
    context can move the class embeddings toward them."""
    t = backbone.encode_text([f"itap of the {n}." for n in NAMES])
    t = t / t.norm(dim=-1, keepdim=True)
    y = torch.arange(len(NAMES)).repeat_interleave(per_class)
    g = torch.Generator().manual_seed(seed)
    return FeatureSplit(t[y] + noise * torch.randn(len(y), t.shape[1], generator=g) / 8, y)


def _fit_on(backbone, train: FeatureSplit, overrides: dict):
    task = make_task("coop", backbone, overrides=overrides)
    task.train, task.train_views = train, CachedViews(train.features[None], task.seed)
    return METHODS.get("coop")(task)


def test_unified_context_learns_and_beats_untrained(tiny_backbone):
    train, test = text_blobs(tiny_backbone, 4, seed=1), text_blobs(tiny_backbone, 30, seed=99)
    overrides = {**FAST, "epochs": 10}
    fitted = _fit_on(tiny_backbone, train, overrides)
    untrained = _fit_on(tiny_backbone, train, {**overrides, "lr": 0.0, "warmup_lr": 0.0})
    info = fitted.info
    assert info["train_loss_last_epoch"] < 0.5 * info["train_loss_first_epoch"]
    assert untrained.info["train_loss_last_epoch"] == pytest.approx(info["train_loss_first_epoch"], rel=1e-3)
    assert accuracy(fitted, test) >= accuracy(untrained, test) + 0.05
    assert info["n_ctx"] == 4 and info["precision"] == "fp32" and not info["csc"]


def test_class_specific_context_learns_unrelated_classes(tiny_backbone):
    """Class centers unrelated to the names: only a per-class context can fit them."""
    test = blobs(4, 30, 64, seed=99)
    overrides = {**FAST, "csc": True}
    fitted = METHODS.get("coop")(make_task("coop", tiny_backbone, overrides=overrides))
    untrained = METHODS.get("coop")(make_task("coop", tiny_backbone,
                                              overrides={**overrides, "lr": 0.0, "warmup_lr": 0.0}))
    assert fitted.info["train_loss_last_epoch"] < 0.2 * fitted.info["train_loss_first_epoch"]
    assert accuracy(fitted, test) > accuracy(untrained, test) + 0.4


def test_only_the_context_trains_and_the_backbone_is_untouched(tiny_backbone):
    before = {k: v.clone() for k, v in tiny_backbone.model.state_dict().items()}
    METHODS.get("coop")(make_task("coop", tiny_backbone, overrides={**FAST, "epochs": 2}))
    after = tiny_backbone.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(p.requires_grad for p in tiny_backbone.model.parameters())
    assert not tiny_backbone.model.training


def test_memory_options_do_not_change_results(tiny_backbone):
    """Sequence cut, shared prefix, class chunks (two-pass exact gradient) and checkpointing:
    same model as the plain encoder over the whole sequence."""
    test = blobs(4, 10, 64, seed=98)
    base = {**FAST, "epochs": 2}
    ref = METHODS.get("coop")(make_task("coop", tiny_backbone, overrides={
        **base, "cut_sequence": False, "shared_prefix": False}))
    assert ref.info["shared_prefix_len"] == 0
    for extra in ({"shared_prefix": True, "cut_sequence": False},
                  {"shared_prefix": False, "cut_sequence": True},
                  {"cut_sequence": True},
                  {"class_chunk": 3, "grad_checkpointing": True}):
        other = METHODS.get("coop")(make_task("coop", tiny_backbone, overrides={**base, **extra}))
        torch.testing.assert_close(other.logits(test.features), ref.logits(test.features),
                                   rtol=1e-4, atol=1e-4, msg=str(extra))
        assert (other.info["shared_prefix_len"] > 0) == extra.get("shared_prefix", True)
    assert ref.info["seq_len"] == tiny_backbone.context_length


def test_same_seed_same_model_other_seed_differs(tiny_backbone):
    test = blobs(4, 5, 64, seed=97)
    run = lambda seed: METHODS.get("coop")(make_task("coop", tiny_backbone, seed=seed,
                                                     overrides={**FAST, "epochs": 2}))
    a, b, c = run(1), run(1), run(2)
    assert torch.equal(a.logits(test.features), b.logits(test.features))
    assert not torch.allclose(a.logits(test.features), c.logits(test.features))


@pytest.mark.parametrize("variant,expect", [("csc", {"csc": True, "n_ctx": 4}),
                                             ("ctx_init", {"csc": False, "n_ctx": 4}),
                                             ("class_middle", {"n_ctx": 4}),
                                             ("class_front", {"n_ctx": 4})])
def test_variants_run(tiny_backbone, variant, expect):
    fitted = METHODS.get("coop")(make_task("coop", tiny_backbone, variant=variant,
                                           overrides={**FAST, "epochs": 1}))
    assert expect.items() <= fitted.info.items()


def test_ctx_init_without_training_is_the_handwritten_prompt(tiny_backbone):
    """"a photo of a" init with lr 0: logits = zero-shot CLIP with "a photo of a {}."."""
    task = make_task("coop", tiny_backbone, variant="ctx_init",
                     overrides={"epochs": 1, "lr": 0.0, "warmup_lr": 0.0})
    fitted = METHODS.get("coop")(task)
    zs = METHODS.get("zero_shot")(task)
    x = blobs(4, 3, 64, seed=5).features
    torch.testing.assert_close(fitted.logits(x), zs.logits(x), rtol=1e-4, atol=1e-4)


def test_ctx_init_with_csc_is_refused(tiny_backbone):
    with pytest.raises(UsageError, match="csc"):
        METHODS.get("coop")(make_task("coop", tiny_backbone, variant="ctx_init",
                                      overrides={"csc": True, "epochs": 1}))


@pytest.mark.parametrize("precision", ["amp_bf16", "fp16"])
def test_low_precision_options_run_and_agree(tiny_backbone, precision):
    test = blobs(4, 10, 64, seed=96)
    base = {**FAST, "epochs": 2}
    ref = METHODS.get("coop")(make_task("coop", tiny_backbone, overrides=base))
    low = METHODS.get("coop")(make_task("coop", tiny_backbone, overrides={**base, "precision": precision}))
    assert low.info["precision"] == precision
    agree = (low.logits(test.features).argmax(1) == ref.logits(test.features).argmax(1)).float().mean()
    assert agree >= 0.9


def test_epochs_follow_shots_and_imagenet():
    cfg = lambda ds, k: resolve_method_config(MethodSpec("coop"), ds, k)[1]["epochs"]
    assert [cfg("dtd", k) for k in (1, 2, 4, 8, 16)] == [50, 100, 100, 200, 200]
    assert [cfg("imagenet", k) for k in (1, 16)] == [50, 50]


# -- other classes (base-to-novel, cross-dataset) ----------------------------------------------
def test_for_classes_reuses_the_learned_context(tiny_backbone):
    """The training names give the fitted logits; a subset (reordered) gives those columns;
    other names are encoded with the same learned context (not the untrained one)."""
    task = make_task("coop", tiny_backbone, overrides={**FAST, "epochs": 3})
    fitted = METHODS.get("coop")(task)
    x = blobs(4, 3, 64, seed=7).features
    full = fitted.logits(x)
    same = fitted.on_classes(list(NAMES), ["{}"], "dtd").logits(x)
    torch.testing.assert_close(same, full, rtol=1e-5, atol=1e-5)
    sub = fitted.on_classes([NAMES[3], NAMES[1]], ["{}"], "dtd").logits(x)
    torch.testing.assert_close(sub, full[:, [3, 1]], rtol=1e-4, atol=1e-4)
    # unseen names: the learned context, checked against an encoder built by hand from it
    tower = text_tower(tiny_backbone.model)
    layout = build_layout(tiny_backbone.tokenizer, ["cat", "tree"], 4, "end",
                          tiny_backbone.context_length)
    enc = PromptEncoder(tower, layout, dtype=torch.float32, cut_sequence=True,
                        grad_checkpointing=False, device=CPU)
    untrained = METHODS.get("coop")(make_task("coop", tiny_backbone,
                                              overrides={**FAST, "epochs": 1, "lr": 0.0,
                                                         "warmup_lr": 0.0}))
    new = fitted.on_classes(["cat", "tree"], ["{}"], "other").logits(x)
    old = untrained.on_classes(["cat", "tree"], ["{}"], "other").logits(x)
    assert not torch.allclose(new, old, atol=1e-3)  # the trained context is what moves them
    ctx0 = torch.randn(4, tower.token_embedding.weight.shape[1],
                       generator=seeded_generator(task.seed)) * 0.02
    t = enc(ctx0, torch.arange(2)).detach()
    ref = tiny_backbone.logit_scale * (x / x.norm(dim=-1, keepdim=True)) @ (t / t.norm(dim=-1, keepdim=True)).T
    torch.testing.assert_close(old, ref, rtol=1e-4, atol=1e-4)


def test_class_specific_context_cannot_score_other_classes(tiny_backbone):
    fitted = METHODS.get("coop")(make_task("coop", tiny_backbone, variant="csc",
                                           overrides={**FAST, "epochs": 1}))
    assert fitted.for_classes is None
    with pytest.raises(TypeError, match="cannot score classes"):
        fitted.on_classes(["cat"], ["{}"], "dtd")
    flag = METHODS.entry("coop").extra.get("new_classes")
    assert flag({"csc": False}) and not flag({"csc": True})


@pytest.mark.parametrize("method", ["coop", "kgcoop", "prograd", "cocoop"])
def test_prompt_learners_name_themselves_in_config_errors(tiny_backbone, method):
    """The shared prompt code reports errors under the method that runs it."""
    from bench.base.schema import ConfigError

    task = make_task(method, tiny_backbone, overrides={"precision": "fp8"})
    with pytest.raises(ConfigError, match=rf"^{method}: precision must be one of"):
        METHODS.get(method)(task)
