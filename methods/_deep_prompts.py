"""What PromptSRC and MaPLe share: the class prompts with a learned context through the text
tower, deep prompts, and Dassl's SGD loop (their trainers run on Dassl.pytorch).

The text side of both releases builds ``[SOS] [ctx_1 .. ctx_n] [rest of the init phrase]
[class name] [.] [EOT]`` (``prompt_prefix + " " + name + "."`` with ``ctx_init`` "a photo of
a": ``ctx`` are the first n token embeddings of the phrase, its remaining tokens stay fixed:
MaPLe's n = 2 leaves "of a" before the name; PromptSRC's n = 4 takes the whole phrase). bench
builds that layout with CoOp's ``build_layout`` (the ``fixed`` tokens ProGrad uses too) and
runs it through methods/_clip_hooks.py, deep prompts replacing positions 1 .. n at layers
1 .. depth-1.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from bench.base.schema import ConfigError
from methods._clip_hooks import (TowerHooks, check_vit, encode_image, encode_text_embeddings,
                                 text_tower)
from methods._encoder_training import ChunkedText, Numerics, batch_plan, scorer, step
from methods._training import OptimConfig, lr_at, seeded_generator
from methods.coop import _token_rows, build_layout


def context_init(task, tower: nn.Module, n_ctx: int, ctx_init: str | None, init_std: float,
                 name: str) -> tuple[torch.Tensor, list[int]]:
    """(ctx (n, width), fixed token ids): the releases' rule ``if ctx_init and n_ctx <= 4``
    (the first ``n_ctx`` tokens of the phrase, the rest fixed), else N(0, init_std^2) and no
    fixed tokens. Draws from the global RNG (the caller seeds it)."""
    width = tower.token_embedding.weight.shape[1]
    if n_ctx < 1:
        raise ConfigError(f"{name}: n_ctx must be >= 1, not {n_ctx}")
    if ctx_init and n_ctx <= 4:
        tokens = _token_rows(task.backbone.tokenizer, [str(ctx_init).replace("_", " ")])[0]
        if len(tokens) < n_ctx:
            raise ConfigError(f"{name}: ctx_init {ctx_init!r} has {len(tokens)} token(s), fewer "
                              f"than n_ctx = {n_ctx} (the release would read padding)")
        ids = torch.tensor(tokens[:n_ctx], device=tower.token_embedding.weight.device)
        with torch.no_grad():
            ctx = tower.token_embedding(ids).float().to(task.device)
        return ctx, tokens[n_ctx:]
    ctx = torch.empty(n_ctx, width, device=task.device)
    nn.init.normal_(ctx, std=init_std)
    return ctx, []


class PromptText:
    """Class prompts with a learned context, encoded through the text tower (k, D)."""

    def __init__(self, task, tower: nn.Module, classnames: list[str], n_ctx: int,
                 fixed: list[int], name: str, cut: bool = True):
        backbone = task.backbone
        self.tower, self.n = tower, n_ctx
        layout = build_layout(backbone.tokenizer, list(classnames), n_ctx, "end",
                              backbone.context_length, name, fixed)
        causal = getattr(tower, "attn_mask", None) is not None
        L = layout.seq_len if cut and causal else layout.ids.shape[1]
        ids = layout.ids[:, :L].to(tower.token_embedding.weight.device)
        cast = tower.transformer.get_cast_dtype()
        with torch.no_grad():
            base = tower.token_embedding(ids).to(cast)
        self.base = base.to(task.device)
        self.pos = tower.positional_embedding[:L].detach().to(cast).to(task.device)
        self.eot = layout.eot.to(task.device)
        self.seq_len = L

    def __len__(self) -> int:
        return self.base.shape[0]

    def features(self, rows: torch.Tensor, ctx: torch.Tensor, hooks: TowerHooks) -> torch.Tensor:
        """Raw text embeddings of the prompts ``rows`` with context ``ctx`` (n, width)."""
        base = self.base[rows]
        x = torch.cat([base[:, :1], ctx.to(base.dtype).expand(len(rows), -1, -1),
                       base[:, 1 + self.n:]], dim=1)
        return encode_text_embeddings(self.tower, x + self.pos, self.eot[rows], hooks)


def deep_layers(depth: int, n_layers: int) -> list[int]:
    """The layers 1 .. depth-1 that exist (a prompt depth beyond the tower is cut to it)."""
    return list(range(1, min(int(depth), n_layers)))


def dassl_config(cfg: dict) -> OptimConfig:
    """Dassl's SGD (momentum, weight decay, no dampening, no Nesterov) with its constant
    warm-up + cosine per epoch, batches with its drop_last rule."""
    return OptimConfig.from_config(cfg)


def dassl_train(task, params: list[nn.Parameter], loss_of: Callable, numerics: Numerics,
                on_epoch_end: Callable[[int], None] | None = None) -> list[float]:
    """Train ``params`` with Dassl's optimizer and schedule for ``epochs``; ``loss_of(epoch,
    rows)`` gives a batch's loss and what to run after its backward pass (the chunked text
    pass, or None); ``on_epoch_end(e)`` after every epoch (PromptSRC's GPA).
    Returns the mean loss of every epoch."""
    opt = dassl_config(task.config)
    optimizer = torch.optim.SGD(params, lr=opt.lr, momentum=opt.momentum,
                                weight_decay=opt.weight_decay)
    scaler = numerics.scaler()
    n = len(task.train.labels)
    history, total, count, current = [], 0.0, 0, None
    plan = batch_plan(n, opt.batch_size, seeded_generator(task.seed), epochs=opt.epochs,
                      drop_last="dassl")
    for epoch, _, rows in plan:
        if epoch != current:
            if current is not None:
                history.append(total / count)
                if on_epoch_end:
                    on_epoch_end(current)
                total, count = 0.0, 0
            current = epoch
            for group in optimizer.param_groups:
                group["lr"] = lr_at(epoch, opt)
        loss, finish = loss_of(epoch, rows)
        step(optimizer, loss, scaler, finish)
        total += float(loss.detach()) * len(rows)
        count += len(rows)
    history.append(total / count)
    if on_epoch_end:
        on_epoch_end(current)
    return history


def prompted_scorer(task: EncoderTask, prompts, numerics: Numerics, classnames: list[str]):
    """The logits function of trained deep prompts (PromptSRC, MaPLe) over ``classnames``."""
    prompt_text = prompts.prompts_for(task, classnames)
    with torch.no_grad(), numerics.autocast():
        txt = prompt_text.features(torch.arange(len(prompt_text), device=task.device),
                                   prompts.ctx, prompts.text_hooks())
    return scorer(prompts.image_features, txt, float(task.backbone.logit_scale), numerics)


class DeepPromptModel(nn.Module):
    """What MaPLe's and PromptSRC's prompt modules share: the frozen model they prompt (a ViT:
    checked), the class prompts of the text branch and the image features under their vision
    hooks (``vision_hooks`` is each method's own)."""

    def __init__(self, task, name: str):
        super().__init__()
        model = task.backbone.model
        check_vit(model, name, getattr(task.backbone, "name", "this backbone"))
        # the shared frozen model is read, never owned: kept out of this module's parameters
        self.__dict__["model"], self.__dict__["tower"] = model, text_tower(model, name)

    def vision_hooks(self) -> TowerHooks:
        raise NotImplementedError

    def prompts_for(self, task, classnames) -> "PromptText":
        return PromptText(task, self.tower, classnames, self.n_ctx, self.fixed, self.name, self.cut)

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        return encode_image(self.model, images, self.vision_hooks())

    def train_text(self, task):
        """The trained classes' text features under the current prompts, class chunk by class
        chunk (``class_chunk``), for the training loop."""
        text_in = self.prompts_for(task, task.classnames)
        return ChunkedText(lambda rows: text_in.features(rows, self.ctx, self.text_hooks()),
                           task.num_classes, task.config.get("class_chunk") or None,
                           task.device)


def config_epochs(config: dict, n_train: int, shots: int) -> int:
    """The epochs of a method that trains for ``config['epochs']`` whatever the data."""
    return int(config["epochs"])
