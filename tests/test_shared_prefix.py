"""methods/_shared_prefix.py against open_clip's own blocks over the whole sequences."""

from __future__ import annotations

import pytest
import torch

from methods import _shared_prefix
from methods.coop import _token_rows, build_layout, text_tower


def full_run(tower, x: torch.Tensor) -> torch.Tensor:
    """open_clip's blocks over whole sequences x (k, L, W), with the causal mask."""
    L = x.shape[1]
    for block in tower.transformer.resblocks:
        x = block(x, attn_mask=tower.attn_mask[:L, :L])
    return x


@pytest.mark.parametrize("P", [1, 3, 7])
def test_groups_of_prompts_continue_their_own_prefix(tiny_backbone, P):
    tower = text_tower(tiny_backbone.model)
    assert _shared_prefix.supported(tower.transformer)
    W, S = tower.token_embedding.weight.shape[1], 5
    g = torch.Generator().manual_seed(0)
    prefixes = torch.randn(2, P, W, generator=g)
    suffixes = torch.randn(6, S, W, generator=g)
    group = torch.tensor([0, 1, 1, 0, 1, 0])
    whole = torch.cat([prefixes[group], suffixes], dim=1)
    expected = full_run(tower, whole)[:, P:]
    for ckpt in (False, True):
        got = _shared_prefix.run_blocks(tower.transformer.resblocks, prefixes, suffixes, group,
                                        grad_checkpointing=ckpt)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # one prefix for all (group None) is the same as every row pointing at row 0
    one = _shared_prefix.run_blocks(tower.transformer.resblocks, prefixes[:1], suffixes)
    torch.testing.assert_close(one, full_run(tower, torch.cat(
        [prefixes[:1].expand(6, -1, -1), suffixes], dim=1))[:, P:], rtol=1e-5, atol=1e-5)
    # a different prefix changes the result (the comparison can fail)
    other = _shared_prefix.run_blocks(tower.transformer.resblocks, prefixes.flip(0), suffixes,
                                      group)
    assert not torch.allclose(other, expected, atol=1e-3)


def test_prefix_length_stops_at_the_first_difference_and_the_earliest_eot(tiny_backbone):
    tok = tiny_backbone.tokenizer
    n_name = len(_token_rows(tok, ["red"])[0])
    layout = build_layout(tok, ["red fox", "red panda"], 4, "end", tiny_backbone.context_length)
    assert _shared_prefix.prefix_length(layout.ids, layout.ctx_cols, layout.eot) == 1 + 4 + n_name
    # one name a prefix of the other: the shorter prompt keeps its own "." and EOT
    layout = build_layout(tok, ["red", "red fox"], 4, "end", tiny_backbone.context_length)
    P = _shared_prefix.prefix_length(layout.ids, layout.ctx_cols, layout.eot)
    assert P == 1 + 4 + n_name and P < int(layout.eot.min())
    # class-specific slots in different places (class token first): only [SOS] is shared
    layout = build_layout(tok, ["dog", "sea lion"], 4, "front", tiny_backbone.context_length)
    assert _shared_prefix.prefix_length(layout.ids, layout.ctx_cols, layout.eot) == 1
