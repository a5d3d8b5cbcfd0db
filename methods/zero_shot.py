"""Zero-shot CLIP (docs/protocol.md §4): logits = logit_scale * cosine(image, class text embedding).

``templates`` selects the prompts: ``dataset`` (the dataset's CoOp template), ``simple7`` (the
7-template ImageNet subset, Tip-Adapter / CLIP-Adapter ablation), ``imagenet80`` (CLIP's 80
ImageNet templates), or an explicit list of format strings with ``{}``. An ensemble normalizes
each template's embedding, averages and re-normalizes.

``add_dataset_template`` (default true): the named ensembles (``simple7``, ``imagenet80``) also
get the dataset's own template on every dataset but ImageNet, as CoOp's zero-shot ensemble does
(``trainers/zsclip.py``, ``ZeroshotCLIP2``: ``if cfg.DATASET.NAME != "ImageNet": templates +=
[CUSTOM_TEMPLATES[...]]``). An explicit list is used as given.
"""

from __future__ import annotations

from bench.base.schema import ConfigError
from methods import METHODS
from methods.base import Fitted, Task, normalize


ENSEMBLES = ("simple7", "imagenet80")
NO_EXTRA_TEMPLATE = ("imagenet",)  # CoOp adds its own template on every dataset but ImageNet


def resolve_templates(choice, dataset_templates: list[str], dataset: str | None = None,
                      add_dataset_template: bool = False) -> list[str]:
    """The prompt templates for ``choice``; with ``add_dataset_template``, a named ensemble
    gets ``dataset_templates`` appended unless ``dataset`` is ImageNet (CoOp's rule)."""
    import open_clip

    if isinstance(choice, list):
        templates = [str(t) for t in choice]
    elif choice == "dataset":
        templates = list(dataset_templates)
    elif choice == "simple7":
        templates = [fn("{}") for fn in open_clip.SIMPLE_IMAGENET_TEMPLATES]
    elif choice == "imagenet80":
        templates = [fn("{}") for fn in open_clip.OPENAI_IMAGENET_TEMPLATES]
    else:
        raise ConfigError(f"templates must be 'dataset', 'simple7', 'imagenet80' or a list, "
                         f"not {choice!r}")
    if add_dataset_template and choice in ENSEMBLES and dataset not in NO_EXTRA_TEMPLATE:
        templates += list(dataset_templates)
    bad = [t for t in templates if "{}" not in t]
    if bad:
        raise ConfigError(f"templates need a '{{}}' for the class name: {bad[:3]}")
    return templates


@METHODS.register("zero_shot", display_name="Zero-shot CLIP", order=0, family="zero-shot",
                  new_classes=True,
                  description="no training: cosine to class prompt embeddings (docs/protocol.md §4)")
def zero_shot(task: Task) -> Fitted:
    templates = resolve_templates(task.config.get("templates", "dataset"), task.templates,
                                  task.dataset, bool(task.config.get("add_dataset_template")))
    scale = task.backbone.logit_scale
    choice = task.config.get("templates", "dataset")
    add = bool(task.config.get("add_dataset_template"))

    def for_classes(classnames: list[str], dataset_templates: list[str], dataset: str):
        chosen = resolve_templates(choice, dataset_templates, dataset, add)
        weights = task.backbone.class_weights(classnames, chosen)
        return lambda features: scale * normalize(features.float()) @ weights.T

    return Fitted(for_classes(task.classnames, task.templates, task.dataset),
                  {"n_templates": len(templates)}, for_classes)
