"""TaskRes: a zero residual is zero-shot on the base classifier, the base is the mean of raw
text embeddings, only the residual trains with the release's Adam schedule, and it learns."""

from __future__ import annotations

import pytest
import torch

from methods import METHODS
from methods._training import OptimConfig, lr_at
from methods.taskres import TaskResHead, base_text_features
from tests.test_coop import accuracy, blobs, make_task

FAST = {"epochs": 8, "batch_size": 8, "lr": 0.05}


def test_zero_residual_is_zero_shot(tiny_backbone):
    task = make_task("taskres", tiny_backbone)
    base = base_text_features(task, task.templates)
    head = TaskResHead(base, alpha=0.5, logit_scale=tiny_backbone.logit_scale)
    zs = METHODS.get("zero_shot")(task)
    x = blobs(4, 5, base.shape[1], seed=3).features
    # one template: the raw embedding, normalized = the zero-shot classifier
    torch.testing.assert_close(head(x), zs.logits(x), rtol=1e-5, atol=1e-4)
    # alpha 0 after training: still zero-shot
    fitted = METHODS.get("taskres")(make_task("taskres", tiny_backbone,
                                              overrides={**FAST, "epochs": 2, "alpha": 0.0}))
    torch.testing.assert_close(fitted.logits(x), zs.logits(x), rtol=1e-5, atol=1e-4)


def test_base_averages_raw_embeddings_then_the_head_normalizes(tiny_backbone):
    task = make_task("taskres", tiny_backbone)
    templates = ["a photo of a {}.", "a drawing of a {}."]
    base = base_text_features(task, templates)
    for c, name in enumerate(task.classnames):
        raw = tiny_backbone.encode_text([t.format(name) for t in templates])
        torch.testing.assert_close(base[c], raw.mean(0), rtol=1e-5, atol=1e-5)
    head = TaskResHead(base, alpha=2.0, logit_scale=10.0)
    r = torch.randn(base.shape, generator=torch.Generator().manual_seed(1))
    head.residual.data.copy_(r)
    x = torch.randn(6, base.shape[1], generator=torch.Generator().manual_seed(2))
    t = base + 2.0 * r
    ref = 10.0 * (x / x.norm(dim=1, keepdim=True)) @ (t / t.norm(dim=1, keepdim=True)).T
    torch.testing.assert_close(head(x), ref, rtol=1e-5, atol=1e-5)
    assert [n for n, _ in head.named_parameters()] == ["residual"]


def test_training_learns_and_beats_zero_shot(tiny_backbone):
    test = blobs(4, 30, tiny_backbone.model.text_projection.shape[1], seed=99)
    task = make_task("taskres", tiny_backbone, overrides={**FAST, "alpha": 1.0})
    fitted = METHODS.get("taskres")(task)
    zs = METHODS.get("zero_shot")(task)
    assert fitted.info["residual_norm"] > 0
    assert fitted.info["train_loss_last_epoch"] < 0.7 * fitted.info["train_loss_first_epoch"]
    assert accuracy(fitted, test) > accuracy(zs, test) + 0.25


def test_release_settings():
    from bench.config import MethodSpec, resolve_method_config

    _, cfg = resolve_method_config(MethodSpec("taskres", None), "dtd", 1)
    opt = OptimConfig.from_config(cfg)
    assert (opt.optimizer, opt.lr, opt.batch_size, opt.epochs, cfg["alpha"]) == ("adam", 2e-3, 256, 100, 0.5)
    assert lr_at(0, opt) == 1e-5 and lr_at(1, opt) == pytest.approx(2e-3)
    assert resolve_method_config(MethodSpec("taskres", None), "dtd", 16)[1]["epochs"] == 200
    assert resolve_method_config(MethodSpec("taskres", None), "oxford_flowers", 4)[1]["alpha"] == 1.0
    imnet = resolve_method_config(MethodSpec("taskres", None), "imagenet", 4)[1]
    assert imnet["lr"] == 2e-4 and len(imnet["templates"]) == 8


def test_adam_family_in_the_shared_loop(tiny_backbone):
    """The factory builds what the config names; an unknown name is one clear error."""
    from bench.base.errors import UsageError
    from methods._training import make_optimizer

    p = [torch.nn.Parameter(torch.zeros(2))]
    base = {"lr": 0.1, "weight_decay": 0.0, "batch_size": 4, "epochs": 1}
    assert isinstance(make_optimizer(p, OptimConfig.from_config({**base, "optimizer": "adam"})),
                      torch.optim.Adam)
    adamw = make_optimizer(p, OptimConfig.from_config({**base, "optimizer": "adamw", "eps": 1e-4}))
    assert isinstance(adamw, torch.optim.AdamW) and adamw.defaults["eps"] == 1e-4
    with pytest.raises(UsageError, match="optimizer must be one of"):
        OptimConfig.from_config({**base, "optimizer": "rmsprop"})
    with pytest.raises(UsageError, match="no warm-up"):
        OptimConfig.from_config({**base, "optimizer": "adam", "schedule": "cosine_iter",
                                 "warmup_epochs": 1})


# -- the release's precision (variant release_precision) ---------------------------------------
def fp16_reference(backbone, prompts):
    """OpenAI CLIP's fp16 text model, made from open_clip's own encode_text: its low-precision
    conversion, embeddings and mask in fp16, layer norms computed in fp32 (as OpenAI's)."""
    import copy

    import open_clip.model as ocm
    from open_clip.transformer import LayerNorm, LayerNormFp32

    m = copy.deepcopy(backbone.model)
    ocm.convert_weights_to_lp(m, torch.float16)
    for mod in m.modules():
        if type(mod) in (LayerNorm, torch.nn.LayerNorm):
            mod.__class__ = LayerNormFp32
    m.token_embedding.half()
    m.positional_embedding.data = m.positional_embedding.data.half()
    m.attn_mask = m.attn_mask.half()
    with torch.no_grad():
        out = m.encode_text(backbone.tokenizer(prompts))
    assert out.dtype == torch.float16
    return out.float()


def test_fp16_base_is_the_fp16_text_model(tiny_backbone):
    task = make_task("taskres", tiny_backbone)
    template = ["a photo of a {}."]
    fp16 = base_text_features(task, template, "fp16")
    fp32 = base_text_features(task, template, "fp32")
    ref = fp16_reference(tiny_backbone, [template[0].format(n) for n in task.classnames])
    ulp = 2.0 ** (torch.floor(torch.log2(ref.abs().max())) - 10)  # fp16 spacing at the top
    assert torch.equal(fp16.half().float(), fp16)  # fp16 values (one template: no averaging)
    assert not torch.equal(fp32.half().float(), fp32)
    assert float((fp16 - ref).abs().max()) <= 2 * ulp  # kernels of another shape: an ulp or so
    assert 0 < float((fp16 - fp32).abs().max()) <= 4 * ulp
    with pytest.raises(Exception, match="text_base_precision"):
        base_text_features(task, template, "bf16")


def test_release_precision_variant(tiny_backbone):
    from bench.config import MethodSpec, resolve_method_config

    for method in ("taskres", "clap"):
        cfg = resolve_method_config(MethodSpec(method, "release_precision"), "dtd", 4)[1]
        assert (cfg["text_base_precision"], cfg["tf32"]) == ("fp16", True)
        assert "tf32" not in resolve_method_config(MethodSpec(method), "dtd", 4)[1]  # default unchanged
    fitted = METHODS.get("taskres")(make_task("taskres", tiny_backbone, variant="release_precision",
                                              overrides={**FAST, "epochs": 1}))
    assert (fitted.info["text_base_precision"], fitted.info["tf32"]) == ("fp16", False)  # CPU: no TF32
    default = METHODS.get("taskres")(make_task("taskres", tiny_backbone, overrides={**FAST, "epochs": 1}))
    assert (default.info["text_base_precision"], default.info["tf32"]) == ("fp32", False)


def test_tf32_scope_sets_and_restores_the_flags():
    from methods.taskres import tf32

    flags = lambda: (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    before = flags()
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with tf32(True, torch.device("cuda")):
            assert flags() == (True, True)
        assert flags() == (False, before[1])
        with tf32(True, torch.device("cpu")), tf32(False, torch.device("cuda")):
            assert flags() == (False, before[1])
        with pytest.raises(RuntimeError), tf32(True, torch.device("cuda")):
            raise RuntimeError("a failing fit")
        assert flags() == (False, before[1])
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
