"""open_clip's two towers run block by block, with trainable hooks, never touching the model.

The methods that tune inside the encoders (methods/tuning.py) change what the frozen towers
compute in three ways; this module runs open_clip's ``VisionTransformer`` and text transformer
(``CLIP``'s own text parts or a ``TextTransformer``) itself, layer by layer, and applies them:

* **LoRA** (CLIP-LoRA, 2SFS's ``lora`` option): per attention layer, low-rank updates of the
  query, key, value and (optionally) output projections, ``W x + s * B (A drop(x))`` with
  ``s = alpha / sqrt(r)`` (CLIP-LoRA's ``loralib/layers.py``) and dropout on the branch's input
  only (:class:`LayerLoRA`). A layer with LoRA computes its attention here
  (:func:`lora_attention`, ``scaled_dot_product_attention``); every other layer calls the
  block's own ``nn.MultiheadAttention``.
* **Deep prompts** (PromptSRC, MaPLe): learned tokens at the input of layers 1 .. depth-1 that
  replace the previous layer's outputs at the prompt positions: text positions 1 .. n (right
  after SOS; layer 0's prompt tokens are part of the token embeddings the method builds),
  vision the last n positions (layer 0's are appended after the patch tokens, before
  ``ln_pre``).
* **LayerNorm parameters** (2SFS): a LayerNorm computed with other weight and bias tensors
  (trainable copies), by the same formula as the module (open_clip's ``LayerNorm`` casts back
  to the input dtype, ``LayerNormFp32`` computes in fp32).

The shared model's parameters and buffers are only read: no module is replaced, no parameter
swapped (not even for the duration of a call, as ``torch.func.functional_call`` would), so one
frozen model serves any number of tuned views at once. With empty hooks the outputs equal
``model.encode_image`` / ``model.encode_text`` bitwise (tests/test_clip_hooks.py): the same
operations in the same order.

``grad_checkpointing`` recomputes each block in the backward pass (non-reentrant, which keeps
the RNG state: LoRA dropout draws the same masks again).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from bench.base.errors import UsageError

LORA_TARGETS = ("q", "k", "v", "o")


# -- what a tower can be ---------------------------------------------------------------------------

def _standard_block(block: nn.Module) -> bool:
    from open_clip.transformer import ResidualAttentionBlock

    attn = getattr(block, "attn", None)
    return (type(block) is ResidualAttentionBlock and not hasattr(block, "ln_1_kv")
            and isinstance(attn, nn.MultiheadAttention) and attn.batch_first
            and attn._qkv_same_embed_dim and attn.bias_k is None)


def vit_problem(model) -> str | None:
    """Why ``model``'s image tower cannot be tuned here, or None: it must be open_clip's
    ``VisionTransformer`` with token or average pooling, no attentional pooler, standard
    batch-first blocks."""
    from open_clip.transformer import VisionTransformer

    visual = getattr(model, "visual", None)
    if not isinstance(visual, VisionTransformer):
        return f"its image tower is {type(visual).__name__}, not a ViT"
    if visual.attn_pool is not None or visual.pool_type not in ("tok", "avg") \
            or visual.final_ln_after_pool:
        return "its ViT pools with an attentional pooler or after the final norm"
    if not all(_standard_block(b) for b in visual.transformer.resblocks):
        return "its ViT blocks are not open_clip's standard ResidualAttentionBlock"
    return None


def text_tower(model, method: str) -> nn.Module:
    """The module holding the text transformer's parts: ``model.text`` (CustomTextCLIP) or the
    model itself (CLIP), with EOT pooling and standard blocks; else one line naming ``method``."""
    tower = model.text if getattr(model, "text", None) is not None else model
    needed = ("token_embedding", "positional_embedding", "transformer", "ln_final")
    pool = getattr(tower, "text_pool_type", None) or getattr(tower, "pool_type", "argmax")
    if any(not hasattr(tower, a) for a in needed) or getattr(tower, "cls_emb", None) is not None \
            or pool not in ("argmax", "eos"):
        raise UsageError(f"{method} needs an open_clip text transformer with EOT pooling; this "
                         f"backbone's text tower is {type(tower).__name__}")
    if not all(_standard_block(b) for b in tower.transformer.resblocks):
        raise UsageError(f"{method} needs open_clip's standard text blocks "
                         "(ResidualAttentionBlock with nn.MultiheadAttention, batch first)")
    return tower


def check_vit(model, method: str, backbone: str = "this backbone") -> None:
    """One line (exit 2) when ``method`` needs a ViT image tower that ``model`` lacks."""
    problem = vit_problem(model)
    if problem:
        raise UsageError(f"{method} tunes inside a ViT image tower; {backbone} cannot be used: "
                         f"{problem} (use a ViT backbone, e.g. ViT-B-16, or bench-demo-vit on "
                         f"the demo)")


def layernorm_names(tower: nn.Module, blocks_only: bool = False) -> list[str]:
    """Names (relative to ``tower``: ``model.visual`` or :func:`text_tower`'s module) of its
    LayerNorms in module order, the image tower's left out of a CLIP model's text side;
    ``blocks_only``: those inside the transformer blocks (``ln_1``, ``ln_2``)."""
    names = [n for n, m in tower.named_modules()
             if isinstance(m, nn.LayerNorm) and not n.startswith("visual.")]
    if blocks_only:
        names = [n for n in names if n.startswith("transformer.resblocks.")]
    return names


# -- hooks -----------------------------------------------------------------------------------------

class LoRABranch(nn.Module):
    """``s * B (A drop(x))`` for one projection (``out x in``): A (r, in) initialized as
    ``nn.Linear``'s weight (Kaiming uniform, a = sqrt(5)), B (out, r) zero, so a new branch adds
    exactly 0."""

    def __init__(self, d_in: int, d_out: int, r: int, alpha: float, dropout: float,
                 generator: torch.Generator | None = None):
        super().__init__()
        if r < 1:
            raise ValueError(f"LoRA rank must be >= 1, not {r}")
        self.A = nn.Parameter(torch.empty(r, d_in))
        self.B = nn.Parameter(torch.zeros(d_out, r))
        bound = 1.0 / math.sqrt(d_in)  # kaiming_uniform_(a=sqrt(5)): sqrt(6 / ((1 + 5) fan_in))
        with torch.no_grad():
            self.A.uniform_(-bound, bound, generator=generator)
        self.scaling = alpha / math.sqrt(r)
        self.dropout = float(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.dropout > 0:
            x = F.dropout(x, self.dropout, training=True)
        return F.linear(F.linear(x, self.A.to(x.dtype)), self.B.to(x.dtype)) * self.scaling


class LayerLoRA(nn.ModuleDict):
    """The LoRA branches of one attention layer, keyed by ``q``, ``k``, ``v``, ``o``."""

    def __init__(self, width: int, targets, r: int, alpha: float, dropout: float,
                 generator: torch.Generator | None = None):
        bad = [t for t in targets if t not in LORA_TARGETS]
        if bad or not targets:
            raise ValueError(f"LoRA targets must be some of {LORA_TARGETS}, not {list(targets)}")
        super().__init__({t: LoRABranch(width, width, r, alpha, dropout, generator)
                          for t in LORA_TARGETS if t in targets})


@dataclass
class TowerHooks:
    """What to change in one tower. Layers are 0-based block indices.

    * ``lora``: layer -> :class:`LayerLoRA`;
    * ``prompts``: layer -> (n, width) tokens entering that layer at the prompt positions;
      for the text tower layer 0 is not allowed (its prompts are in the token embeddings), for
      the vision tower layer 0's are appended after the patch tokens before ``ln_pre`` and
      every later layer replaces the last n positions (all layers the same n);
    * ``norms``: LayerNorm name relative to the tower (``ln_pre``, ``transformer.resblocks.3.ln_1``,
      ``ln_final``...) -> (weight, bias) used instead of its parameters.
    """

    lora: Mapping[int, LayerLoRA] = field(default_factory=dict)
    prompts: Mapping[int, torch.Tensor] = field(default_factory=dict)
    norms: Mapping[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    grad_checkpointing: bool = False

    def n_prompts(self) -> int:
        sizes = {int(p.shape[0]) for p in self.prompts.values()}
        if len(sizes) > 1:
            raise ValueError(f"deep prompts of different lengths {sorted(sizes)}")
        return sizes.pop() if sizes else 0


NO_HOOKS = TowerHooks()


def layer_norm(module: nn.Module, x: torch.Tensor,
               params: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
    """``module(x)``, or its formula with ``params`` = (weight, bias) instead of its own."""
    if params is None:
        return module(x)
    from open_clip.transformer import LayerNorm, LayerNormFp32

    weight, bias = params
    if type(module) is LayerNormFp32:
        return F.layer_norm(x.to(torch.float32), module.normalized_shape, weight, bias,
                            module.eps).to(x.dtype)
    if type(module) is LayerNorm:
        return F.layer_norm(x, module.normalized_shape, weight, bias, module.eps).to(x.dtype)
    if type(module) is nn.LayerNorm:
        return F.layer_norm(x, module.normalized_shape, weight, bias, module.eps)
    raise UsageError(f"cannot replace the parameters of a {type(module).__name__}")


def lora_attention(attn: nn.MultiheadAttention, h: torch.Tensor, mask: torch.Tensor | None,
                   lora: LayerLoRA) -> torch.Tensor:
    """Self-attention of ``attn`` on ``h`` (N, L, D) with LoRA branches added to its
    projections (the maths of ``nn.MultiheadAttention``, dropout 0)."""
    N, L, D = h.shape
    H = attn.num_heads
    w = attn.in_proj_weight.to(h.dtype)
    b = attn.in_proj_bias.to(h.dtype) if attn.in_proj_bias is not None else None
    parts = []
    for i, name in enumerate(("q", "k", "v")):
        y = F.linear(h, w[i * D:(i + 1) * D], None if b is None else b[i * D:(i + 1) * D])
        if name in lora:
            y = y + lora[name](h)
        parts.append(y.view(N, L, H, D // H).transpose(1, 2))
    if mask is not None:
        mask = mask.to(parts[0].dtype)
    out = F.scaled_dot_product_attention(*parts, attn_mask=mask)
    out = out.transpose(1, 2).reshape(N, L, D)
    proj = attn.out_proj
    y = F.linear(out, proj.weight.to(out.dtype),
                 None if proj.bias is None else proj.bias.to(out.dtype))
    if "o" in lora:
        y = y + lora["o"](out)
    return y


def run_block(block: nn.Module, x: torch.Tensor, mask: torch.Tensor | None,
              lora: LayerLoRA | None = None, ln_1=None, ln_2=None) -> torch.Tensor:
    """open_clip's ``ResidualAttentionBlock.forward`` (self-attention), with hooks."""
    h = layer_norm(block.ln_1, x, ln_1)
    if lora is None:
        a = block.attn(h, h, h, need_weights=False,
                       attn_mask=mask.to(h.dtype) if mask is not None else None)[0]
    else:
        a = lora_attention(block.attn, h, mask, lora)
    x = x + block.ls_1(a)
    return x + block.ls_2(block.mlp(layer_norm(block.ln_2, x, ln_2)))


def run_blocks(resblocks, x: torch.Tensor, mask: torch.Tensor | None, hooks: TowerHooks,
               prefix: str, replace_prompts) -> torch.Tensor:
    """Every block in order; before block i > 0, ``replace_prompts(x, hooks.prompts[i])``."""
    for i, block in enumerate(resblocks):
        if i > 0 and i in hooks.prompts:
            x = replace_prompts(x, hooks.prompts[i])
        name = f"{prefix}resblocks.{i}."
        args = (hooks.lora.get(i), hooks.norms.get(name + "ln_1"), hooks.norms.get(name + "ln_2"))

        def run(t, block=block, args=args):
            return run_block(block, t, mask, *args)

        if hooks.grad_checkpointing and torch.is_grad_enabled():
            x = checkpoint(run, x, use_reentrant=False)
        else:
            x = run(x)
    return x


# -- the image tower -------------------------------------------------------------------------------

def encode_image(model, images: torch.Tensor, hooks: TowerHooks = NO_HOOKS) -> torch.Tensor:
    """Raw image embeddings (N, D): ``model.encode_image(images)`` with ``hooks`` (names in
    ``hooks.norms`` relative to ``model.visual``)."""
    from open_clip.transformer import _expand_token

    visual = model.visual
    norms = hooks.norms
    x = visual.conv1(images)
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
    x = torch.cat([_expand_token(visual.class_embedding, x.shape[0]).to(x.dtype), x], dim=1)
    x = x + visual.positional_embedding.to(x.dtype)
    x = visual.patch_dropout(x)
    n = hooks.n_prompts()
    if 0 in hooks.prompts:
        x = torch.cat([x, hooks.prompts[0].to(x.dtype).expand(x.shape[0], -1, -1)], dim=1)
    x = layer_norm(visual.ln_pre, x, norms.get("ln_pre"))

    def replace(t, p):
        if 0 not in hooks.prompts:
            raise ValueError("vision prompts at deeper layers need layer 0's prompts (their slots)")
        return torch.cat([t[:, :t.shape[1] - n], p.to(t.dtype).expand(t.shape[0], -1, -1)], dim=1)

    x = run_blocks(visual.transformer.resblocks, x, None, hooks, "transformer.", replace)
    x = layer_norm(visual.ln_post, x, norms.get("ln_post"))
    if visual.pool_type == "tok":
        pooled = x[:, 0]
    else:  # avg over the patch tokens (prompt tokens excluded)
        pooled = x[:, 1:x.shape[1] - (n if 0 in hooks.prompts else 0)].mean(dim=1)
    return pooled @ visual.proj if visual.proj is not None else pooled


# -- the text tower --------------------------------------------------------------------------------

def eot_positions(tower: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """The pooled position of each tokenized text (open_clip's ``text_global_pool``)."""
    pool = getattr(tower, "text_pool_type", None) or getattr(tower, "pool_type", "argmax")
    if pool == "eos":
        eos = getattr(tower, "text_eos_id", None) or getattr(tower, "eos_id")
        return (tokens == eos).int().argmax(dim=-1)
    return tokens.argmax(dim=-1)


def embed_tokens(tower: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Token embeddings plus positions (k, L, W), in the transformer's dtype (as open_clip)."""
    cast = tower.transformer.get_cast_dtype()
    x = tower.token_embedding(tokens).to(cast)
    return x + tower.positional_embedding[:tokens.shape[1]].to(cast)


def encode_text_embeddings(tower: nn.Module, x: torch.Tensor, eot: torch.Tensor,
                           hooks: TowerHooks = NO_HOOKS) -> torch.Tensor:
    """Raw text embeddings (k, D) from the transformer's input ``x`` (k, L, W): tokens and
    positions, with any layer-0 prompt tokens already at positions 1 .. n. ``hooks.prompts``
    replaces positions 1 .. n before deeper layers; ``eot`` (k,): the pooled positions. ``L``
    may be shorter than the context length (anything after the last EOT is invisible to it
    under the causal mask)."""
    if 0 in hooks.prompts:
        raise ValueError("text prompts of layer 0 belong in the token embeddings")
    L = x.shape[1]
    mask = tower.attn_mask[:L, :L] if getattr(tower, "attn_mask", None) is not None else None
    n = hooks.n_prompts()

    def replace(t, p):
        return torch.cat([t[:, :1], p.to(t.dtype).expand(t.shape[0], -1, -1), t[:, 1 + n:]], dim=1)

    x = run_blocks(tower.transformer.resblocks, x, mask, hooks, "transformer.", replace)
    x = layer_norm(tower.ln_final, x, hooks.norms.get("ln_final"))
    x = x[torch.arange(x.shape[0], device=x.device), eot]
    proj = tower.text_projection
    if proj is None:
        return x
    return proj(x) if isinstance(proj, nn.Linear) else x @ proj


def encode_text(tower: nn.Module, tokens: torch.Tensor, hooks: TowerHooks = NO_HOOKS,
                cut: bool = False) -> torch.Tensor:
    """Raw text embeddings (k, D) of tokenized texts: ``model.encode_text(tokens)`` with
    ``hooks``; ``cut`` runs only up to the longest text's EOT (the same maths under the causal
    mask, other float rounding)."""
    eot = eot_positions(tower, tokens)
    if cut and getattr(tower, "attn_mask", None) is not None:
        tokens = tokens[:, :int(eot.max()) + 1]
    return encode_text_embeddings(tower, embed_tokens(tower, tokens), eot, hooks)
