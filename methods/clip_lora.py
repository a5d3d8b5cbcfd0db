"""CLIP-LoRA (Zanella & Ben Ayed, CVPRW 2024; MaxZanella/CLIP-LoRA), an encoder-tuning method.

Low-rank updates of the query, key and value projections of every attention layer of both
encoders (methods/_clip_hooks.py ``LayerLoRA``): ``W x + s * B (A drop(x))``, rank r = 2,
``s = alpha / sqrt(r)`` (the release's ``loralib/layers.py`` scaling), dropout 0.25 on the
branch's input, A Kaiming-uniform and B zero (a new model is the frozen one). Each step encodes
the class prompts ("a photo of a {}.") and a batch of the protocol's crops through the LoRA'd
towers, ``logits = 100 * cos(image, text)``, cross-entropy; AdamW, cosine to 1e-6 over
500 x shots iterations, batch 32; the model after the last iteration is evaluated (the release
never reads val). Settings and sources: configs/methods/clip_lora.yaml, docs/methods.md.

``for_classes``: the same LoRA'd text encoder over other class names.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from bench.base.schema import ConfigError
from methods._clip_hooks import LayerLoRA, TowerHooks, check_vit, encode_image, encode_text, text_tower
from methods._encoder_training import (ChunkedText, Numerics, batch_plan, cosine_lr,
                                       cross_entropy, epochs_for, normalize, scorer, set_lr, step)
from methods._training import seeded_generator, seeded_rng
from methods import METHODS
from methods.tuning import EncoderFitted, EncoderTask

ENCODERS = ("both", "vision", "text")


def layer_indices(spec, n_layers: int, name: str) -> list[int]:
    """``all`` or a list of 0-based block indices."""
    if spec == "all":
        return list(range(n_layers))
    if not isinstance(spec, list) or not spec \
            or any(isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n_layers for i in spec):
        raise ConfigError(f"{name}: layers must be 'all' or a list of block indices in "
                          f"0..{n_layers - 1}, not {spec!r}")
    return sorted(set(spec))


def prompts_of(task, template: str) -> list[str]:
    """The class prompts: ``template`` ("a photo of a {}.") or, with ``dataset``, the task's
    first template (as CLIP-LoRA's own dataset files would)."""
    t = task.templates[0] if template == "dataset" else template
    return [t.format(c) for c in task.classnames]


class LoRAModel:
    """The LoRA branches of both towers over the frozen model, and what a step needs."""

    def __init__(self, task: EncoderTask, name: str = "clip_lora"):
        cfg = task.config
        self.task, self.name = task, name
        model = task.backbone.model
        check_vit(model, name, getattr(task.backbone, "name", "this backbone"))
        self.model, self.tower = model, text_tower(model, name)
        encoder = cfg["encoder"]
        if encoder not in ENCODERS:
            raise ConfigError(f"{name}: encoder must be one of {', '.join(ENCODERS)}, not {encoder!r}")
        r, alpha, p = int(cfg["r"]), float(cfg["alpha"]), float(cfg["dropout"])
        targets = list(cfg["params"])
        gc = bool(cfg["grad_checkpointing"])
        device = task.device

        def branches(resblocks):
            width = resblocks[0].attn.embed_dim
            layers = layer_indices(cfg["layers"], len(resblocks), name)
            return nn.ModuleDict({str(i): LayerLoRA(width, targets, r, alpha, p)
                                  for i in layers}).to(device)

        self.vision_lora = branches(model.visual.transformer.resblocks) \
            if encoder in ("both", "vision") else nn.ModuleDict()
        self.text_lora = branches(self.tower.transformer.resblocks) \
            if encoder in ("both", "text") else nn.ModuleDict()
        self.vision = TowerHooks(lora={int(k): v for k, v in self.vision_lora.items()},
                                 grad_checkpointing=gc)
        self.text = TowerHooks(lora={int(k): v for k, v in self.text_lora.items()},
                               grad_checkpointing=gc)
        self.cut = bool(cfg["cut_sequence"])
        self.chunk = cfg.get("class_chunk") or None
        scale = cfg["logit_scale"]
        self.scale = float(task.backbone.logit_scale if scale == "model" else scale)

    def parameters(self) -> list[nn.Parameter]:
        return [*self.vision_lora.parameters(), *self.text_lora.parameters()]

    def train(self, mode: bool = True) -> None:
        self.vision_lora.train(mode)
        self.text_lora.train(mode)

    def tokens(self, prompts: list[str]) -> torch.Tensor:
        return self.task.backbone.tokenizer(prompts).to(self.task.device)

    def text_features(self, tokens: torch.Tensor) -> torch.Tensor:
        return encode_text(self.tower, tokens, self.text, cut=self.cut)

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        return encode_image(self.model, images, self.vision)


def iterations(config: dict, shots: int) -> int:
    return int(config["iters_per_shot"]) * int(shots)


def train_epochs(config: dict, n_train: int, shots: int) -> int:
    """Epochs of crops a cell trains on: 500 x shots iterations of ``batch_size`` rows."""
    return epochs_for(n_train, int(config["batch_size"]), iterations(config, shots), "never")


def fit_lora(task: EncoderTask, lora: LoRAModel, numerics: Numerics) -> list[float]:
    """CLIP-LoRA's training loop (``lora.py`` ``run_lora``); returns the loss of every step."""
    cfg = task.config
    total = iterations(cfg, task.shots)
    params = lora.parameters()
    optimizer = torch.optim.AdamW(params, lr=float(cfg["lr"]), betas=tuple(cfg["betas"]),
                                  eps=float(cfg["eps"]), weight_decay=float(cfg["weight_decay"]))
    scaler = numerics.scaler()
    tokens = lora.tokens(prompts_of(task, cfg["template"]))
    train_text = bool(lora.text.lora)
    text = ChunkedText(lambda rows: lora.text_features(tokens[rows]), task.num_classes,
                       lora.chunk, task.device)
    frozen_text = None
    if not train_text:
        with torch.no_grad(), numerics.autocast():
            frozen_text = text.forward()
    labels = task.train.labels
    losses = []
    lora.train(True)
    for epoch, it, rows in batch_plan(len(labels), int(cfg["batch_size"]),
                                      seeded_generator(task.seed), iterations=total,
                                      drop_last="never"):
        set_lr(optimizer, cosine_lr(it, total, float(cfg["lr"]), float(cfg["eta_min"])))
        images = task.train.crops(epoch, rows)
        with numerics.autocast():
            class_text = text.forward() if train_text else frozen_text
            img = lora.image_features(images)
            logits = lora.scale * normalize(img.float()) @ normalize(class_text.float()).t()
        loss = cross_entropy(logits, labels[rows.to(labels.device)])
        step(optimizer, loss, scaler, text.backward if train_text else None)
        losses.append(float(loss.detach()))
    lora.train(False)
    return losses


def lora_fitted(task: EncoderTask, lora: LoRAModel, numerics: Numerics, losses: list[float],
                **info) -> EncoderFitted:
    template = task.config["template"]

    def logits_for(classnames: list[str], templates: list[str]):
        t = templates[0] if template == "dataset" else template
        with torch.no_grad(), numerics.autocast():
            text = lora.text_features(lora.tokens([t.format(c) for c in classnames]))
        return scorer(lora.image_features, text, lora.scale, numerics)

    def for_classes(classnames, templates, dataset):
        return logits_for(list(classnames), list(templates))

    record = {"precision": numerics.precision, "iterations": len(losses),
              "lora_layers": {"vision": sorted(lora.vision.lora), "text": sorted(lora.text.lora)},
              "trainable_params": sum(p.numel() for p in lora.parameters()),
              "train_loss_first": losses[0], "train_loss_last": losses[-1], **info}
    return EncoderFitted(logits_for(task.classnames, task.templates), record, for_classes)


@METHODS.register("clip_lora", kind="encoder", needs_vit=True, epochs=train_epochs,
                  new_classes=True, display_name="CLIP-LoRA", order=90, family="encoder tuning",
                  description="LoRA on q, k, v of both encoders (Zanella & Ben Ayed 2024)")
def fit(task: EncoderTask) -> EncoderFitted:
    numerics = Numerics(str(task.config["precision"]), task.device, "clip_lora")
    with seeded_rng(task.seed, task.device):
        lora = LoRAModel(task)
        losses = fit_lora(task, lora, numerics)
    return lora_fitted(task, lora, numerics, losses)
