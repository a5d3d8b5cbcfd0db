"""The text transformer over many prompts that begin alike, computing the common beginning once.

With a unified context and the class name at the end (CoOp's default), every prompt reads
``[SOS] [ctx_1 .. ctx_M]`` before its class name. Under the causal mask a position sees only
itself and earlier positions, so the hidden states of those first ``P = M + 1`` positions are the
same for every class, at every layer. The encoder computes them once (a batch of one) and runs
only the positions after them per class: their queries attend to the shared prefix's keys and
values and to their own earlier positions. Same attention, same result up to float rounding; the
linear layers (most of the work) see ``P + C * S`` tokens instead of ``C * (P + S)``, where S is
the rest of the sequence (the class name, the period and EOT; 7 tokens for ImageNet with M = 16
and the sequence cut after the longest EOT, against 24 in all).

Only open_clip's standard text block qualifies (pre-norm ``ResidualAttentionBlock`` with one
``nn.MultiheadAttention``, batch first, no dropout); :func:`supported` says whether a tower's
blocks all are.
"""

from __future__ import annotations

import functools

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


def prefix_length(ids: torch.Tensor, ctx_cols: torch.Tensor, eot: torch.Tensor) -> int:
    """The number of leading positions identical in every prompt of a unified context: the same
    token id (context slots hold 0) and, for a context slot, the same slot. At most the earliest
    EOT position, so every prompt keeps its EOT in its own part."""
    C, L = ids.shape
    slot = torch.full((C, L), -1, dtype=torch.long)
    for c in range(C):
        slot[c, ctx_cols[c].cpu()] = torch.arange(ctx_cols.shape[1])
    same = (ids.cpu() == ids[:1].cpu()).all(0) & (slot == slot[:1]).all(0)
    differs = (~same).nonzero()
    first_difference = int(differs[0]) if len(differs) else L
    return min(first_difference, int(eot.min()))


def standard_block(block: nn.Module) -> bool:
    """open_clip's own pre-norm text block (``ResidualAttentionBlock``, self-attention only)."""
    from open_clip.transformer import ResidualAttentionBlock

    return type(block) is ResidualAttentionBlock and not hasattr(block, "ln_1_kv")


def supported(transformer: nn.Module) -> bool:
    """Every block standard, with one batch-first ``nn.MultiheadAttention`` whose packed
    projection this module computes itself (with bias, no dropout)."""

    def qualifies(block) -> bool:
        attn = getattr(block, "attn", None)
        return (standard_block(block) and isinstance(attn, nn.MultiheadAttention)
                and attn.batch_first and attn._qkv_same_embed_dim
                and attn.in_proj_bias is not None and attn.dropout == 0.0)

    return getattr(transformer, "batch_first", False) and all(
        qualifies(b) for b in transformer.resblocks)


def _heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    b, t, w = x.shape
    return x.view(b, t, n_heads, w // n_heads).transpose(1, 2)  # (b, heads, t, head width)


def _merge(x: torch.Tensor) -> torch.Tensor:
    b, h, t, d = x.shape
    return x.transpose(1, 2).reshape(b, t, h * d)


def _block(block: nn.Module, suffix_mask: torch.Tensor, group: torch.Tensor | None,
           prefix: torch.Tensor, suffix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One residual block: ``prefix`` (G, P, W) causal on itself; ``suffix`` (k, S, W) attending
    to its prefix row (``group`` (k,); None: the single row) and causally to itself
    (``suffix_mask`` (S, P + S), True = may attend)."""
    attn = block.attn
    n_heads, k = attn.num_heads, suffix.shape[0]
    q_p, k_p, v_p = (_heads(t, n_heads) for t in
                     F.linear(block.ln_1(prefix), attn.in_proj_weight, attn.in_proj_bias).chunk(3, -1))
    q_s, k_s, v_s = (_heads(t, n_heads) for t in
                     F.linear(block.ln_1(suffix), attn.in_proj_weight, attn.in_proj_bias).chunk(3, -1))
    out_p = F.scaled_dot_product_attention(q_p, k_p, v_p, is_causal=True)
    own = (lambda t: t.expand(k, -1, -1, -1)) if group is None else (lambda t: t[group])
    keys = torch.cat([own(k_p), k_s], dim=2)
    values = torch.cat([own(v_p), v_s], dim=2)
    out_s = F.scaled_dot_product_attention(q_s, keys, values, attn_mask=suffix_mask)
    outputs = []
    for x, out in ((prefix, out_p), (suffix, out_s)):
        x = x + block.ls_1(attn.out_proj(_merge(out)))
        outputs.append(x + block.ls_2(block.mlp(block.ln_2(x))))
    return outputs[0], outputs[1]


def run_blocks(blocks, prefix: torch.Tensor, suffix: torch.Tensor,
               group: torch.Tensor | None = None, grad_checkpointing: bool = False
               ) -> torch.Tensor:
    """The transformer over shared prefixes ``prefix`` (G, P, W) and per-prompt suffixes
    ``suffix`` (k, S, W) (embeddings with positions added), prompt i continuing prefix
    ``group[i]`` (None: G = 1, every prompt continues the one prefix); returns the suffixes'
    last hidden states (k, S, W)."""
    P, S = prefix.shape[1], suffix.shape[1]
    rows = torch.arange(S, device=suffix.device)[:, None]
    cols = torch.arange(P + S, device=suffix.device)[None, :]
    mask = (cols < P) | (cols - P <= rows)
    for block in blocks:
        run = functools.partial(_block, block, mask, group)
        if grad_checkpointing and torch.is_grad_enabled():
            prefix, suffix = checkpoint(run, prefix, suffix, use_reentrant=False)
        else:
            prefix, suffix = run(prefix, suffix)
    return suffix
