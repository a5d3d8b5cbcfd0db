"""The demo pretraining's pieces: its learning-rate schedule and its caption tokenizer cache."""

import math

import pytest
import torch

from bench.demo.pretrain import _CachedTokenizer, _cosine_lr


def test_learning_rate_warms_up_linearly_then_decays_to_zero():
    lr, warmup, steps = 1e-3, 10, 110
    assert _cosine_lr(0, lr, warmup, steps) == pytest.approx(lr / 10)
    assert _cosine_lr(4, lr, warmup, steps) == pytest.approx(lr / 2)
    assert _cosine_lr(warmup - 1, lr, warmup, steps) == pytest.approx(lr)
    assert _cosine_lr(warmup, lr, warmup, steps) == pytest.approx(lr)  # the cosine's top
    assert _cosine_lr(60, lr, warmup, steps) == pytest.approx(lr / 2)  # half way down
    assert _cosine_lr(steps, lr, warmup, steps) == pytest.approx(0.0, abs=1e-15)
    after = [_cosine_lr(s, lr, warmup, steps) for s in range(warmup, steps)]
    assert all(a > b for a, b in zip(after, after[1:]))


def test_warmup_as_long_as_the_run_does_not_divide_by_zero():
    assert _cosine_lr(5, 1.0, 5, 5) == pytest.approx(1.0)
    assert math.isfinite(_cosine_lr(7, 1.0, 5, 5))


def test_cached_tokenizer_tokenizes_each_caption_once_in_batch_order():
    calls = []

    def tokenizer(texts):
        calls.append(list(texts))
        return torch.tensor([[len(t), ord(t[0])] for t in texts])

    tokenize = _CachedTokenizer(tokenizer)
    first = tokenize(["a 7", "a red 7", "a 7"])
    assert calls == [["a 7", "a red 7"]]
    assert first.tolist() == [[3, ord("a")], [7, ord("a")], [3, ord("a")]]
    second = tokenize(["a red 7", "big 3"])
    assert calls[-1] == ["big 3"]  # only the caption not seen before
    assert second.tolist() == [[7, ord("a")], [5, ord("b")]]
    tokenize(["a 7"])
    assert len(calls) == 2  # nothing new: no tokenizer call
