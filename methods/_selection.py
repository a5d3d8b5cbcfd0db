"""Choosing a hyperparameter on the few-shot val set: the pieces every searching method shares.

docs/protocol.md §11: a method selects only on ``task.val`` (never on test). What differs between
the released codes is the tie rule, so it is an explicit argument here:

* ``ties="first"``: a candidate replaces the best only when strictly better (a ``>`` loop: lpclip's
  ``argmax``, Tip-Adapter's ``search_hp``, CLIP-Adapter's ratio search);
* ``ties="last"``: a candidate replaces the best when at least as good (a ``>=`` loop: LP++'s epoch);
* ``start=(value, correct)``: the best before the first candidate, kept unless a candidate beats it
  (GDA's release starts from ``best_alpha = 0.1`` at accuracy 0).

Candidates are scored by the NUMBER of correct val predictions, so ties are exact (no float
percentages compared). ``Selection.trace()`` is the uniform record a method puts in
``Fitted.info["val_selection"]`` next to its own keys.
"""

from __future__ import annotations

from typing import Any

import torch

from bench.base.schema import ConfigError

TIES = ("first", "last")


def require_val(task, method: str, what: str, fix: str) -> int:
    """The size of ``task.val``; a ConfigError naming the method and the fix when it is empty."""
    n = len(task.val)
    if n == 0:
        raise ConfigError(f"{method}: {what} needs a few-shot val set, and this task has no val "
                          f"images; {fix}")
    return n


def correct(logits: torch.Tensor, labels: torch.Tensor) -> int:
    """How many rows of ``logits`` (N, C) have their argmax at ``labels`` (N,)."""
    return int((logits.argmax(dim=-1) == labels.to(logits.device)).sum())


def percent(n_correct: int, n: int) -> float:
    """A val accuracy as records show it: percent, 4 decimals."""
    return round(100.0 * n_correct / n, 4)


class Selection:
    """The best candidate so far under one tie rule; candidates are offered in the release's order.

    ``offer`` works for a search over a list and for one that runs alongside training (an epoch
    is offered when it ends). ``index`` is the position of the best among the offered candidates,
    None while the start value holds.
    """

    def __init__(self, of: str, n_val: int, *, ties: str = "first",
                 start: tuple[Any, int] | None = None):
        if ties not in TIES:
            raise ValueError(f"ties must be one of {TIES}, not {ties!r}")
        if n_val < 1:
            raise ValueError("a val selection needs at least one val image (see require_val)")
        self.of, self.n_val, self.ties, self.start = of, n_val, ties, start
        self.value, self.correct = start if start is not None else (None, None)
        self.index: int | None = None
        self.scores: list[int] = []

    def offer(self, value: Any, n_correct: int) -> bool:
        """Score one candidate; True when it becomes the best."""
        n_correct = int(n_correct)
        self.scores.append(n_correct)
        better = (self.correct is None or n_correct > self.correct
                  or (self.ties == "last" and n_correct == self.correct))
        if better:
            self.value, self.correct, self.index = value, n_correct, len(self.scores) - 1
        return better

    @property
    def val_acc(self) -> float | None:
        return None if self.correct is None else percent(self.correct, self.n_val)

    def trace(self, keep_scores: bool = True) -> dict:
        """JSON for ``info["val_selection"]``; ``keep_scores=False`` for large grids."""
        return trace(self.of, self.ties, self.n_val, self.scores, self.index, self.correct,
                     start=self.start, keep_scores=keep_scores)


def trace(of: str, ties: str, n_val: int, scores: list[int], chosen: int | None,
          n_correct: int, *, start: tuple[Any, int] | None = None, keep_scores: bool = True,
          **extra) -> dict:
    """The uniform record of a val selection: what was chosen (``of``), by which tie rule, among
    how many scored candidates, its index in that order (None: the start value held), its correct
    count and val accuracy, and the candidates' correct counts in the order scored (``scores``).
    A search that is not one pass over candidates (linear_probe's bisection) builds it directly."""
    out = {"of": of, "ties": ties, "n_val": n_val, "candidates": len(scores), "chosen": chosen,
           "correct": n_correct, "val_acc": percent(n_correct, n_val), **extra}
    if start is not None:
        out["start"] = start[0]
    if keep_scores:
        out["scores"] = [int(s) for s in scores]
    return out


def select(of: str, n_val: int, values: list, scores: list[int], *, ties: str = "first",
           start: tuple[Any, int] | None = None) -> Selection:
    """The best of ``values`` by their correct counts ``scores``, in list order."""
    if len(values) != len(scores):
        raise ValueError(f"{len(values)} candidates but {len(scores)} scores")
    if not values and start is None:
        raise ValueError("nothing to select from: no candidates and no start value")
    sel = Selection(of, n_val, ties=ties, start=start)
    for value, score in zip(values, scores):
        sel.offer(value, score)
    return sel
