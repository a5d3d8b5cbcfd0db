"""CoOp: context optimization (Zhou et al., IJCV 2022), docs/protocol.md §6.

M learnable context vectors replace the hand-written part of the prompt. For class c the text
encoder reads ``[SOS] [ctx x M] [class tokens] [.] [EOT]`` (class position ``end``), or
``[SOS] [ctx_1..M/2] [class] [ctx_M/2+1..M] [.] [EOT]`` (``middle``), or
``[SOS] [class] [ctx x M] [.] [EOT]`` (``front``), padded to the context length. The sequence
goes through the frozen text transformer with the causal mask, the final layer norm, EOT pooling
and the text projection; logits are ``logit_scale * cos(image, class text)``. Only the context
trains (unified: one (M, width) tensor; ``csc``: one per class).

``Fitted.for_classes`` (base-to-novel, cross-dataset): the learned unified context with other
class names, a new prompt layout through the same frozen encoder. A class-specific context
(``csc``) has no context for an unseen class: its Fitted has ``for_classes = None`` and the
protocols refuse it. :class:`PromptCore` is the trainable model KgCoOp and ProGrad share.

Cheaper, same results:

* ``cut_sequence``: the causal mask means no position attends to a later one, so everything
  after the longest prompt's EOT cannot change any EOT output; the sequence is cut there
  (77 -> typically 20-30 tokens for M=16).
* ``class_chunk``: the text encoder runs on at most this many classes at a time. During
  training a chunked step first encodes every class without autograd, back-propagates the loss
  to the class embeddings, then re-encodes chunk by chunk with autograd and pushes those
  gradients through (exact gradient, memory of one chunk; one extra forward per step).
* ``grad_checkpointing``: recompute each transformer block in the backward pass.
* ``precision``: ``fp32``; ``fp16`` = CoOp's setting (a half-precision copy of the text tower,
  layer norms computed in fp32 as OpenAI's CLIP does, fp16 context and SGD, no loss scaling);
  ``amp_bf16`` / ``amp_fp16``: fp32 weights and context under autocast (``amp_fp16`` with a
  GradScaler); ``auto`` = ``fp16`` on CUDA (faithful), ``fp32`` elsewhere.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from bench.base.errors import UsageError
from bench.base.schema import ConfigError
from methods import METHODS, _shared_prefix
from methods._training import (OptimConfig, seeded_generator, train, train_jointly,
                               training_loop)
from methods.base import PER_EPOCH_VIEWS, Fitted, Task, normalize

PRECISIONS = ("auto", "fp32", "fp16", "amp_bf16", "amp_fp16")
POSITIONS = ("end", "middle", "front")


def resolve_precision(precision: str, device: torch.device, name: str = "coop") -> str:
    if precision not in PRECISIONS:
        raise ConfigError(f"{name}: precision must be one of {', '.join(PRECISIONS)}, "
                         f"not {precision!r}")
    if precision == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    return precision


def text_tower(model) -> nn.Module:
    """The module holding open_clip's text transformer parts (CLIP or CustomTextCLIP)."""
    tower = getattr(model, "text", None)
    if tower is None:
        tower = model
    needed = ("token_embedding", "positional_embedding", "transformer", "ln_final")
    if any(not hasattr(tower, a) for a in needed) or getattr(tower, "cls_emb", None) is not None:
        raise UsageError("coop needs an open_clip text transformer (token embedding, causal "
                         "transformer, EOT pooling); this backbone's text tower is "
                         f"{type(tower).__name__}")
    pool = getattr(tower, "text_pool_type", None) or getattr(tower, "pool_type", "argmax")
    if pool not in ("argmax", "eos"):
        raise UsageError(f"coop pools the EOT token; this text tower pools {pool!r}")
    return tower


@dataclass
class PromptLayout:
    """Token ids of every class prompt, 0 at the context slots, and where the slots are."""

    ids: torch.Tensor  # (C, L) long
    ctx_cols: torch.Tensor  # (C, M) positions of context vector j in class c's prompt
    eot: torch.Tensor  # (C,) EOT position

    @property
    def seq_len(self) -> int:
        """Positions that can influence any EOT output (causal mask)."""
        return int(self.eot.max()) + 1


def _token_rows(tokenizer, texts: list[str]) -> list[list[int]]:
    """Each text's tokens between SOS and EOT (EOT = the largest id, as CLIP's pooling assumes)."""
    ids = tokenizer(texts)
    rows = []
    for row in ids:
        eot = int(row.argmax())
        rows.append([int(t) for t in row[1:eot]])
    return rows


def build_layout(tokenizer, classnames: list[str], n_ctx: int, position: str,
                 context_length: int, name: str = "coop", fixed: list[int] = ()) -> PromptLayout:
    """``name``: the method, for its errors. ``fixed``: token ids that stay between the context
    and the class name (ProGrad's release, whose context holds fewer tokens than its init phrase
    has; class position ``end`` only)."""
    if position not in POSITIONS:
        raise ConfigError(f"{name}: class_token_position must be one of {', '.join(POSITIONS)}, "
                         f"not {position!r}")
    fixed = [int(t) for t in fixed]
    if fixed and position != "end":
        raise ConfigError(f"{name}: {len(fixed)} fixed token(s) between the context and the class "
                         f"name need class_token_position end, not {position!r}")
    sample = tokenizer(["x"])[0]
    sos, eot_id = int(sample[0]), int(sample.max())
    # "name." tokenized as a whole (as CoOp tokenizes "X X .. X name."), split after the name's
    # own token count: the class part is the name, the rest is the period (and whatever merged).
    bodies = _token_rows(tokenizer, [f"{c}." for c in classnames])
    name_lens = [len(r) for r in _token_rows(tokenizer, list(classnames))]
    C = len(classnames)
    ids = torch.zeros(C, context_length, dtype=torch.long)
    cols = torch.zeros(C, n_ctx, dtype=torch.long)
    eot = torch.zeros(C, dtype=torch.long)
    half = n_ctx // 2
    for c, (body, k) in enumerate(zip(bodies, name_lens)):
        cls, rest = body[:k], body[k:]
        ctx_slots = [-1] * n_ctx
        if position == "end":
            seq = [sos] + ctx_slots + fixed + cls + rest
        elif position == "middle":
            seq = [sos] + ctx_slots[:half] + cls + ctx_slots[half:] + rest
        else:
            seq = [sos] + cls + ctx_slots + rest
        seq.append(eot_id)
        if len(seq) > context_length:
            raise ConfigError(f"{name}: the prompt for class {classnames[c]!r} needs {len(seq)} "
                             f"tokens with {n_ctx} context vectors; the text encoder takes "
                             f"{context_length}")
        row = torch.tensor(seq)
        cols[c] = (row == -1).nonzero().flatten()
        row[row == -1] = 0
        ids[c, :len(seq)] = row
        eot[c] = len(seq) - 1
    return PromptLayout(ids, cols, eot)


class _TextParts(nn.Module):
    """References to the frozen text modules (copied only for the fp16 precision)."""

    def __init__(self, tower: nn.Module):
        super().__init__()
        self.transformer = tower.transformer
        self.ln_final = tower.ln_final
        proj = tower.text_projection
        if isinstance(proj, nn.Module) or proj is None:
            self.proj_module, self.proj = proj, None
        else:
            self.proj_module, self.proj = None, proj
        self.positional_embedding = tower.positional_embedding
        mask = getattr(tower, "attn_mask", None)
        self.register_buffer("attn_mask", mask, persistent=False)


def _half_copy(parts: _TextParts) -> _TextParts:
    """CoOp's fp16 text tower: weights in fp16, layer norms computed in fp32 (OpenAI CLIP)."""
    import open_clip.model as ocm
    from open_clip.transformer import LayerNorm, LayerNormFp32

    half = copy.deepcopy(parts)
    ocm.convert_weights_to_lp(half, torch.float16)
    if half.proj is not None:
        half.proj.data = half.proj.data.half()
    for m in half.modules():
        if type(m) in (LayerNorm, nn.LayerNorm):
            m.__class__ = LayerNormFp32
    return half.eval().requires_grad_(False)


def _text_block(block: nn.Module, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """One residual block of the text transformer. For open_clip's standard block (pre-norm,
    ``nn.MultiheadAttention``) the attention gets ``is_causal=True`` besides the causal mask: the
    mask is then dropped and ``scaled_dot_product_attention`` runs its causal kernels (flash
    attention where the device has it) instead of adding a float mask to every score. Same maths
    as ``block(x, attn_mask=mask)``, which any other block (or no mask) falls back to. The
    block's own forward hooks do not fire on the fast path (its submodules' do)."""
    if mask is None or not _shared_prefix.standard_block(block):
        return block(x, attn_mask=mask)
    h = block.ln_1(x)
    h = block.attn(h, h, h, need_weights=False, attn_mask=mask.to(h.dtype), is_causal=True)[0]
    x = x + block.ls_1(h)
    return x + block.ls_2(block.mlp(block.ln_2(x)))


class PromptEncoder(nn.Module):
    """Class text embeddings from learned context vectors (the frozen text encoder)."""

    def __init__(self, tower: nn.Module, layout: PromptLayout, *, dtype: torch.dtype,
                 cut_sequence: bool, grad_checkpointing: bool, device: torch.device,
                 parts: "_TextParts | None" = None, shared_prefix: bool = False):
        super().__init__()
        if parts is None:  # reuse another encoder's (the fp16 copy is made once)
            parts = _TextParts(tower)
            if dtype == torch.float16:
                parts = _half_copy(parts)
        self.parts = parts
        self.layout = layout
        causal = parts.attn_mask is not None
        L = layout.seq_len if (cut_sequence and causal) else layout.ids.shape[1]
        self.seq_len = L
        self.dtype = dtype
        self.grad_checkpointing = grad_checkpointing
        ids = layout.ids[:, :L].to(device)
        with torch.no_grad():
            base = tower.token_embedding(ids).to(dtype)
        self.register_buffer("base", base, persistent=False)  # (C, L, W)
        self.register_buffer("ctx_cols", layout.ctx_cols.to(device), persistent=False)
        self.register_buffer("eot", layout.eot.to(device), persistent=False)
        self.register_buffer("pos", parts.positional_embedding[:L].detach().to(dtype),
                             persistent=False)
        mask = parts.attn_mask[:L, :L] if causal else None
        self.register_buffer("mask", mask, persistent=False)
        # with a unified context, the positions every prompt shares run once (methods/_shared_prefix.py)
        P = 0
        if shared_prefix and causal and _shared_prefix.supported(parts.transformer):
            P = _shared_prefix.prefix_length(layout.ids[:, :L], layout.ctx_cols, layout.eot)
        self.prefix_len = P if P > 1 else 0

    def embed(self, ctx_rows: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """The token embeddings entering the transformer (k, L, W), positions added:
        ``ctx_rows`` (k, M, W), one context per prompt, in the slots of ``classes`` (k,)."""
        k, M = ctx_rows.shape[:2]
        x = self.base[classes]
        rows = torch.arange(k, device=x.device).repeat_interleave(M)
        x = x.index_put((rows, self.ctx_cols[classes].flatten()),
                        ctx_rows.reshape(k * M, -1).to(x.dtype))
        return x + self.pos.to(x.dtype)

    def encode(self, x: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """The frozen text transformer from embeddings ``x`` (k, L, W) of ``classes``' prompts:
        causal blocks, then :meth:`pool`."""
        tr = self.parts.transformer
        if not getattr(tr, "batch_first", True):
            x = x.transpose(0, 1)
        for block in tr.resblocks:
            run = functools.partial(_text_block, block, mask=self.mask)
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(run, x, use_reentrant=False)
            else:
                x = run(x)
        if not getattr(tr, "batch_first", True):
            x = x.transpose(0, 1)
        return self.pool(x, classes)

    def pool(self, x: torch.Tensor, classes: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """The final layer norm, the EOT position's state (``x`` starting at position
        ``offset``), the text projection -> (k, D)."""
        x = self.parts.ln_final(x)
        x = x[torch.arange(len(classes), device=x.device), self.eot[classes] - offset]
        if self.parts.proj_module is not None:
            return self.parts.proj_module(x)
        return x @ self.parts.proj if self.parts.proj is not None else x

    def forward(self, ctx: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """``ctx`` (M, W) unified or (C, M, W) class-specific; ``classes`` (k,) -> (k, D)."""
        k = len(classes)
        ctx_rows = ctx.unsqueeze(0).expand(k, -1, -1) if ctx.ndim == 2 else ctx[classes]
        x = self.embed(ctx_rows, classes)
        P = self.prefix_len if ctx.ndim == 2 else 0
        if not P:
            return self.encode(x, classes)
        return self.encode_after_prefix(x[:1, :P], x[:, P:], classes)

    def encode_groups(self, ctx: torch.Tensor, classes: torch.Tensor,
                      group: torch.Tensor) -> torch.Tensor:
        """Several unified contexts in one pass: prompt i reads context ``ctx[group[i]]``
        (ctx (G, M, W)) in the slots of ``classes[i]`` -> (k, D). With the shared prefix, the
        positions before the class name run once per context."""
        x = self.embed(ctx[group], classes)
        P = self.prefix_len
        if not P:
            return self.encode(x, classes)
        prefix = self.embed(ctx, classes.new_zeros(len(ctx)))[:, :P]  # any class: shared part
        return self.encode_after_prefix(prefix, x[:, P:], classes, group)

    def encode_after_prefix(self, prefix: torch.Tensor, suffix: torch.Tensor,
                            classes: torch.Tensor, group: torch.Tensor | None = None
                            ) -> torch.Tensor:
        """The frozen text transformer over the shared ``prefix`` (G, P, W) once and each
        prompt's ``suffix`` (k, S, W) after it (methods/_shared_prefix.py), then :meth:`pool`."""
        last = _shared_prefix.run_blocks(self.parts.transformer.resblocks, prefix, suffix, group,
                                         grad_checkpointing=self.grad_checkpointing)
        return self.pool(last, classes, offset=self.prefix_len)


@torch.no_grad()
def half_text_features(backbone, prompts: list[str], device: torch.device,
                       batch_size: int = 256) -> torch.Tensor:
    """Raw text embeddings (N, D) of hand-written ``prompts`` from an fp16 copy of the text tower
    (OpenAI CLIP's fp16 model, as CoOp-based releases load it: weights and activations fp16,
    layer norms computed in fp32), returned as float32. The sequence is cut after the longest
    prompt's EOT (exact under the causal mask)."""
    tower = text_tower(backbone.model)
    parts = _half_copy(_TextParts(tower))
    out = []
    for i in range(0, len(prompts), batch_size):
        ids = backbone.tokenizer(prompts[i:i + batch_size])
        eot = ids.argmax(dim=-1)
        layout = PromptLayout(ids, torch.zeros(len(ids), 0, dtype=torch.long), eot)
        enc = PromptEncoder(tower, layout, dtype=torch.float16, cut_sequence=True,
                            grad_checkpointing=False, device=device, parts=parts)
        classes = torch.arange(len(ids), device=device)
        out.append(enc.encode(enc.base + enc.pos, classes).float())
    return torch.cat(out)


def init_context(cfg: dict, task: Task, tower: nn.Module, width: int,
                 device: torch.device, name: str = "coop") -> tuple[torch.Tensor, int, bool]:
    """(context tensor, M, csc): random N(0, init_std) or the embedding of ``ctx_init``."""
    phrase = cfg.get("ctx_init") or None
    csc = bool(cfg["csc"])
    if phrase:
        if csc:
            raise ConfigError(f"{name}: ctx_init initializes a unified context (as in CoOp); "
                             "it cannot be combined with csc=true")
        tokens = _token_rows(task.backbone.tokenizer, [str(phrase).replace("_", " ")])[0]
        with torch.no_grad():
            ctx = tower.token_embedding(torch.tensor(tokens, device=device)).float()
        return ctx, len(tokens), False
    n_ctx = int(cfg["n_ctx"])
    if n_ctx < 1:
        raise ConfigError(f"{name}: n_ctx must be >= 1, not {n_ctx}")
    shape = (task.num_classes, n_ctx, width) if csc else (n_ctx, width)
    gen = seeded_generator(task.seed)
    ctx = torch.randn(shape, generator=gen) * float(cfg["init_std"])
    return ctx.to(device), n_ctx, csc


def _chunks(n: int, size: int | None, device) -> list[torch.Tensor]:
    idx = torch.arange(n, device=device)
    return list(idx.split(size)) if size else [idx]


class PromptCore:
    """CoOp's trainable model: the context, the prompt encoder and the step's pieces, shared by
    CoOp and the methods built on it (KgCoOp adds a loss term on the class text embeddings,
    ProGrad replaces the backward pass). ``name`` prefixes config errors."""

    def __init__(self, task: Task, name: str = "coop", init=None,
                 parts: "_TextParts | None" = None, fixed: list[int] = ()):
        cfg = task.config
        self.task, self.name = task, name
        self.device = device = task.device
        tower = text_tower(task.backbone.model)
        self.tower = tower
        model_device = tower.positional_embedding.device
        if model_device.type != device.type:
            raise ValueError(f"{name}: the backbone is on {model_device}, the task on {device}")
        self.precision = resolve_precision(str(cfg["precision"]), device, name)
        self.dtype = torch.float16 if self.precision == "fp16" else torch.float32
        self.amp_dtype = {"amp_bf16": torch.bfloat16, "amp_fp16": torch.float16}.get(self.precision)
        width = tower.token_embedding.weight.shape[1]
        ctx0, self.n_ctx, self.csc = (init or init_context)(cfg, task, tower, width, device, name)
        self.position = str(cfg["class_token_position"])
        self.cut_sequence = bool(cfg["cut_sequence"])
        self.shared_prefix = bool(cfg["shared_prefix"])
        self.grad_checkpointing = bool(cfg["grad_checkpointing"])
        self.parts = parts  # another model's frozen tower (joint fits: one fp16 copy), or None
        self.fixed = list(fixed)  # token ids between the context and the class name (ProGrad)
        self.encoder = self.encoder_for(task.classnames)
        self.parts = self.encoder.parts
        self.ctx = nn.Parameter(ctx0.to(self.dtype))
        self.C = task.num_classes
        chunk = cfg.get("class_chunk") or None
        self.class_chunk = int(chunk) if chunk else None
        self.chunk = self.class_chunk if self.class_chunk and self.class_chunk < self.C else None
        self.scale_logits = float(task.backbone.logit_scale)

    def encoder_for(self, classnames: list[str]) -> "PromptEncoder":
        layout = build_layout(self.task.backbone.tokenizer, classnames, self.n_ctx,
                              self.position, self.task.backbone.context_length, self.name,
                              self.fixed)
        return PromptEncoder(self.tower, layout, dtype=self.dtype, cut_sequence=self.cut_sequence,
                             grad_checkpointing=self.grad_checkpointing, device=self.device,
                             parts=self.parts,
                             shared_prefix=self.shared_prefix)

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype,
                              enabled=self.amp_dtype is not None)

    def encode_all(self, encoder=None, chunk: int | None = None) -> torch.Tensor:
        encoder = encoder or self.encoder
        n = encoder.base.shape[0]
        with self.autocast():
            return torch.cat([encoder(self.ctx, idx) for idx in _chunks(n, chunk, self.device)])

    def logits_from(self, img: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return self.scale_logits * normalize(img) @ normalize(text).t()

    def class_text(self) -> torch.Tensor:
        """(C, D) class embeddings for a training step: with autograd to the context, or, with
        ``class_chunk``, computed without it as a leaf that collects the loss gradient."""
        if self.chunk is None:
            with self.autocast():
                return self.encoder(self.ctx, torch.arange(self.C, device=self.device))
        with torch.no_grad():
            text = self.encode_all(chunk=self.chunk)
        return text.requires_grad_(True)

    def backward(self, loss: torch.Tensor, text: torch.Tensor, scale) -> None:
        """Accumulate d(loss)/d(context) into ``ctx.grad`` (the chunked two-pass when set)."""
        scale(loss).backward()
        if self.chunk is None:
            return
        grad = text.grad
        for idx in _chunks(self.C, self.chunk, self.device):
            with self.autocast():
                part = self.encoder(self.ctx, idx)
            part.backward(grad[idx].to(part.dtype))

    def ctx_grads(self, losses: list[torch.Tensor], text: torch.Tensor, scale) -> list[torch.Tensor]:
        """d(loss)/d(context) for each loss, separately (ProGrad projects one on another);
        ``ctx.grad`` is left alone. With ``class_chunk``, every chunk is encoded once for all."""
        if self.chunk is None:
            return [torch.autograd.grad(scale(loss), self.ctx, retain_graph=True)[0]
                    for loss in losses]
        text_grads = [torch.autograd.grad(scale(loss), text, retain_graph=True)[0]
                      for loss in losses]
        totals = [torch.zeros_like(self.ctx) for _ in losses]
        for idx in _chunks(self.C, self.chunk, self.device):
            with self.autocast():
                part = self.encoder(self.ctx, idx)
            for i, g in enumerate(text_grads):
                totals[i] += torch.autograd.grad(part, self.ctx, g[idx].to(part.dtype),
                                                 retain_graph=i < len(text_grads) - 1)[0]
        return totals

    def loss(self, x: torch.Tensor, y: torch.Tensor, text: torch.Tensor,
             extra_loss=None) -> torch.Tensor:
        """CoOp's loss on a batch: cross-entropy against the class embeddings ``text`` (C, D)
        (+ ``extra_loss(text)`` when given)."""
        img = x.to(self.dtype)
        with self.autocast():
            loss = F.cross_entropy(self.logits_from(img, text), y)
            if extra_loss is not None:
                loss = loss + extra_loss(text)
        return loss

    def step_fn(self, extra_loss=None):
        """CoOp's step: :meth:`loss`, backward, loss."""

        def step(x, y, scale):
            text = self.class_text()
            loss = self.loss(x, y, text, extra_loss)
            self.backward(loss, text, scale)
            return loss

        return step

    def _scaler(self) -> "torch.amp.GradScaler | None":
        return torch.amp.GradScaler(self.device.type) if self.precision == "amp_fp16" else None

    def train(self, step) -> list[float]:
        return train(self.task, [self.ctx], step, OptimConfig.from_config(self.task.config),
                     scaler=self._scaler())

    def loop(self):
        """This model's :func:`methods._training.training_loop` (for :func:`train_together`)."""
        return training_loop(self.task, [self.ctx], OptimConfig.from_config(self.task.config),
                             scaler=self._scaler())

    def logits_fn_for(self, encoder=None):
        """The trained model's logits function over ``encoder``'s classes."""
        with torch.no_grad():
            text = normalize(self.encode_all(encoder, self.class_chunk).to(self.dtype))
        dtype, device, s = self.dtype, self.device, self.scale_logits

        def logits_fn(features: torch.Tensor) -> torch.Tensor:
            img = normalize(features.to(device=device, dtype=dtype))
            return (s * img @ text.t()).float().to(features.device)

        return logits_fn

    def for_classes(self):
        """Fitted.for_classes: the learned unified context with other class names; None with
        a class-specific context (one context per trained class cannot score other classes)."""
        if self.csc:
            return None

        def for_classes(classnames: list[str], templates: list[str], dataset: str):
            return self.logits_fn_for(self.encoder_for(list(classnames)))

        return for_classes

    def fitted(self, history: list[float], **extra_info) -> Fitted:
        info = {"n_ctx": self.n_ctx, "csc": self.csc, "precision": self.precision,
                "seq_len": self.encoder.seq_len,
                "shared_prefix_len": self.encoder.prefix_len, "train_loss_first_epoch": history[0],
                "train_loss_last_epoch": history[-1], **extra_info}
        return Fitted(self.logits_fn_for(), info, self.for_classes())


def train_together(cores: list[PromptCore], extra_losses: list | None = None
                   ) -> list[list[float]]:
    """Train CoOp models of the same classes in step, one text-encoder pass per step for all:
    the contexts are stacked and every class prompt of every model goes through the frozen
    encoder together (``PromptEncoder.encode_groups``; with the shared prefix, each model's
    ``[SOS] + context`` once). This is what ``bench run --joint-fits`` does with the cells of a
    seed that differ only in shots (docs/methods.md, "Joint fits"): on a GPU a step of a few
    hundred prompts is bound by kernel launches, not arithmetic, so K models cost about one.

    Each model keeps its own context, optimizer, schedule, batches and GradScaler
    (:func:`methods._training.train_jointly`), and no model's loss reaches another's context,
    so each trains as it would alone, up to float rounding: the backward pass sums a context's
    gradient over its prompts in another order (tests/test_coop_joint.py). Models that train
    fewer steps (fewer shots) drop out of the pass when they finish. ``extra_losses[i]`` is
    model i's ``extra_loss`` (:meth:`PromptCore.step_fn`)."""
    extra_losses = extra_losses or [None] * len(cores)
    first = cores[0]

    def layout(c: PromptCore) -> tuple:
        return (c.task.classnames, c.n_ctx, c.position, c.precision, c.encoder.seq_len,
                c.encoder.prefix_len, c.grad_checkpointing)

    for core in cores:
        if core.csc or core.chunk is not None:
            raise ValueError(f"{core.name}: joint fits need a unified context and no "
                             "class_chunk (one context per model, every class in one pass)")
        if layout(core) != layout(first):
            raise ValueError(f"{core.name}: joint fits need the same classes, prompt layout "
                             "and precision")
    device, C = first.device, first.C

    def step(members: list[int], batches: list[tuple]) -> list[torch.Tensor]:
        K = len(members)
        classes = torch.arange(C, device=device).repeat(K)
        group = torch.arange(K, device=device).repeat_interleave(C)
        with first.autocast():
            ctx = torch.stack([cores[i].ctx for i in members])
            text = first.encoder.encode_groups(ctx, classes, group).view(K, C, -1)
        losses = [cores[i].loss(x, y, text[j], extra_losses[i])
                  for j, (i, (x, y, _)) in enumerate(zip(members, batches))]
        sum(scale(loss) for (_, _, scale), loss in zip(batches, losses)).backward()
        return losses

    return train_jointly([core.loop() for core in cores], step)


def unified_context(config: dict) -> bool:
    """A unified context scores any class name; a class-specific one (csc) only its own."""
    return not config.get("csc")


def seed_use(config: dict):
    """How the seed reaches a prompt learner's result (the conformance suite's ``stochastic``):
    a random context init and the batch order, or, with ``ctx_init`` (a context initialized
    from a phrase), the batch order only."""
    return "batch_order" if config.get("ctx_init") else True


def fit_together(tasks: list[Task]) -> list[Fitted]:
    """:func:`fit` for cells that differ only in shots, in one joint training
    (:func:`train_together`; the runner's ``--joint-fits``)."""
    first = PromptCore(tasks[0])
    cores = [first] + [PromptCore(task, parts=first.parts) for task in tasks[1:]]
    return [core.fitted(history) for core, history in zip(cores, train_together(cores))]


def join_key(config: dict) -> tuple | None:
    """What two cells' configs must share to train jointly (:func:`train_together`: one
    encoder for all, so the same prompt layout and precision); None when this config cannot
    (a class-specific context, or class chunks: every class of every model is in one pass)."""
    if not unified_context(config) or config.get("class_chunk"):
        return None
    return tuple(config.get(k) for k in ("n_ctx", "ctx_init", "class_token_position",
                                         "cut_sequence", "shared_prefix", "precision",
                                         "grad_checkpointing"))


@METHODS.register("coop", display_name="CoOp", order=50, family="prompt learning",
                  views=PER_EPOCH_VIEWS,
                  new_classes=unified_context,
                  fit_together=fit_together, join_key=join_key, stochastic=seed_use,
                  description="learned prompt context through the frozen text encoder "
                              "(Zhou et al. 2022)")
def fit(task: Task) -> Fitted:
    core = PromptCore(task)
    history = core.train(core.step_fn())
    return core.fitted(history)
