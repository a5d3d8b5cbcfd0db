"""KgCoOp: knowledge-guided context optimization (Yao et al., CVPR 2023; htyao89/KgCoOp).

CoOp (methods/coop.py, the same :class:`PromptCore`) whose loss adds a pull of the learned class
text embeddings toward the hand-crafted (zero-shot) ones::

    loss = CE(logits, y) + kg_weight * (1 - mean_c cos(t_c, t_c^zs))

as the release computes it (``trainers/kgcoop.py``: ``score = 1.0 - torch.mean(cos(text_features,
text_features_old))``, ``loss = cross_entropy + self.w * score``). For unit vectors
``1 - cos = |a - b|^2 / 2``, so this is ``kg_weight / 2`` times the paper's mean squared L2
distance between the normalized embeddings. ``t^zs`` is the zero-shot classifier of
``kg_templates`` (the release: one template per dataset, its ``CUSTOM_TEMPLATES``). The term only
shapes training: scoring other classes (``for_classes``) is CoOp's.
"""

from __future__ import annotations

import torch

from methods import METHODS
from methods.base import PER_EPOCH_VIEWS, Fitted, Task, normalize
from methods.coop import PromptCore, join_key, seed_use, train_together, unified_context
from methods.zero_shot import resolve_templates


def kg_term(text: torch.Tensor, zs: torch.Tensor) -> torch.Tensor:
    """1 - mean over classes of cos(text_c, zs_c); ``zs`` rows already unit norm."""
    return 1.0 - (normalize(text.float()) * zs).sum(dim=-1).mean()


def _prepare(task: Task, parts=None) -> tuple[PromptCore, object, dict]:
    """The model, its extra loss (the KgCoOp term) and what the record says about it;
    ``parts``: another model's frozen text tower to share (PromptCore)."""
    cfg = task.config
    core = PromptCore(task, "kgcoop", parts=parts)
    templates = resolve_templates(cfg["kg_templates"], task.templates, task.dataset)
    with torch.no_grad():
        zs = normalize(task.backbone.class_weights(task.classnames, templates).float())
    zs = zs.to(task.device)
    weight = float(cfg["kg_weight"])
    return core, (lambda text: weight * kg_term(text, zs)), {"kg_templates": len(templates)}


def fit_together(tasks: list[Task]) -> list[Fitted]:
    """:func:`fit` for cells that differ only in shots, in one joint training
    (methods.coop.train_together; the runner's ``--joint-fits``)."""
    first = _prepare(tasks[0])
    rest = [_prepare(task, first[0].parts) for task in tasks[1:]]
    cores, extras, infos = zip(*[first, *rest])
    histories = train_together(list(cores), list(extras))
    return [core.fitted(h, **info) for core, h, info in zip(cores, histories, infos)]


@METHODS.register("kgcoop", display_name="KgCoOp", order=52, family="prompt learning",
                  views=PER_EPOCH_VIEWS,
                  new_classes=unified_context, stochastic=seed_use,
                  fit_together=fit_together, join_key=join_key,
                  description="CoOp + distance of the learned to the hand-crafted class text "
                              "embeddings (Yao et al. 2023)")
def fit(task: Task) -> Fitted:
    core, extra_loss, info = _prepare(task)
    history = core.train(core.step_fn(extra_loss))
    return core.fitted(history, **info)
