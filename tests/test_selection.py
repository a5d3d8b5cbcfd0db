"""methods/_selection.py: tie rules, the start value, the empty-val refusal and the trace, and
every searching method recording the same trace next to its own keys."""

from __future__ import annotations

import json

import pytest
import torch

from bench.base.schema import ConfigError
from methods import METHODS
from methods._selection import Selection, correct, percent, require_val, select
from methods.base import FeatureSplit
from tests.test_tip_adapter import tip_task


def test_correct_counts_argmax_hits():
    logits = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert correct(logits, torch.tensor([1, 0, 0])) == 2
    assert correct(logits, torch.tensor([0, 1, 0])) == 0
    assert percent(2, 3) == 66.6667


def test_first_keeps_the_earliest_and_last_the_latest_of_ties():
    values, scores = ["a", "b", "c", "d"], [1, 3, 3, 2]
    first = select("x", 4, values, scores, ties="first")
    last = select("x", 4, values, scores, ties="last")
    assert (first.value, first.index, first.correct) == ("b", 1, 3)
    assert (last.value, last.index, last.correct) == ("c", 2, 3)
    # a strictly better later candidate wins under either rule
    assert select("x", 4, values, [1, 3, 3, 4], ties="first").value == "d"


def test_start_value_holds_until_beaten():
    # GDA's release: best_alpha = 0.1 at accuracy 0, replaced only by a strictly better one
    none_better = select("alpha", 5, [1.0, 10.0], [0, 0], start=(0.1, 0))
    assert (none_better.value, none_better.index, none_better.val_acc) == (0.1, None, 0.0)
    beaten = select("alpha", 5, [1.0, 10.0], [0, 2], start=(0.1, 0))
    assert (beaten.value, beaten.index) == (10.0, 1)
    # under ties="last" an equal score replaces the start
    assert select("alpha", 5, [1.0], [0], start=(0.1, 0), ties="last").value == 1.0


def test_offer_reports_a_new_best_for_searches_run_alongside_training():
    sel = Selection("epoch", 4, ties="last")
    assert [sel.offer(e, k) for e, k in enumerate([2, 1, 2, 3, 3])] == [True, False, True,
                                                                         True, True]
    assert sel.value == 4


def test_trace_is_uniform_json():
    sel = select("alpha", 6, [0.5, 1.0, 2.0], [2, 5, 5], start=(0.1, 0))
    tr = sel.trace()
    assert tr == {"of": "alpha", "ties": "first", "n_val": 6, "candidates": 3, "chosen": 1,
                  "correct": 5, "val_acc": 83.3333, "start": 0.1, "scores": [2, 5, 5]}
    assert json.loads(json.dumps(tr)) == tr
    assert "scores" not in sel.trace(keep_scores=False)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="ties"):
        Selection("x", 3, ties="best")
    with pytest.raises(ValueError, match="2 candidates but 1 scores"):
        select("x", 3, [1, 2], [1])
    with pytest.raises(ValueError, match="nothing to select"):
        select("x", 3, [], [])
    with pytest.raises(ValueError, match="val image"):
        Selection("x", 0)


class _Task:
    def __init__(self, n):
        self.val = FeatureSplit(torch.zeros(n, 4), torch.zeros(n, dtype=torch.long))


def test_require_val_names_the_method_and_the_fix():
    assert require_val(_Task(3), "m", "the x search", "set x") == 3
    with pytest.raises(ConfigError) as err:
        require_val(_Task(0), "my_method", "the x search", "set x: 1")
    msg = str(err.value)
    assert msg.startswith("my_method: the x search needs a few-shot val set")
    assert msg.endswith("; set x: 1") and "\n" not in msg


# -- the methods that search --------------------------------------------------------------------
SEARCHES = {  # method -> (overrides for a fast fit, the fix the refusal names)
    "clip_adapter_visual": ({"epochs": 1, "batch_size": 8, "alpha": "search",
                             "ratio_grid": [0.2, 0.6]}, "alpha / beta to a number"),
    "tip_adapter": ({"search_step": [4, 3]}, "search: false"),
    "tip_adapter_f": ({"epochs": 1, "n_views": 11, "search_step": [4, 3]}, "search: false"),
    "gda": ({}, "val images"),
    "lp_pp": ({"epochs": 5}, "select_epoch: last"),
    "linear_probe": ({}, "val images"),
}


def _task(method, backbone, val=None):
    overrides, _ = SEARCHES[method]
    return tip_task(method, backbone, overrides=overrides, n_views=11, val=val)


@pytest.mark.parametrize("method", sorted(SEARCHES))
def test_every_search_refuses_an_empty_val_in_one_line(method, tiny_backbone):
    dim = tiny_backbone.model.text_projection.shape[1]
    empty = FeatureSplit(torch.zeros(0, dim), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ConfigError) as err:
        METHODS.get(method)(_task(method, tiny_backbone, val=empty))
    msg = str(err.value)
    assert msg.startswith(method.split("_visual")[0] + ": ") and "needs a few-shot val set" in msg
    assert SEARCHES[method][1] in msg and "\n" not in msg


@pytest.mark.parametrize("method", sorted(SEARCHES))
def test_every_search_records_the_trace_of_its_choice(method, tiny_backbone):
    task = _task(method, tiny_backbone)
    info = METHODS.get(method)(task).info
    tr = info["val_selection"]
    assert tr["n_val"] == len(task.val)
    assert tr["val_acc"] == percent(tr["correct"], tr["n_val"])
    if "scores" in tr:
        assert len(tr["scores"]) == tr["candidates"]
        if tr["chosen"] is not None:
            assert tr["scores"][tr["chosen"]] == tr["correct"]
    # the method's own key for its val accuracy agrees with the trace
    own = info.get("val_acc")
    if method.startswith("clip_adapter"):
        own = info["ratio_search"][tr["chosen"]]["val_acc"]
        assert info["ratio_search"][tr["chosen"]]["alpha"] == info["alpha"]
    assert own == pytest.approx(tr["val_acc"], abs=1e-4)
    if method == "gda":
        assert tr["chosen"] is None or info["alpha_search"][tr["chosen"]][0] == info["alpha"]
    if method == "lp_pp":
        assert info["epoch"] == tr["chosen"] + 1 and tr["ties"] == "last"
    if method.startswith("tip_adapter"):
        assert tr["candidates"] == 4 * 3 and "scores" not in tr
