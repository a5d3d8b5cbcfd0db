"""Equivalence of bench's encoder-tuning methods with their releases' own code.

    python benchmarks/equivalence.py --method clip_lora --release /tmp/CLIP-LoRA
    python benchmarks/equivalence.py --method promptsrc --release /tmp/PromptSRC
    python benchmarks/equivalence.py --method maple --release /tmp/multimodal-prompt-learning
    python benchmarks/equivalence.py --method two_stage --release /tmp/rethinking_fewshot_vlms

``--release`` is a checkout of the release at the commit below (``git --git-dir=REPO.git
--work-tree=/tmp/X checkout COMMIT -- .``); it is imported, never copied into this repository.
One method per process (every release has its own top-level ``clip`` package).

A tiny ViT CLIP (OpenAI's layout: QuickGELU, 77-token context, text width 512, vision width
768 as MaPLe's code hard-codes, 4 layers each, 32 px images in 16 px patches; biases and
LayerNorm parameters perturbed so that none is trivially 0 or 1) is created in open_clip; its
state dict is saved and loaded by the release's own ``clip`` package (``clip.load`` or its
trainers' ``load_clip_to_cpu``, i.e. the release's ``build_model``). Both sides then get
identical tensors: the same random images, the same class names, the release's train loader
replaced by the batches in the order bench's batch plan draws them, bench's initial trainable
tensors copied into the release's modules (or equal by construction). Compared: the logits
and loss of every training step, the trained parameters after the steps, and the test logits
of the trained model (and over unseen classes where the method scores them).

What is stubbed, and why (the releases need a GPU, OpenAI's weights and Dassl.pytorch):

* ``dassl`` (not installable from PyPI): ``TRAINER_REGISTRY.register`` (a no-op decorator),
  ``TrainerX`` (``register_model`` stores the model, optimizer and scheduler; ``update_lr``
  steps the scheduler), ``build_optimizer`` = Dassl's SGD (``torch.optim.SGD(model.parameters(),
  lr, momentum 0.9, weight_decay 5e-4, dampening 0, nesterov False)``, Dassl's defaults),
  ``build_lr_scheduler`` = ``CosineAnnealingLR(T_max=MAX_EPOCH)`` (Dassl's "cosine" with no
  warm-up; the comparison runs without warm-up on both sides);
* ``clip._download`` returns the tiny model's state-dict file (no download);
* ``.cuda()`` of tensors and modules is the identity (CPU run); 2SFS's ``tokenize_texts``
  device argument is the CPU; autocast and GradScaler of CUDA disable themselves on a CPU;
* ``.half()`` of tensors and modules is the identity: an fp32 comparison (the releases cast
  CLIP to fp16 at load and their prompts to fp16 in every block);
* dropout of the LoRA branch is 0 on both sides (its masks come from different RNG streams),
  through the release's dropout code path (``nn.Dropout(0.0)`` on its layers: with
  ``dropout_rate=0`` the release takes another path whose gradient is wrong, see
  ``compare_clip_lora``);
* observation only: ``F.cross_entropy`` and ``cls_acc`` in the releases' modules (and the loss
  functions on bench's side) are wrapped to record their inputs; ``cls_acc`` (printing only) is
  replaced by the same top-1 without its ``float()`` of a one-element array, which numpy 2
  refuses.

Writes ``benchmarks/results/equivalence_<method>.{json,md}``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import math
import sys
import tempfile
import types
from pathlib import Path
from types import SimpleNamespace as NS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, machine_md, table, write_results  # noqa: E402

import torch  # noqa: E402

RELEASES = {
    "clip_lora": ("MaxZanella/CLIP-LoRA", "358f0d7361f59e66c0b2d0b672a3dafb143a759b"),
    "promptsrc": ("muzairkhattak/PromptSRC", "bb95c77b634d63488f2cad81ff4a72d53bdd06d5"),
    "maple": ("muzairkhattak/multimodal-prompt-learning", "69bce21ae8eda80ad6187534b2dce09cf6c59e17"),
    "two_stage": ("FarinaMatteo/rethinking_fewshot_vlms", "64ac143c7d22803bfeeaadfe42f570220ab29b06"),
}
MODEL = "bench-equivalence-vit"
MODEL_CFG = {"embed_dim": 256, "quick_gelu": True,
             "vision_cfg": {"image_size": 32, "layers": 4, "width": 768, "patch_size": 16,
                            "head_width": 64},
             "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8,
                          "layers": 4}}
CLASSES = ["cat", "golden retriever", "sea lion", "airplane", "red panda"]
NOVEL = ["tabby cat", "fire truck", "cat", "sunflower"]  # "cat" is a trained class (2SFS)
SEED = 1


# -- both sides' inputs -------------------------------------------------------------------------

def tiny_backbone():
    """The tiny open_clip model (frozen, fp32), a backbone as methods get it, and its state
    dict file for the release."""
    from bench.backbone import _open_clip

    oc = _open_clip()
    folder = Path(tempfile.mkdtemp(prefix="bench-equivalence-"))
    (folder / f"{MODEL}.json").write_text(json.dumps(MODEL_CFG))
    oc.add_model_config(str(folder / f"{MODEL}.json"))
    torch.manual_seed(0)
    model = oc.create_model(MODEL).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(100.0))
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.add_(0.02 * torch.randn(p.shape, generator=g))
            elif ".ln" in f".{name}" or "ln_" in name:
                p.mul_(1 + 0.1 * torch.randn(p.shape, generator=g))
    model.requires_grad_(False)
    path = folder / "state_dict.pt"
    torch.save({k: v.clone() for k, v in model.state_dict().items()}, path)
    backbone = NS(model=model, tokenizer=oc.get_tokenizer(MODEL), logit_scale=100.0,
                  context_length=77, name=MODEL)
    return backbone, path


def images(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def epoch_orders(n: int, batch_size: int, epochs: int, drop_last: str, seed: int = SEED):
    """The rows of every batch bench's batch plan draws, epoch by epoch (the same generator
    calls as methods/_encoder_training.batch_plan)."""
    from methods._training import batches, seeded_generator

    gen = seeded_generator(seed)
    return [batches(n, batch_size, gen, drop_last) for _ in range(epochs)]


class EpochLoader:
    """A release's train loader: pass e yields epoch e's batches in bench's order."""

    def __init__(self, x, y, orders):
        self.x, self.y, self.orders, self.epoch = x, y, orders, 0

    def __iter__(self):
        batches = self.orders[self.epoch]
        self.epoch += 1
        return iter([(self.x[r], self.y[r]) for r in batches])

    def __len__(self):
        return len(self.orders[0])


def task_for(method: str, backbone, x, y, shots: int, **overrides):
    from bench.config import MethodSpec, resolve_method_config
    from methods.tuning import EncoderTask, ImageSplit, TensorTrainImages

    _, cfg = resolve_method_config(MethodSpec(method, None), "caltech101", shots,
                                   overrides=overrides)
    return EncoderTask("caltech101", list(CLASSES), ["a photo of a {}."], shots, SEED, cfg,
                       torch.device("cpu"), TensorTrainImages(x, y), ImageSplit(x[:0], y[:0]),
                       backbone)


# -- the release's environment ------------------------------------------------------------------

def _identity(self, *args, **kwargs):
    return self


def _dassl_stubs():
    """Just what the releases' trainers import from Dassl.pytorch (see the module doc)."""

    class Registry:
        def register(self, *args, **kwargs):
            return (lambda obj: obj) if not args or not callable(args[0]) else args[0]

    class TrainerX:
        def register_model(self, name, model, optim=None, sched=None):
            self.__dict__.setdefault("_models", {})[name] = model
            self.__dict__.setdefault("_optims", {})[name] = optim
            self.__dict__.setdefault("_scheds", {})[name] = sched

        def get_model_names(self, names=None):
            return list(self._models)

        def update_lr(self, names=None):
            for sched in self._scheds.values():
                if sched is not None:
                    sched.step()

    def build_optimizer(model, optim_cfg):
        return torch.optim.SGD(model.parameters(), lr=optim_cfg.LR, momentum=0.9,
                               weight_decay=5e-4, dampening=0, nesterov=False)

    def build_lr_scheduler(optimizer, optim_cfg):
        assert optim_cfg.WARMUP_EPOCH == 0
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, float(optim_cfg.MAX_EPOCH))

    def unavailable(*args, **kwargs):
        raise NotImplementedError("not stubbed")

    mods = {name: types.ModuleType(name) for name in
            ("dassl", "dassl.engine", "dassl.utils", "dassl.optim", "dassl.metrics")}
    mods["dassl.engine"].TRAINER_REGISTRY = Registry()
    mods["dassl.engine"].TrainerX = TrainerX
    mods["dassl.utils"].load_pretrained_weights = unavailable
    mods["dassl.utils"].load_checkpoint = unavailable
    mods["dassl.optim"].build_optimizer = build_optimizer
    mods["dassl.optim"].build_lr_scheduler = build_lr_scheduler
    mods["dassl.metrics"].compute_accuracy = unavailable
    sys.modules.update(mods)


def release_environment(root: Path, weights: Path) -> None:
    sys.path.insert(0, str(root))
    _dassl_stubs()
    torch.Tensor.cuda = _identity
    torch.nn.Module.cuda = _identity
    torch.Tensor.half = _identity
    torch.nn.Module.half = _identity
    import clip.clip as release_clip

    release_clip._download = lambda url, root=None: str(weights)


class Recorder:
    """Records the inputs of a function it stands in for (observation only)."""

    def __init__(self, fn):
        self.fn, self.calls = fn, []

    def __call__(self, *args, **kwargs):
        self.calls.append([a.detach().clone() if torch.is_tensor(a) else a for a in args])
        return self.fn(*args, **kwargs)


def top1_percent(output, target, topk=1):
    """What the releases' ``cls_acc`` returns (top-1 %), without its numpy-1-only ``float()``
    of a one-element array (numpy 2 refuses it)."""
    return 100.0 * float((output.argmax(dim=1) == target).float().mean())


def functional_proxy(record: dict):
    """``torch.nn.functional`` with ``cross_entropy`` (and the functions in ``record``)
    recorded, for a release module's ``F``."""
    import torch.nn.functional as F

    proxy = types.SimpleNamespace(**{k: getattr(F, k) for k in dir(F) if not k.startswith("__")})
    for name in record:
        record[name] = Recorder(getattr(F, name))
        setattr(proxy, name, record[name])
    return proxy


@contextlib.contextmanager
def quiet():
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def diff(a, b) -> float:
    return float((torch.as_tensor(a).double() - torch.as_tensor(b).double()).abs().max())


def row(what: str, ours, theirs, steps="-") -> list:
    return [what, diff(ours, theirs), float(torch.as_tensor(theirs).double().abs().max()), steps]


def load_release_clip(weights: Path):
    import clip

    with quiet():
        model, _ = clip.load(str(weights), device="cpu")
    ours = torch.load(weights)
    problems = model.load_state_dict(ours, strict=False)
    assert not problems.unexpected_keys and not problems.missing_keys, problems
    return model


# -- CLIP-LoRA ----------------------------------------------------------------------------------

def compare_clip_lora(root: Path, backbone, weights: Path) -> tuple[list, dict]:
    import methods.clip_lora as ours_mod
    from methods._encoder_training import Numerics
    from methods._training import seeded_rng

    n, steps = 8, 2
    x, y = images(n, 10), torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    xt, yt = images(6, 11), torch.tensor([0, 1, 2, 3, 4, 0])
    task = task_for("clip_lora", backbone, x, y, shots=1, dropout=0.0, iters_per_shot=steps,
                    batch_size=n)
    numerics = Numerics("fp32", task.device, "clip_lora")
    with seeded_rng(SEED, task.device):
        lora = ours_mod.LoRAModel(task)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():  # B = 0 would make the first forward the frozen one: use random B
        for p in lora.parameters():
            if p.shape[1] == int(task.config["r"]):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))

    import lora as release  # the release's lora.py
    release_model = load_release_clip(weights)
    orig_apply = release.apply_lora

    def pairs(model):
        """(bench's branch, the release's LinearLoRA) of every LoRA'd projection."""
        out = []
        for tower, branches in ((model.visual.transformer, lora.vision_lora),
                                (model.transformer, lora.text_lora)):
            for i, block in enumerate(tower.resblocks):
                for t in ("q", "k", "v"):
                    out.append((branches[str(i)][t], getattr(block.attn, f"{t}_proj")))
        return out

    def apply_and_copy(args, clip_model):
        layers = orig_apply(args, clip_model)
        with torch.no_grad():
            for mine, theirs in pairs(clip_model):
                theirs.w_lora_A.copy_(mine.A)
                theirs.w_lora_B.copy_(mine.B)
                # the release's own path at its default dropout (0.25), with p = 0: with
                # dropout_rate 0 it builds no Dropout and takes merge_lora_param/sub_lora_data
                # instead, whose in-place .data subtraction after the forward leaves the
                # unmerged weight in the tensor saved for the backward (the input gradient of
                # every LoRA'd projection then misses its update; the release never runs it)
                theirs.dropout = torch.nn.Dropout(0.0)
        return layers

    def flat(tensors):
        return torch.cat([t.detach().flatten() for t in tensors])

    first_grads: dict[str, dict[int, torch.Tensor]] = {"ours": {}, "theirs": {}}

    def grab(side: str, key: int, tensor: torch.Tensor) -> None:
        """Keep ``tensor``'s gradient of the first backward pass."""
        def hook(grad):
            first_grads[side].setdefault(key, grad.detach().clone())
        tensor.register_hook(hook)

    def apply_copy_and_watch(args, clip_model):
        layers = apply_and_copy(args, clip_model)
        for i, (_, theirs) in enumerate(pairs(clip_model)):
            grab("theirs", 2 * i, theirs.w_lora_A)
            grab("theirs", 2 * i + 1, theirs.w_lora_B)
        return layers

    release.apply_lora = apply_copy_and_watch
    record = {"cross_entropy": None}
    release.F = functional_proxy(record)
    accs = Recorder(top1_percent)  # the release's cls_acc fails on numpy 2 (float of a 1-array)
    release.cls_acc = accs
    args = NS(encoder="both", position="all", backbone="ViT-B/16", params=["q", "k", "v"], r=2,
              alpha=1, dropout_rate=0.0, n_iters=steps, shots=1, lr=2e-4, eval_only=False,
              save_path=None, batch_size=n)
    dataset = NS(classnames=list(CLASSES), template=["a photo of a {}."])
    orders = epoch_orders(n, n, steps, "never")
    with quiet():
        release.run_lora(args, release_model, 100, dataset, EpochLoader(x, y, orders),
                         [(xt, yt)], [(xt, yt)])
    ce = record["cross_entropy"]
    theirs_logits = torch.stack([c[0] for c in ce.calls])
    theirs_loss = [float(ce.fn(c[0], c[1])) for c in ce.calls]
    theirs_test = accs.calls[-1][0]  # evaluate_lora's cosine (merged weights, no scale)

    before = None
    ours_ce = Recorder(ours_mod.cross_entropy)
    ours_mod.cross_entropy = ours_ce
    mine_pairs = pairs(release_model)
    before = flat([t for m, _ in mine_pairs for t in (m.A, m.B)])
    for i, (mine, _) in enumerate(mine_pairs):
        grab("ours", 2 * i, mine.A)
        grab("ours", 2 * i + 1, mine.B)
    losses = ours_mod.fit_lora(task, lora, numerics)
    fitted = ours_mod.lora_fitted(task, lora, numerics, losses)
    mine_after = flat([t for m, _ in mine_pairs for t in (m.A, m.B)])
    theirs_after = flat([t for _, r in mine_pairs for t in (r.w_lora_A, r.w_lora_B)])
    ours_logits = torch.stack([c[0] for c in ours_ce.calls])
    rows = [row("train logits (scale 100), first step (same parameters)", ours_logits[0],
                theirs_logits[0], 1),
            row("train logits (scale 100), every step", ours_logits, theirs_logits, steps),
            row("train loss, every step", losses, theirs_loss, steps),
            row("gradients of LoRA A and B, first step: image tower",
                flat([first_grads["ours"][k] for k in range(2 * 3 * len(backbone.model.visual.transformer.resblocks))]),
                flat([first_grads["theirs"][k] for k in range(2 * 3 * len(backbone.model.visual.transformer.resblocks))]), 1),
            row("gradients of LoRA A and B, first step: text tower",
                flat([first_grads["ours"][k] for k in sorted(first_grads["ours"])
                      if k >= 2 * 3 * len(backbone.model.visual.transformer.resblocks)]),
                flat([first_grads["theirs"][k] for k in sorted(first_grads["theirs"])
                      if k >= 2 * 3 * len(backbone.model.visual.transformer.resblocks)]), 1),
            row(f"LoRA A and B after {steps} AdamW steps", mine_after, theirs_after, steps),
            ["(size of the release's update: max abs of after - before)", float("nan"),
             diff(theirs_after, before), steps],
            ["(elements whose update differs by over 10% of lr; of all)",
             int(((mine_after - theirs_after).abs() > 0.1 * 2e-4).sum()), int(mine_after.numel()),
             steps],
            row("the same for the elements whose release update is over 50% of lr",
                mine_after[(theirs_after - before).abs() > 1e-4],
                theirs_after[(theirs_after - before).abs() > 1e-4], steps),
            row("test logits / 100 of the trained model (release: merged weights)",
                fitted.logits(xt) / 100.0, theirs_test)]
    notes = {"text": "bench runs the text tower up to the longest EOT (cut_sequence); the release "
                     "all 77 positions", "lora_dropout": 0.0,
             "lora_B_init": "random N(0, 0.1^2) on both sides (the methods start at B = 0)",
             "iterations": steps, "batch": n, "classes": len(CLASSES)}
    return rows, notes


# -- 2SFS ---------------------------------------------------------------------------------------

def compare_two_stage(root: Path, backbone, weights: Path) -> tuple[list, dict]:
    import methods.two_stage as ours_mod

    n, bs, per_shot = 8, 4, 5  # 5 iterations: stage 1 int(0.6 * 5) = 3 (1.5 epochs), stage 2 2
    x, y = images(n, 10), torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    xt, yt = images(6, 11), torch.tensor([0, 1, 2, 3, 4, 0])
    task = task_for("two_stage", backbone, x, y, shots=1, iters_per_shot=per_shot, batch_size=bs)
    first, total = ours_mod.budget(task.config, 1)

    import fs.twostage as release
    from fs.utils import eval_utils

    release.tokenize_texts = functools.partial(eval_utils.tokenize_texts, device="cpu")
    record = {"cross_entropy": None}
    release.F = functional_proxy(record)
    accs = Recorder(top1_percent)
    release.cls_acc = accs
    release_model = load_release_clip(weights)
    args = NS(peft="ln", ln_modality="both", ln_vision_start=0, ln_text_start=0,
              lr=float(task.config["lr"]), wd=float(task.config["weight_decay"]),
              n_iters=per_shot, shots=1, n_iters_frac=float(task.config["stage1_fraction"]),
              debug=False, setting="base2new")
    dataset = NS(classnames=list(CLASSES), template=["a photo of a {}."],
                 test_classnames=list(CLASSES), test_new_classnames=list(NOVEL))
    orders = epoch_orders(n, bs, 3, "never")  # epochs 0, 1 (stage 1), 2 (stage 2's fresh pass)
    with quiet():
        release.run_twostage(args, release_model, 100, dataset, EpochLoader(x, y, orders), None,
                             ([(xt, yt)], [(xt, yt)]))
    ce = record["cross_entropy"]
    theirs_logits = [c[0] for c in ce.calls]
    theirs_loss = [float(ce.fn(c[0], c[1])) for c in ce.calls]
    theirs_base, theirs_novel = accs.calls[-2][0], accs.calls[-1][0]

    ours_ce = Recorder(ours_mod.cross_entropy)
    ours_mod.cross_entropy = ours_ce
    run = ours_mod.train(task)
    fitted = ours_mod.EncoderFitted(ours_mod.run_scorer(task, run, task.classnames, task.templates))
    novel = ours_mod.run_scorer(task, run, list(NOVEL), task.templates)
    ours_logits = [c[0] for c in ours_ce.calls]

    def norms(tower, side):
        mine = run.tuned.modules[side]
        return (torch.cat([p.detach().flatten() for p in mine.values()]),
                torch.cat([tower.get_parameter(k.replace("/", ".")).detach().flatten()
                           for k in mine.keys()]))

    vis_ours, vis_theirs = norms(release_model.visual, "vision")
    txt_ours, txt_theirs = norms(release_model, "text")
    start = torch.cat([p.detach().flatten() for p in
                       ours_mod.TwoStageModel(task).modules.parameters()])
    rows = [row("stage 1 train logits, first step (same parameters)", ours_logits[0],
                theirs_logits[0], 1),
            row("stage 1 train logits, every step", torch.cat(ours_logits[:first]),
                torch.cat(theirs_logits[:first]), first),
            row("train loss, every step of both stages", torch.tensor(run.stage1 + run.stage2),
                theirs_loss, total),
            row("LayerNorm weights and biases after stage 1", torch.cat([vis_ours, txt_ours]),
                torch.cat([vis_theirs, txt_theirs]), first),
            ["(size of the release's stage-1 update: max abs of after - before)", float("nan"),
             diff(torch.cat([vis_theirs, txt_theirs]), start), first],
            row("stage 2 logits, every step", torch.cat(ours_logits[first:]),
                torch.cat(theirs_logits[first:]), total - first),
            row("test logits, trained classes (head rows)", fitted.logits(xt), theirs_base),
            row("test logits, classes with 'cat' trained and 3 new (selective inference)",
                novel(xt), theirs_novel)]
    notes = {"iterations": [first, total - first], "batch": bs, "train images": n,
             "classes": len(CLASSES), "novel classes": NOVEL,
             "which LayerNorms": "the blocks' ln_1 / ln_2 on both sides (the release's walk "
                                 "freezes ln_pre, ln_post, ln_final again)",
             "tokenize_texts": "the release's, on the CPU (its default device is cuda)"}
    return rows, notes


# -- MaPLe --------------------------------------------------------------------------------------

def compare_maple(root: Path, backbone, weights: Path) -> tuple[list, dict]:
    import methods.maple as ours_mod
    from methods._deep_prompts import prompted_scorer
    from methods._training import seeded_rng

    n, bs, epochs, depth = 8, 4, 2, 3
    x, y = images(n, 10), torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    xt = images(6, 11)
    task = task_for("maple", backbone, x, y, shots=1, epochs=epochs, batch_size=bs,
                    warmup_epochs=0, prompt_depth=depth, precision="fp32")
    with seeded_rng(SEED, task.device):
        prompts = ours_mod.MaPLeModel(task)

    import trainers.maple as release

    record = {"cross_entropy": None}
    release.F = functional_proxy(record)
    cfg = NS(MODEL=NS(BACKBONE=NS(NAME="ViT-B/16"), INIT_WEIGHTS=""), INPUT=NS(SIZE=(32, 32)),
             TRAINER=NS(MAPLE=NS(N_CTX=int(task.config["n_ctx"]),
                                 CTX_INIT=task.config["ctx_init"], PREC="fp32",
                                 PROMPT_DEPTH=depth)),
             OPTIM=NS(LR=float(task.config["lr"]), MAX_EPOCH=epochs, WARMUP_EPOCH=0))
    trainer = release.MaPLe.__new__(release.MaPLe)
    trainer.cfg, trainer.device = cfg, torch.device("cpu")
    trainer.dm = NS(dataset=NS(classnames=list(CLASSES)))
    with quiet():
        trainer.build_model()
    learner = trainer.model.prompt_learner

    def pairs(learner):
        """(bench's tensor, the release's) of every trainable prompt tensor."""
        out = [(prompts.ctx, learner.ctx), (prompts.proj.weight, learner.proj.weight),
               (prompts.proj.bias, learner.proj.bias)]
        for i in range(depth - 1):
            out.append((prompts.text_deep[i], learner.compound_prompts_text[i]))
            out.append((prompts.couplings[i].weight, learner.compound_prompt_projections[i].weight))
            out.append((prompts.couplings[i].bias, learner.compound_prompt_projections[i].bias))
        return out

    with torch.no_grad():
        init_ctx_diff = diff(prompts.ctx, learner.ctx)  # both from "a photo of a"'s embeddings
        for mine, theirs in pairs(learner):
            theirs.copy_(mine)
    before = torch.cat([m.detach().flatten() for m, _ in pairs(learner)])
    orders = epoch_orders(n, bs, epochs, "dassl")
    trainer.model.train()
    for epoch in range(epochs):
        trainer.num_batches = len(orders[epoch])
        for i, rows in enumerate(orders[epoch]):
            trainer.batch_idx = i
            trainer.forward_backward({"img": x[rows], "label": y[rows]})
    ce = record["cross_entropy"]
    theirs_logits = torch.stack([c[0] for c in ce.calls])
    theirs_loss = [float(ce.fn(c[0], c[1])) for c in ce.calls]

    ours_ce = Recorder(ours_mod.F.cross_entropy)
    ours_mod.F = NS(cross_entropy=ours_ce)
    prompts, numerics, _ = ours_mod.train(task, prompts)
    ours_logits = torch.stack([c[0] for c in ours_ce.calls])
    ours_loss = [float(ours_ce.fn(c[0], c[1])) for c in ours_ce.calls]
    mine_after = torch.cat([m.detach().flatten() for m, _ in pairs(learner)])
    theirs_after = torch.cat([t.detach().flatten() for _, t in pairs(learner)])

    trainer.model.eval()
    with torch.no_grad():
        theirs_test = trainer.model(xt)
        with quiet():  # the release's base2new_test: a model over the new names, prompts loaded
            novel_model = release.CustomCLIP(cfg, list(NOVEL), release.load_clip_to_cpu(cfg))
        state = {k: v for k, v in learner.state_dict().items() if "token_" not in k}
        novel_model.prompt_learner.load_state_dict(state, strict=False)
        novel_model.eval()
        theirs_novel = novel_model(xt)
    ours_test = prompted_scorer(task, prompts, numerics, task.classnames)(xt)
    ours_novel = prompted_scorer(task, prompts, numerics, list(NOVEL))(xt)
    steps = epochs * len(orders[0])
    rows = [row("train logits, first step (same prompts)", ours_logits[0], theirs_logits[0], 1),
            row("train logits, every step", ours_logits, theirs_logits, steps),
            row("train loss, every step", ours_loss, theirs_loss, steps),
            row(f"prompts, projections after {steps} SGD steps", mine_after, theirs_after, steps),
            ["(size of the release's update: max abs of after - before)", float("nan"),
             diff(theirs_after, before), steps],
            row("test logits, trained classes", ours_test, theirs_test),
            row("test logits, new class names (prompts reused)", ours_novel, theirs_novel)]
    notes = {"initial context from 'a photo of a' (max abs difference before copying)":
             init_ctx_diff, "epochs": epochs, "batch": bs, "prompt_depth": depth,
             "warm-up": "none on both sides (the stubbed Dassl scheduler has none)",
             "precision": "fp32 on both sides (the release casts CLIP to fp16)"}
    return rows, notes


# -- PromptSRC ----------------------------------------------------------------------------------

def compare_promptsrc(root: Path, backbone, weights: Path) -> tuple[list, dict]:
    import methods.promptsrc as ours_mod
    from methods._deep_prompts import prompted_scorer
    from methods._training import seeded_rng

    n, bs, epochs, depth = 8, 4, 3, 3
    x, y = images(n, 10), torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    xt = images(6, 11)
    task = task_for("promptsrc", backbone, x, y, shots=1, epochs=epochs, batch_size=bs,
                    warmup_epochs=0, prompt_depth_text=depth, prompt_depth_vision=depth,
                    gpa_mean=2, gpa_std=1, precision="fp32")
    c = task.config
    with seeded_rng(SEED, task.device):
        prompts = ours_mod.PromptSRCModel(task)

    import trainers.promptsrc as release

    record = {"cross_entropy": None, "l1_loss": None}
    release.F = functional_proxy(record)
    cfg = NS(MODEL=NS(BACKBONE=NS(NAME="ViT-B/16"), INIT_WEIGHTS=""), INPUT=NS(SIZE=(32, 32)),
             TRAINER=NS(PROMPTSRC=NS(
                 N_CTX_TEXT=int(c["n_ctx_text"]), N_CTX_VISION=int(c["n_ctx_vision"]),
                 CTX_INIT=c["ctx_init"], PREC="fp32", PROMPT_DEPTH_TEXT=depth,
                 PROMPT_DEPTH_VISION=depth, TEXT_LOSS_WEIGHT=float(c["text_loss_weight"]),
                 IMAGE_LOSS_WEIGHT=float(c["image_loss_weight"]), GPA_MEAN=c["gpa_mean"],
                 GPA_STD=c["gpa_std"])),
             OPTIM=NS(LR=float(c["lr"]), MAX_EPOCH=epochs, WARMUP_EPOCH=0))
    trainer = release.PromptSRC.__new__(release.PromptSRC)
    trainer.cfg, trainer.device = cfg, torch.device("cpu")
    trainer.dm = NS(dataset=NS(classnames=list(CLASSES)))
    with quiet():
        trainer.build_model()
    model = trainer.model

    def pairs(model):
        """(bench's tensor, the release's) of every learned prompt."""
        out = [(prompts.ctx, model.prompt_learner.ctx)]
        out += [(p, model.text_encoder.transformer.resblocks[layer].VPT_shallow)
                for layer, p in zip(prompts.text_layers, prompts.text_deep)]
        for layer, p in zip(prompts.vision_layers, prompts.vision):
            out.append((p, model.image_encoder.VPT if layer == 0
                        else model.image_encoder.transformer.resblocks[layer].VPT_shallow))
        return out

    with torch.no_grad():
        init_ctx_diff = diff(prompts.ctx, model.prompt_learner.ctx)
        for mine, theirs in pairs(model):
            theirs.copy_(mine)
    before = torch.cat([m.detach().flatten() for m, _ in pairs(model)])
    orders = epoch_orders(n, bs, epochs, "dassl")
    model.train()
    theirs_loss = []
    for epoch in range(epochs):
        trainer.num_batches = len(orders[epoch])
        for i, rows in enumerate(orders[epoch]):
            trainer.batch_idx = i
            theirs_loss.append(trainer.forward_backward({"img": x[rows], "label": y[rows]})["loss"])
    theirs_logits = torch.stack([c[0] for c in record["cross_entropy"].calls])
    theirs_fixed = record["l1_loss"].calls[0][1]  # the frozen teacher text features, normalized

    ours_loss_fn = Recorder(ours_mod.srd_loss)
    ours_mod.srd_loss = ours_loss_fn
    prompts, numerics, _, weights = ours_mod.train(task, prompts)
    ours_logits = torch.stack([c[0] for c in ours_loss_fn.calls])
    ours_loss = [float(ours_loss_fn.fn(*c)) for c in ours_loss_fn.calls]
    mine_after = torch.cat([m.detach().flatten() for m, _ in pairs(model)])
    theirs_after = torch.cat([t.detach().flatten() for _, t in pairs(model)])

    model.eval()
    with torch.no_grad():
        theirs_test = model(xt)
        with quiet():
            novel_model = release.CustomCLIP(cfg, list(NOVEL), release.load_clip_to_cpu(cfg))
        state = {k: v for k, v in model.state_dict().items()
                 if "token_" not in k and "fixed_embeddings" not in k}
        novel_model.load_state_dict(state, strict=False)
        novel_model.eval()
        theirs_novel = novel_model(xt)
    ours_test = prompted_scorer(task, prompts, numerics, task.classnames)(xt)
    ours_novel = prompted_scorer(task, prompts, numerics, list(NOVEL))(xt)
    steps = epochs * len(orders[0])
    rows = [row("frozen teacher text features (60 templates), normalized",
                ours_loss_fn.calls[0][2], theirs_fixed),
            row("train logits, first step (same prompts)", ours_logits[0], theirs_logits[0], 1),
            row("train logits, every step", ours_logits, theirs_logits, steps),
            row("train loss (CE + text L1 + image L1 + KL), every step", ours_loss, theirs_loss,
                steps),
            row(f"prompts after {steps} SGD steps and GPA", mine_after, theirs_after, steps),
            ["(size of the release's change: max abs of after - before)", float("nan"),
             diff(theirs_after, before), steps],
            row("test logits, trained classes", ours_test, theirs_test),
            row("test logits, new class names (prompts reused)", ours_novel, theirs_novel)]
    notes = {"initial context from 'a photo of a' (max abs difference before copying)":
             init_ctx_diff, "epochs": epochs, "batch": bs, "prompt depths": [depth, depth],
             "gpa": {"mean": 2, "std": 1, "weights": weights},
             "warm-up": "none on both sides (the stubbed Dassl scheduler has none)",
             "gpa scope": "bench averages the prompts; the release averages its whole state "
                          "dict, the frozen CLIP weights too (sum of weights x the same tensor: "
                          "the frozen weights up to rounding)",
             "precision": "fp32 on both sides (the release casts CLIP and its prompts to fp16)"}
    return rows, notes


COMPARE = {"clip_lora": compare_clip_lora, "two_stage": compare_two_stage,
           "maple": compare_maple, "promptsrc": compare_promptsrc}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--method", required=True, choices=sorted(RELEASES))
    p.add_argument("--release", required=True, type=Path,
                   help="a checkout of the release at the commit in RELEASES")
    p.add_argument("--out", default=None, help="also copy the result files here")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    if not (a.release / "clip" / "model.py").is_file():
        print(f"equivalence: {a.release} is not a checkout of {RELEASES[a.method][0]} "
              f"(no clip/model.py)", file=sys.stderr)
        return 2
    backbone, weights = tiny_backbone()
    release_environment(a.release.resolve(), weights)
    rows, notes = COMPARE[a.method](a.release, backbone, weights)
    repo, commit = RELEASES[a.method]
    data = {"method": a.method, "release": f"{repo}@{commit}", "model": MODEL_CFG,
            "rows": [dict(zip(("quantity", "max_abs_diff", "max_abs_release", "steps"), r))
                     for r in rows], "notes": notes, "machine": machine_info()}
    md = (f"# Equivalence of bench's `{a.method}` with {repo}@{commit[:7]}\n\n"
          f"`python benchmarks/equivalence.py --method {a.method} --release CHECKOUT`: a tiny ViT "
          f"CLIP (text width 512, vision width 768, 4 layers each, 32 px images) loaded by the "
          f"release's own code, identical tensors on both sides, CPU, fp32 (see the script's "
          f"docstring for what is stubbed).\n\n"
          + table(["quantity", "max abs difference", "max abs (release)", "steps"], rows)
          + "\n\n" + "\n".join(f"- {k}: {v}" for k, v in notes.items())
          + "\n\n" + machine_md(data["machine"]))
    write_results(f"equivalence_{a.method}", data, md, a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
