"""ProGrad: the projection against hand-made vectors, the distillation loss against its
definition, one real step on the tiny model against a step computed by hand, and its defaults."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import methods.prograd as prograd
import bench.config as config
from bench.config import MethodSpec, resolve_method_config
from bench.base.errors import UsageError
from bench.views import CachedViews
from datasets_registry import DATASETS
from methods import METHODS
from methods.base import FeatureSplit
from methods.coop import PromptEncoder, _token_rows, build_layout, text_tower
from methods.prograd import distillation, project_gradient
from tests.test_coop import NAMES, blobs, make_task

CPU = torch.device("cpu")


# -- the projection ----------------------------------------------------------------------------
def test_conflicting_gradient_loses_its_component_along_the_general_direction():
    g, h = torch.tensor([1.0, 0.0]), torch.tensor([-2.0, 2.0])  # cos = -1/sqrt(2) < 0
    # h/|h| = (-1, 1)/sqrt(2); g . h/|h| = -1/sqrt(2); g - (that) h/|h| = (1, 0) - (1/2, -1/2)
    torch.testing.assert_close(project_gradient(g, h, 1.0), torch.tensor([0.5, 0.5]))
    assert float(project_gradient(g, h, 1.0) @ h) == pytest.approx(0.0, abs=1e-6)
    torch.testing.assert_close(project_gradient(g, h, 0.8), torch.tensor([0.6, 0.4]))
    torch.testing.assert_close(project_gradient(g, h, 0.0), g)


def test_agreeing_gradient_is_kept_and_shapes_survive():
    g, h = torch.tensor([1.0, 0.5]), torch.tensor([1.0, 1.0])
    assert torch.equal(project_gradient(g, h, 1.0), g)
    g3 = torch.tensor([[[3.0, 0.0]], [[0.0, 1.0]]])  # a (C, M, W) class-specific shape
    h3 = torch.tensor([[[-1.0, 0.0]], [[0.0, 0.0]]])
    out = project_gradient(g3, h3, 1.0)
    assert out.shape == g3.shape
    torch.testing.assert_close(out, torch.tensor([[[0.0, 0.0]], [[0.0, 1.0]]]))
    half = project_gradient(g.half(), -h.half(), 1.0)
    assert half.dtype == torch.float16
    # a zero general-direction gradient (the model equals the teacher) leaves g as it is
    assert torch.equal(project_gradient(g, torch.zeros(2), 1.0), g)


def test_distillation_is_t2_times_soft_cross_entropy():
    s = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    t = torch.tensor([[0.5, 0.5, 2.0], [1.0, 1.0, 1.0]])
    T = 2.0
    by_hand = 0.0
    for i in range(2):
        zt = sum(math.exp(v / T) for v in t[i].tolist())
        zs = sum(math.exp(v / T) for v in s[i].tolist())
        by_hand += sum(-(math.exp(a / T) / zt) * (b / T - math.log(zs))
                       for a, b in zip(t[i].tolist(), s[i].tolist()))
    assert float(distillation(s, t, T)) == pytest.approx(T * T * by_hand / 2, rel=1e-5)
    # same gradient as the KL divergence (the teacher's entropy is a constant)
    s1, s2 = s.clone().requires_grad_(), s.clone().requires_grad_()
    distillation(s1, t, T).backward()
    kl = F.kl_div(F.log_softmax(s2 / T, -1), F.softmax(t / T, -1), reduction="batchmean")
    (kl * T * T).backward()
    torch.testing.assert_close(s1.grad, s2.grad)


# -- one real step -----------------------------------------------------------------------------
TEACHER = "itap of the {}."


def one_step_task(backbone, labels_shift: int, lam: float, n_ctx: int = 6):
    """Train features at the teacher's text embeddings; labels rolled by ``labels_shift`` (then
    every label contradicts the teacher's prediction, and CE and KL can pull apart)."""
    t = backbone.encode_text([TEACHER.format(n) for n in NAMES])
    y = torch.arange(4).repeat_interleave(2)
    g = torch.Generator().manual_seed(0)
    x = t[y] / t[y].norm(dim=-1, keepdim=True) + 0.05 * torch.randn(len(y), t.shape[1], generator=g)
    train = FeatureSplit(x, (y + labels_shift) % 4)
    task = make_task("prograd", backbone, overrides={
        "epochs": 1, "lr": 0.5, "warmup_epochs": 0, "batch_size": 64, "momentum": 0.9,
        "weight_decay": 5e-4, "n_ctx": n_ctx, "prograd_lambda": lam,
        "prograd_templates": [TEACHER], "ctx_init": "a photo of a"})
    task.train, task.train_views = train, CachedViews(x[None], task.seed)
    return task


def by_hand_grads(backbone, task, n_ctx: int):
    """ctx0 (zeros, then "a photo of a"), and the CE and KL gradients, computed directly."""
    tower = text_tower(backbone.model)
    tokens = _token_rows(backbone.tokenizer, ["a photo of a"])[0]
    ctx0 = torch.zeros(n_ctx, tower.token_embedding.weight.shape[1])
    ctx0[n_ctx - len(tokens):] = tower.token_embedding(torch.tensor(tokens)).detach()
    layout = build_layout(backbone.tokenizer, NAMES, n_ctx, "end", backbone.context_length)
    enc = PromptEncoder(tower, layout, dtype=torch.float32, cut_sequence=False,
                        grad_checkpointing=False, device=CPU)
    x, y = task.train.features, task.train.labels
    xn = x / x.norm(dim=-1, keepdim=True)
    zs = backbone.encode_text([TEACHER.format(n) for n in NAMES])
    zs = zs / zs.norm(dim=-1, keepdim=True)
    p_zs = F.softmax(backbone.logit_scale * xn @ zs.T, dim=-1)
    grads = []
    for which in ("ce", "kl"):
        ctx = ctx0.clone().requires_grad_()
        t = enc(ctx, torch.arange(4))
        logits = backbone.logit_scale * xn @ (t / t.norm(dim=-1, keepdim=True)).T
        loss = (F.cross_entropy(logits, y) if which == "ce"
                else -(p_zs * F.log_softmax(logits, -1)).sum(1).mean())
        grads.append(torch.autograd.grad(loss, ctx)[0])
    return ctx0, enc, grads[0], grads[1]


@pytest.mark.parametrize("shift,conflict", [(1, True), (0, False)])
def test_real_step_uses_the_projected_gradient(tiny_backbone, monkeypatch, shift, conflict):
    n_ctx, lam = 6, 1.0
    task = one_step_task(tiny_backbone, shift, lam, n_ctx)
    seen = []
    real = prograd.project_gradient
    monkeypatch.setattr(prograd, "project_gradient",
                        lambda g, h, l: seen.append((g, h)) or real(g, h, l))
    fitted = METHODS.get("prograd")(task)
    ctx0, enc, g_ce, g_kl = by_hand_grads(tiny_backbone, task, n_ctx)
    (g_seen, h_seen), = seen
    torch.testing.assert_close(g_seen, g_ce, rtol=1e-3, atol=2e-5)
    torch.testing.assert_close(h_seen, g_kl, rtol=1e-3, atol=2e-5)
    dot = float((g_ce * g_kl).sum())
    assert (dot < 0) == conflict and fitted.info["conflict_rate"] == float(conflict)
    unit = g_kl / g_kl.norm()
    g_new = g_ce - lam * (g_ce * unit).sum() * unit if conflict else g_ce
    # SGD's first step (momentum buffer = d_p): ctx1 = ctx0 - lr * (g' + wd * ctx0)
    ctx1 = ctx0 - 0.5 * (g_new + 5e-4 * ctx0)
    t = enc(ctx1, torch.arange(4)).detach()
    x = blobs(4, 3, 64, seed=8).features
    ref = tiny_backbone.logit_scale * (x / x.norm(dim=-1, keepdim=True)) @ (t / t.norm(dim=-1, keepdim=True)).T
    torch.testing.assert_close(fitted.logits(x), ref, rtol=1e-4, atol=1e-4)
    if conflict:  # the plain CE step lands elsewhere: the projection changed the update
        t_ce = enc(ctx0 - 0.5 * (g_ce + 5e-4 * ctx0), torch.arange(4)).detach()
        assert not torch.allclose(t_ce, t, atol=1e-4)


def test_chunked_classes_give_the_same_step(tiny_backbone):
    x = blobs(4, 3, 64, seed=8).features
    a = METHODS.get("prograd")(one_step_task(tiny_backbone, 1, 1.0))
    task = one_step_task(tiny_backbone, 1, 1.0)
    task.config = {**task.config, "class_chunk": 3}
    b = METHODS.get("prograd")(task)
    torch.testing.assert_close(a.logits(x), b.logits(x), rtol=1e-4, atol=1e-4)


def test_lambda_zero_with_coop_init_is_coop(tiny_backbone):
    """lambda 0 never changes the CE gradient: with CoOp's "a photo of a" init (n_ctx 4, no zero
    slots) and CoOp's optimization, ProGrad trains the same model."""
    x = blobs(4, 5, 64, seed=9).features
    opt = {"epochs": 3, "lr": 0.05, "batch_size": 8}
    coop = METHODS.get("coop")(make_task("coop", tiny_backbone,
                                         overrides={**opt, "ctx_init": "a photo of a"}))
    pg = METHODS.get("prograd")(make_task("prograd", tiny_backbone, overrides={
        **opt, "n_ctx": 4, "ctx_init": "a photo of a", "prograd_lambda": 0.0}))
    torch.testing.assert_close(pg.logits(x), coop.logits(x), rtol=1e-5, atol=1e-5)
    assert pg.info["train_loss_last_epoch"] == pytest.approx(coop.info["train_loss_last_epoch"], rel=1e-5)


# -- the initial prompt against the release's construction -------------------------------------
# ProGrad's own CUSTOM_TEMPLATES for the four comma templates (BeierZhu/Prompt-align @ 1b76203,
# ProGrad.public/trainers/prograd.py), with class names of each dataset.
COMMA_TEMPLATES = {
    "oxford_pets": ("a type of pet, a photo of a {}.", ["abyssinian", "american bulldog", "yorkshire terrier"]),
    "oxford_flowers": ("a type of flower, a photo of a {}.", ["pink primrose", "hard-leaved pocket orchid", "bishop of llandaff"]),
    "fgvc_aircraft": ("a type of aircraft, a photo of a {}.", ["707-320", "A340-500", "Cessna 172"]),
    "food101": ("a type of food, a photo of {}.", ["apple pie", "baby back ribs", "crème brûlée"]),
}


def release_prompts(template: str, names: list[str], n_ctx: int = 16) -> list[list]:
    """ProGrad's PromptLearner with CTX_INIT True, written from the release and run with
    open_clip's tokenizer: per class, the token ids up to EOT of the prompt it encodes, with each
    context slot given as the id whose embedding starts it (None: a zero vector)."""
    import open_clip

    ctx_init = template.replace(" {}.", "").replace("_", " ")
    prompt_n_ctx = len(ctx_init.split(" "))
    phrase = open_clip.tokenize([ctx_init])[0].tolist()
    init = [None] * (n_ctx - prompt_n_ctx) + phrase[1:1 + prompt_n_ctx]  # embedding[0, 1:1+M]
    prefix = " ".join(["X"] * (n_ctx - prompt_n_ctx)) + " " + ctx_init
    rows = []
    for name in names:
        ids = open_clip.tokenize([prefix + " " + name + "."])[0].tolist()
        eot = ids.index(max(ids))
        rows.append([ids[0]] + init + ids[1 + n_ctx:eot + 1])  # SOS, ctx, token_suffix
    return rows


def bench_prompts(backbone, core, encoder=None) -> list[list]:
    """The same view of ProGrad's PromptCore before training: layout ids, context slots replaced
    by the token id whose embedding each initial context vector equals (None: zeros)."""
    table = text_tower(backbone.model).token_embedding.weight.detach()
    layout = (encoder or core.encoder).layout
    ctx = core.ctx.detach().float()
    slot_ids = []
    for v in ctx:
        hits = (table == v).all(dim=1).nonzero().flatten().tolist()
        assert len(hits) <= 1 and (hits or not v.any()), "a context vector that is no token"
        slot_ids.append(hits[0] if hits else None)
    rows = []
    for ids, cols, eot in zip(layout.ids.tolist(), layout.ctx_cols.tolist(), layout.eot.tolist()):
        row = list(ids[:eot + 1])
        for j, col in enumerate(cols):
            row[col] = slot_ids[j]
        rows.append(row)
    return rows


def prograd_core(backbone, dataset: str, names: list[str], variant=None):
    task = make_task("prograd", backbone, dataset=dataset, variant=variant, n_classes=len(names),
                     overrides={"epochs": 1})
    task.classnames = list(names)
    task.templates = DATASETS.get(dataset).templates  # CoOp's template (prograd_templates: dataset)
    templates = prograd.resolve_templates(task.config["prograd_templates"], task.templates, dataset)
    return prograd.prompt_core(task, templates)


@pytest.mark.parametrize("dataset", sorted(COMMA_TEMPLATES))
def test_initial_prompt_is_the_releases_on_the_comma_templates(tiny_backbone, dataset):
    template, names = COMMA_TEMPLATES[dataset]
    core = prograd_core(tiny_backbone, dataset, names)
    assert bench_prompts(tiny_backbone, core) == release_prompts(template, names)
    assert core.fixed and len(core.fixed) == 1  # 8 words / 9 tokens (food: 7 / 8): one token fixed
    # unseen class names (base-to-novel, for_classes) keep the same fixed token
    other = ["sphynx", "sunflower"]
    assert bench_prompts(tiny_backbone, core, core.encoder_for(other)) == release_prompts(template, other)


def test_all_tokens_variant_puts_the_whole_phrase_in_the_context(tiny_backbone):
    template, names = COMMA_TEMPLATES["oxford_pets"]
    core = prograd_core(tiny_backbone, "oxford_pets", names, variant="all_tokens")
    assert core.fixed == []
    rows = bench_prompts(tiny_backbone, core)
    phrase = _token_rows(tiny_backbone.tokenizer, ["a type of pet, a photo of a"])[0]
    assert len(phrase) == 9 and rows[0][1:17] == [None] * 7 + phrase
    assert rows != release_prompts(template, names)


@pytest.mark.parametrize("dataset,template", [
    ("caltech101", "a photo of a {}."), ("eurosat", "a centered satellite photo of {}."),
    ("ucf101", "a photo of a person doing {}."), ("dtd", "a texture of {}.")])
def test_templates_without_a_comma_are_the_same_in_both_forms(tiny_backbone, dataset, template):
    names = ["apply eye makeup", "forest"]
    words = prograd_core(tiny_backbone, dataset, names)
    tokens = prograd_core(tiny_backbone, dataset, names, variant="all_tokens")
    assert words.fixed == [] and bench_prompts(tiny_backbone, words) == release_prompts(template, names)
    assert bench_prompts(tiny_backbone, tokens) == bench_prompts(tiny_backbone, words)


def test_fixed_tokens_need_the_class_at_the_end(tiny_backbone):
    with pytest.raises(UsageError, match="class_token_position end"):
        METHODS.get("prograd")(make_task("prograd", tiny_backbone, dataset="oxford_pets",
                                         overrides={"epochs": 1, "class_token_position": "middle"}))


# -- config ------------------------------------------------------------------------------------
def test_released_defaults_and_init_phrase():
    cfg = lambda ds, k, v=None: resolve_method_config(MethodSpec("prograd", v), ds, k)[1]
    c = cfg("caltech101", 16)
    assert (c["prograd_lambda"], c["prograd_T"], c["n_ctx"], c["batch_size"], c["lr"]) == (1.0, 1.0, 16, 32, 0.002)
    assert [cfg("ucf101", k)["epochs"] for k in (1, 2, 4, 8, 16)] == [50, 100, 100, 200, 200]
    assert [cfg("dtd", k)["prograd_lambda"] for k in (4, 8, 16)] == [1.0, 0.8, 0.8]
    assert cfg("oxford_pets", 1)["prograd_templates"] == ["a type of pet, a photo of a {}."]
    assert "base2new" not in config.variants_of("prograd")  # now --protocol base2novel's block
    assert prograd.init_phrase({"ctx_init": "template"}, ["a type of pet, a photo of a {}."]) == \
        "a type of pet, a photo of a"
    assert prograd.init_phrase({"ctx_init": None}, ["a {}."]) is None
    with pytest.raises(UsageError, match="words before"):
        prograd.init_phrase({"ctx_init": "template"}, ["{} texture."])


def test_phrase_longer_than_the_context_is_refused(tiny_backbone):
    with pytest.raises(UsageError, match="n_ctx"):
        METHODS.get("prograd")(make_task("prograd", tiny_backbone,
                                         overrides={"n_ctx": 2, "epochs": 1}))


def test_scores_other_classes(tiny_backbone):
    fitted = METHODS.get("prograd")(make_task("prograd", tiny_backbone,
                                              overrides={"epochs": 2, "batch_size": 8, "n_ctx": 8}))
    x = blobs(4, 3, 64, seed=4).features
    torch.testing.assert_close(fitted.on_classes(NAMES[:2], ["{}"], "dtd").logits(x),
                               fitted.logits(x)[:, :2], rtol=1e-4, atol=1e-4)
    flag = METHODS.entry("prograd").extra.get("new_classes")
    assert flag({"csc": False}) and not flag({"csc": True})


@pytest.mark.parametrize("precision", ["fp16", "amp_bf16", "amp_fp16"])
def test_low_precision_runs_and_agrees(tiny_backbone, precision):
    x = blobs(4, 10, 64, seed=6).features
    base = {"epochs": 2, "batch_size": 8, "lr": 0.05, "n_ctx": 8}
    ref = METHODS.get("prograd")(make_task("prograd", tiny_backbone, overrides=base))
    low = METHODS.get("prograd")(make_task("prograd", tiny_backbone,
                                           overrides={**base, "precision": precision}))
    assert low.info["precision"] == precision
    assert low.info["train_loss_last_epoch"] == pytest.approx(ref.info["train_loss_last_epoch"],
                                                              rel=0.05)
    if precision != "amp_fp16":  # (the GradScaler's first scaled steps overflow and are skipped)
        agree = (low.logits(x).argmax(1) == ref.logits(x).argmax(1)).float().mean()
        assert agree >= 0.9
