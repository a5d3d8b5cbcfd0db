"""Joint fits (methods.coop.train_together): CoOp / KgCoOp models of the same classes trained
in step, one text-encoder pass per step for all, give each model what its own fit gives."""

from __future__ import annotations

import pytest
import torch

from methods import METHODS
from methods.coop import PromptEncoder, PromptCore, join_key, train_together
from tests.test_coop import FAST, blobs, make_task

# Different shots and epochs: different steps per epoch and different lengths, so members
# drop out of the joint pass at different steps.
MEMBERS = [(1, 3), (2, 2), (4, 3)]  # (shots, epochs)


def _tasks(method, backbone, extra=None, members=MEMBERS):
    return [make_task(method, backbone, shots=k, overrides={**FAST, "batch_size": 4,
                                                             "epochs": e, **(extra or {})})
            for k, e in members]


@pytest.mark.parametrize("method", ["coop", "kgcoop"])
@pytest.mark.parametrize("shared_prefix", [True, False])
def test_joint_fit_gives_each_model_its_own_fit(tiny_backbone, method, shared_prefix):
    test = blobs(4, 10, 64, seed=95)
    extra = {"shared_prefix": shared_prefix}
    fit, together = METHODS.get(method), METHODS.entry(method).extra["fit_together"]
    alone = [fit(task) for task in _tasks(method, tiny_backbone, extra)]
    joint = together(_tasks(method, tiny_backbone, extra))
    assert len(joint) == len(MEMBERS)
    for a, j in zip(alone, joint):
        torch.testing.assert_close(j.logits(test.features), a.logits(test.features),
                                   rtol=1e-5, atol=1e-5)
        assert j.info.keys() == a.info.keys()
        assert j.info["train_loss_last_epoch"] == pytest.approx(a.info["train_loss_last_epoch"],
                                                                rel=1e-5)
        assert (j.info["shared_prefix_len"] > 0) == shared_prefix
    # the models differ from one another (the comparison above can fail)
    assert not torch.allclose(joint[0].logits(test.features), joint[2].logits(test.features),
                              atol=1e-3)


def test_joint_fit_runs_one_encoder_pass_per_step(tiny_backbone, monkeypatch):
    """Steps: shots k x 4 classes, batch 4 -> k batches an epoch; the longest member (4 shots,
    3 epochs) sets the number of passes, each over the prompts of the members still training."""
    passes = []
    real = PromptEncoder.encode_groups

    def counting(self, ctx, classes, group):
        passes.append(len(ctx))
        return real(self, ctx, classes, group)

    monkeypatch.setattr(PromptEncoder, "encode_groups", counting)
    monkeypatch.setattr(PromptEncoder, "forward", lambda *a: pytest.fail("a pass of its own"))
    cores = [PromptCore(t) for t in _tasks("coop", tiny_backbone)]
    histories = train_together(cores)
    steps = [k * e for k, e in MEMBERS]  # 3, 4, 12
    assert len(passes) == max(steps)
    assert passes == [sum(s > i for s in steps) for i in range(max(steps))]
    assert [len(h) for h in histories] == [e for _, e in MEMBERS]


def test_configs_that_cannot_train_jointly(tiny_backbone):
    cfg = _tasks("coop", tiny_backbone)[0].config
    assert join_key(cfg) is not None
    assert join_key({**cfg, "n_ctx": 8}) != join_key(cfg)
    assert join_key({**cfg, "lr": 0.5, "epochs": 7}) == join_key(cfg)  # per cell, fine
    assert join_key({**cfg, "csc": True}) is None
    assert join_key({**cfg, "class_chunk": 2}) is None
    cores = [PromptCore(t) for t in _tasks("coop", tiny_backbone, {"csc": True})[:2]]
    with pytest.raises(ValueError, match="unified context"):
        train_together(cores)
    other = make_task("coop", tiny_backbone, n_classes=3, overrides=FAST)
    with pytest.raises(ValueError, match="same classes, prompt layout"):
        train_together([PromptCore(_tasks("coop", tiny_backbone)[0]), PromptCore(other)])


@pytest.mark.parametrize("precision", ["amp_bf16", "fp16"])
def test_low_precision_joint_fit_agrees_with_one_fp16_tower(tiny_backbone, monkeypatch,
                                                            precision):
    import methods.coop as coop

    test = blobs(4, 10, 64, seed=94)
    extra = {"precision": precision}
    alone = [METHODS.get("coop")(t) for t in _tasks("coop", tiny_backbone, extra)]
    copies = []
    real = coop._half_copy
    monkeypatch.setattr(coop, "_half_copy", lambda parts: copies.append(1) or real(parts))
    joint = METHODS.entry("coop").extra["fit_together"](_tasks("coop", tiny_backbone, extra))
    assert len(copies) == (1 if precision == "fp16" else 0)  # the cells share the frozen copy
    for a, j in zip(alone, joint):
        agree = (a.logits(test.features).argmax(1) == j.logits(test.features).argmax(1))
        assert agree.float().mean() >= 0.9
