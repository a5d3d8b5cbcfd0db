"""CoCoOp: conditional context optimization (Zhou et al., CVPR 2022), docs/methods.md.

CoOp's unified context ``v`` (M, width), plus a small meta-network ``pi``:
``Linear(D, D // 16) - ReLU - Linear(D // 16, width)`` of the L2-normalized image feature (D).
For image ``x`` every context vector is shifted by the same ``pi(x)``, so class ``c``'s prompt for
that image is ``[SOS] [v_1 + pi(x) ... v_M + pi(x)] [name_c] [.] [EOT]``, and the logits are
``logit_scale * cos(x, text(prompt_c(x)))``. Both ``v`` and ``pi`` train (SGD, one loop with
CoOp's); the encoders stay frozen.

The text encoder runs once per (image, class) pair. Affordable here by:

* one batched pass over all B x C prompts of a step (CoCoOp's code loops over the images),
  with CoOp's cut of the sequence at the longest EOT (exact under the causal mask);
* ``shared_prefix``: the positions before the class name ([SOS] + the image's context) run once
  per image rather than once per (image, class) prompt (methods/_shared_prefix.py; exact under
  the causal mask), and the meta-net runs once per image;
* ``prompt_chunk``: at most this many prompts per pass. A training step that exceeds it first
  encodes every prompt without autograd, back-propagates the loss to the text features, then
  re-encodes chunk by chunk with autograd and pushes those gradients through (exact gradient,
  the memory of one chunk). Evaluation encodes test images in chunks of the same size;
* CoOp's precision options (``fp16`` = the release's setting, meta-net in fp16 too).
"""

from __future__ import annotations


import torch
import torch.nn as nn
import torch.nn.functional as F

from bench.base.schema import ConfigError
from methods import METHODS
from methods._training import OptimConfig, seeded_rng, train
from methods.base import PER_EPOCH_VIEWS, Fitted, Task, normalize
from methods.coop import PromptEncoder, build_layout, init_context, resolve_precision, text_tower


class RowPromptEncoder(PromptEncoder):
    """CoOp's prompt encoder with one context per image: prompt i reads context
    ``ctx[group[i]]`` (ctx (G, M, W), one row per image) in the slots of ``classes[i]``, so the
    prompts of several images share one pass. With ``shared_prefix`` the positions before the
    class name ([SOS] + that image's context) run once per image, not once per prompt.
    Without ``group``, ``ctx`` has one row per prompt."""

    def forward(self, ctx: torch.Tensor, classes: torch.Tensor,
                group: torch.Tensor | None = None) -> torch.Tensor:
        if group is None:
            group = torch.arange(len(classes), device=classes.device)
        return self.encode_groups(ctx, classes, group)


def meta_net(image_dim: int, width: int, ratio: int) -> nn.Sequential:
    """CoCoOp's meta-net: Linear(D, D // ratio) - ReLU - Linear(D // ratio, width)."""
    hidden = image_dim // ratio
    if hidden < 1:
        raise ConfigError(f"cocoop: meta_ratio {ratio} leaves no hidden unit for image features "
                         f"of dimension {image_dim}; use meta_ratio <= {image_dim}")
    return nn.Sequential(nn.Linear(image_dim, hidden), nn.ReLU(), nn.Linear(hidden, width))


class CoCoOpModel(nn.Module):
    """The learned context and meta-net, and the text features of (image, class) pairs."""

    def __init__(self, ctx: torch.Tensor, meta: nn.Module, encoder: RowPromptEncoder,
                 chunk: int):
        super().__init__()
        self.ctx = nn.Parameter(ctx)
        self.meta = meta
        self.encoder = encoder
        self.chunk = chunk

    def ctx_rows(self, img: torch.Tensor) -> torch.Tensor:
        """Each image's context: ``v + pi(img)``, (B, M, W). ``img`` is normalized (B, D)."""
        return self.ctx.unsqueeze(0) + self.meta(img).unsqueeze(1)

    def pairs(self, B: int, C: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(image index, class index) of every prompt, in chunks of at most ``chunk``."""
        device = self.ctx.device
        img = torch.arange(B, device=device).repeat_interleave(C)
        cls = torch.arange(C, device=device).repeat(B)
        return list(zip(img.split(self.chunk), cls.split(self.chunk)))

    def encode_pairs(self, img: torch.Tensor, i: torch.Tensor, c: torch.Tensor,
                     encoder: RowPromptEncoder | None = None) -> torch.Tensor:
        """Text features (k, D') of the prompts of (image ``i``, class ``c``) pairs (``i``
        grouped, as :meth:`pairs` gives it): the meta-net once per image."""
        images, group = torch.unique_consecutive(i, return_inverse=True)
        return (encoder or self.encoder)(self.ctx_rows(img[images]), c, group)

    def text(self, img: torch.Tensor, n_classes: int, encoder: RowPromptEncoder | None = None,
             pairs=None) -> torch.Tensor:
        """Text features (B, C, D') of every image's prompts for every class."""
        pairs = pairs if pairs is not None else self.pairs(len(img), n_classes)
        out = [self.encode_pairs(img, i, c, encoder) for i, c in pairs]
        return torch.cat(out).view(len(img), n_classes, -1)


def _image_dim(model, tower) -> int:
    """The image feature dimension D (the joint embedding: the text projection's output)."""
    out = getattr(getattr(model, "visual", None), "output_dim", None)
    if out:
        return int(out)
    proj = tower.text_projection
    return int(proj.out_features if isinstance(proj, nn.Linear) else proj.shape[1])


def _logits(scale: float, img: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """(B, C): scale * cos(image b, its own text feature for class c)."""
    return scale * torch.einsum("bd,bcd->bc", img, normalize(text))


@METHODS.register("cocoop", display_name="CoCoOp", order=51, family="prompt learning",
                  views=PER_EPOCH_VIEWS,
                  new_classes=True,
                  description="prompt context conditioned on each image by a meta-net "
                              "(Zhou et al. 2022)")
def fit(task: Task) -> Fitted:
    cfg = task.config
    device = task.device
    tower = text_tower(task.backbone.model)
    model_device = tower.positional_embedding.device
    if model_device.type != device.type:
        raise ValueError(f"cocoop: the backbone is on {model_device}, the task on {device}")
    precision = resolve_precision(str(cfg["precision"]), device, "cocoop")
    dtype = torch.float16 if precision == "fp16" else torch.float32
    amp_dtype = {"amp_bf16": torch.bfloat16, "amp_fp16": torch.float16}.get(precision)
    width = tower.token_embedding.weight.shape[1]
    image_dim = _image_dim(task.backbone.model, tower)
    chunk = int(cfg["prompt_chunk"])

    ctx0, n_ctx, _ = init_context({**cfg, "csc": False}, task, tower, width, device, "cocoop")
    with seeded_rng(task.seed, device):  # nn.Linear's default init, from the task seed
        meta = meta_net(image_dim, width, int(cfg["meta_ratio"]))
    meta = meta.to(device=device, dtype=dtype)

    def encoder_for(classnames: list[str]) -> RowPromptEncoder:
        layout = build_layout(task.backbone.tokenizer, classnames, n_ctx, "end",
                              task.backbone.context_length, "cocoop")
        return RowPromptEncoder(tower, layout, dtype=dtype,
                                cut_sequence=bool(cfg["cut_sequence"]),
                                grad_checkpointing=bool(cfg["grad_checkpointing"]),
                                device=device, shared_prefix=bool(cfg["shared_prefix"]))

    model = CoCoOpModel(ctx0.to(dtype), meta, encoder_for(task.classnames), chunk)
    C = task.num_classes
    scale_logits = float(task.backbone.logit_scale)

    def autocast():
        return torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None)

    def step(x, y, scale):
        img = normalize(x.to(dtype))
        pairs = model.pairs(len(img), C)
        if len(pairs) == 1:
            with autocast():
                text = model.text(img, C, pairs=pairs)
                loss = F.cross_entropy(_logits(scale_logits, img, text), y)
            scale(loss).backward()
            return loss
        with torch.no_grad(), autocast():
            text = model.text(img, C, pairs=pairs)
        text.requires_grad_(True)
        with autocast():
            loss = F.cross_entropy(_logits(scale_logits, img, text), y)
        scale(loss).backward()
        grad = text.grad.reshape(len(img) * C, -1)
        start = 0
        for i, c in pairs:
            with autocast():
                part = model.encode_pairs(img, i, c)
            part.backward(grad[start:start + len(i)].to(part.dtype))
            start += len(i)
        return loss

    scaler = torch.amp.GradScaler(device.type) if precision == "amp_fp16" else None
    history = train(task, list(model.parameters()), step, OptimConfig.from_config(cfg),
                    scaler=scaler)
    model.requires_grad_(False)

    def for_classes(classnames: list[str], templates: list[str], dataset: str):
        """The learned context and meta-net with these class names (templates unused)."""
        encoder = model.encoder if list(classnames) == list(task.classnames) else \
            encoder_for(list(classnames))
        n = len(classnames)
        per_pass = max(1, chunk // n)  # test images per evaluation pass

        @torch.no_grad()
        def logits_fn(features: torch.Tensor) -> torch.Tensor:
            if len(features) == 0:
                return features.new_zeros(0, n)
            out = []
            for part in features.split(per_pass):
                img = normalize(part.to(device=device, dtype=dtype))
                with autocast():
                    text = model.text(img, n, encoder=encoder)
                    out.append(_logits(scale_logits, img, text.to(img.dtype)).float())
            return torch.cat(out).to(features.device)

        return logits_fn

    info = {"n_ctx": n_ctx, "precision": precision, "seq_len": model.encoder.seq_len,
            "shared_prefix_len": model.encoder.prefix_len,
            "meta_hidden": model.meta[0].out_features, "prompt_chunk": chunk,
            "train_loss_first_epoch": history[0], "train_loss_last_epoch": history[-1]}
    return Fitted(for_classes(task.classnames, task.templates, task.dataset), info, for_classes)
