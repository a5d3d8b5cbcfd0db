"""2SFS, two-stage few-shot adaptation (Farina et al., CVPR 2025;
FarinaMatteo/rethinking_fewshot_vlms), an encoder-tuning method.

A budget of ``iters_per_shot`` x shots iterations (300 x shots), split (``fs/twostage.py``):

1. Stage 1, the first ``int(0.6 * budget)`` iterations: the LayerNorms of both encoders train
   (trainable copies of their weight and bias, methods/_clip_hooks.py), cross-entropy on
   ``logit_scale * cos(image, text of "a photo of a {}.")``; AdamW (lr 2e-4, weight decay
   1e-2), cosine to 1e-6 over the stage.
2. Stage 2, the rest: a linear classifier initialized with the adapted text encoder's
   normalized class embeddings trains on the adapted image features (no gradient into the
   encoders); AdamW with the same values, cosine to 1e-6 over the stage. It starts on a fresh
   pass over the train set, as the release's new loop does.

At test time (the release's ``infer``) a class the classifier was trained on uses its learned
row, any other class the adapted text encoder's embedding of its prompt: ``for_classes`` is
label-set dependent (recorded as ``label_set_dependent``). Which LayerNorms train: the
release's ``trainable_norm_params`` ends up training only the blocks' ``ln_1`` / ``ln_2``
(``ln_pre``, ``ln_post`` and ``ln_final`` are met twice by its module walk, the second time
with index -1, which freezes them again; docs/methods.md); ``norms: blocks`` is that, ``all``
adds the three. ``peft: lora`` is the release's LoRA option (CLIP-LoRA's modules) for stage 1.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from bench.base.schema import ConfigError
from methods._clip_hooks import (LayerLoRA, TowerHooks, check_vit, encode_image, encode_text,
                                 layernorm_names, text_tower)
from methods._encoder_training import (ChunkedText, Numerics, batch_plan, cosine_lr,
                                       cross_entropy, epochs_for, normalize, scorer, set_lr, step)
from methods._training import seeded_generator, seeded_rng
from methods.clip_lora import layer_indices
from methods import METHODS
from methods.tuning import EncoderFitted, EncoderTask

PEFTS = ("ln", "lora")
NORMS = ("blocks", "all")


def norm_copies(tower: nn.Module, which: str, device) -> nn.ParameterDict:
    """Trainable fp32 copies of the LayerNorm parameters (``name.weight`` / ``name.bias``, dots
    as ``/``: ParameterDict keys cannot hold dots)."""
    out = nn.ParameterDict()
    for name in layernorm_names(tower, blocks_only=which == "blocks"):
        module = tower.get_submodule(name)
        for kind in ("weight", "bias"):
            out[f"{name}.{kind}".replace(".", "/")] = nn.Parameter(
                getattr(module, kind).detach().float().clone().to(device))
    return out


def norm_hooks(copies: nn.ParameterDict) -> dict:
    names = sorted({k.rsplit("/", 1)[0] for k in copies})
    return {n.replace("/", "."): (copies[f"{n}/weight"], copies[f"{n}/bias"]) for n in names}


class TwoStageModel:
    def __init__(self, task: EncoderTask, name: str = "two_stage"):
        cfg = task.config
        model = task.backbone.model
        check_vit(model, name, getattr(task.backbone, "name", "this backbone"))
        self.task, self.model, self.tower = task, model, text_tower(model, name)
        peft = cfg["peft"]
        if peft not in PEFTS:
            raise ConfigError(f"{name}: peft must be one of {', '.join(PEFTS)}, not {peft!r} "
                              "(the release's bitfit option is not built)")
        gc = bool(cfg["grad_checkpointing"])
        self.modules = nn.ModuleDict()
        if peft == "ln":
            if cfg["norms"] not in NORMS:
                raise ConfigError(f"{name}: norms must be one of {', '.join(NORMS)}, not "
                                  f"{cfg['norms']!r}")
            self.modules["vision"] = norm_copies(model.visual, cfg["norms"], task.device)
            self.modules["text"] = norm_copies(self.tower, cfg["norms"], task.device)
            self.vision = TowerHooks(norms=norm_hooks(self.modules["vision"]), grad_checkpointing=gc)
            self.text = TowerHooks(norms=norm_hooks(self.modules["text"]), grad_checkpointing=gc)
        else:
            r, alpha, p = int(cfg["r"]), float(cfg["alpha"]), float(cfg["dropout"])

            def branches(resblocks):
                width = resblocks[0].attn.embed_dim
                layers = layer_indices("all", len(resblocks), name)
                return nn.ModuleDict({str(i): LayerLoRA(width, list(cfg["params"]), r, alpha, p)
                                      for i in layers}).to(task.device)

            self.modules["vision"] = branches(model.visual.transformer.resblocks)
            self.modules["text"] = branches(self.tower.transformer.resblocks)
            self.vision = TowerHooks(lora={int(k): v for k, v in self.modules["vision"].items()},
                                     grad_checkpointing=gc)
            self.text = TowerHooks(lora={int(k): v for k, v in self.modules["text"].items()},
                                   grad_checkpointing=gc)
        self.cut = bool(cfg["cut_sequence"])
        self.template = cfg["template"]

    def prompts(self, classnames, templates) -> list[str]:
        t = templates[0] if self.template == "dataset" else self.template
        return [t.format(c) for c in classnames]

    def text_features(self, tokens):
        return encode_text(self.tower, tokens, self.text, cut=self.cut)

    def image_features(self, images):
        return encode_image(self.model, images, self.vision)


def budget(config: dict, shots: int) -> tuple[int, int]:
    """(stage 1 iterations, total iterations): ``int(total * stage1_fraction)`` of
    ``iters_per_shot * shots`` (the release's ``int(total_iters*args.n_iters_frac)``)."""
    total = int(config["iters_per_shot"]) * int(shots)
    return int(total * float(config["stage1_fraction"])), total


def train_epochs(config: dict, n_train: int, shots: int) -> int:
    first, total = budget(config, shots)
    bs = int(config["batch_size"])
    return epochs_for(n_train, bs, first) + epochs_for(n_train, bs, total - first)


def _adamw(params, cfg):
    return torch.optim.AdamW(params, lr=float(cfg["lr"]), betas=tuple(cfg["betas"]),
                             eps=float(cfg["eps"]), weight_decay=float(cfg["weight_decay"]))


class TwoStageRun:
    """A trained 2SFS model: the tuned towers, the head, the losses of both stages."""

    def __init__(self, tuned: TwoStageModel, head: torch.Tensor, numerics: Numerics,
                 stage1: list[float], stage2: list[float]):
        self.tuned, self.head, self.numerics = tuned, head, numerics
        self.stage1, self.stage2 = stage1, stage2


def train(task: EncoderTask) -> TwoStageRun:
    """2SFS's two stages (``run_twostage``)."""
    cfg = task.config
    numerics = Numerics(str(cfg["precision"]), task.device, "two_stage")
    scale = float(task.backbone.logit_scale)
    first, total = budget(cfg, task.shots)
    bs, lr, eta_min = int(cfg["batch_size"]), float(cfg["lr"]), float(cfg["eta_min"])
    labels = task.train.labels
    n = len(labels)
    with seeded_rng(task.seed, task.device):
        tuned = TwoStageModel(task)
        tokens = task.backbone.tokenizer(tuned.prompts(task.classnames, task.templates)).to(task.device)
        text = ChunkedText(lambda rows: tuned.text_features(tokens[rows]), task.num_classes,
                           cfg.get("class_chunk") or None, task.device)
        gen = seeded_generator(task.seed)
        # stage 1: the encoders' LayerNorms (or LoRA)
        optimizer, scaler = _adamw(list(tuned.modules.parameters()), cfg), numerics.scaler()
        stage1, last_epoch = [], -1
        tuned.modules.train(True)
        for epoch, it, rows in batch_plan(n, bs, gen, iterations=first, drop_last="never"):
            set_lr(optimizer, cosine_lr(it, first, lr, eta_min))
            images = task.train.crops(epoch, rows)
            with numerics.autocast():
                logits = scale * normalize(tuned.image_features(images).float()) \
                    @ normalize(text.forward().float()).t()
            loss = cross_entropy(logits, labels[rows.to(labels.device)])
            step(optimizer, loss, scaler, text.backward)
            stage1.append(float(loss.detach()))
            last_epoch = epoch
        tuned.modules.train(False)
        # stage 2: a linear head on the adapted features, from the adapted text embeddings
        with torch.no_grad(), numerics.autocast():
            head0 = normalize(text.forward().float())
        head = nn.Parameter(head0.detach().clone())
        optimizer, scaler = _adamw([head], cfg), numerics.scaler()
        stage2 = []
        for epoch, it, rows in batch_plan(n, bs, gen, iterations=total - first,
                                          drop_last="never", first_epoch=last_epoch + 1):
            set_lr(optimizer, cosine_lr(it, total - first, lr, eta_min))
            images = task.train.crops(epoch, rows)
            with torch.no_grad(), numerics.autocast():
                img = normalize(tuned.image_features(images).float())
            loss = cross_entropy(scale * img @ normalize(head).t(), labels[rows.to(labels.device)])
            step(optimizer, loss, scaler)
            stage2.append(float(loss.detach()))
    return TwoStageRun(tuned, head.detach(), numerics, stage1, stage2)


def run_scorer(task: EncoderTask, run: TwoStageRun, classnames: list[str], templates: list[str]):
    """Logits over ``classnames``: the head's row for a trained class, the adapted text
    encoder's embedding for any other (the release's selective inference)."""
    trained = {c: i for i, c in enumerate(task.classnames)}
    missing = [c for c in classnames if c not in trained]
    new_rows = {}
    if missing:
        with torch.no_grad(), run.numerics.autocast():
            new = run.tuned.text_features(task.backbone.tokenizer(
                run.tuned.prompts(missing, templates)).to(task.device)).float()
        new_rows = dict(zip(missing, new))
    rows = [run.head[trained[c]] if c in trained else new_rows[c] for c in classnames]
    return scorer(run.tuned.image_features, torch.stack(rows),
                  float(task.backbone.logit_scale), run.numerics)


def _stochastic(config: dict):
    """LayerNorm tuning starts from the model's own values and the head from the text
    embeddings: the seed acts only through the batch order; LoRA's matrices are drawn too."""
    return "batch_order" if config["peft"] == "ln" else True


@METHODS.register("two_stage", kind="encoder", needs_vit=True, epochs=train_epochs,
                  stochastic=_stochastic,
                  new_classes=True, display_name="2SFS", order=93, family="encoder tuning",
                  description="LayerNorm tuning, then a linear head (Farina et al. 2025)")
def fit(task: EncoderTask) -> EncoderFitted:
    run = train(task)
    info = {"precision": run.numerics.precision, "peft": task.config["peft"],
            "iterations": [len(run.stage1), len(run.stage2)], "label_set_dependent": True,
            "trainable_params": sum(p.numel() for p in run.tuned.modules.parameters())
            + run.head.numel(),
            "train_loss_first": run.stage1[0] if run.stage1 else None,
            "stage1_loss_last": run.stage1[-1] if run.stage1 else None,
            "stage2_loss_last": run.stage2[-1] if run.stage2 else None}
    return EncoderFitted(run_scorer(task, run, task.classnames, task.templates), info,
                         lambda names, templates, dataset:
                         run_scorer(task, run, list(names), list(templates)))
