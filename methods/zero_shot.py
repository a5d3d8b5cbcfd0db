"""Zero-shot CLIP (PROTOCOL §4): logits = logit_scale * cosine(image, class text embedding).

``templates`` selects the prompts: ``dataset`` (the dataset's CoOp template), ``simple7`` (the
7-template ImageNet subset, Tip-Adapter / CLIP-Adapter ablation), ``imagenet80`` (CLIP's 80
ImageNet templates), or an explicit list of format strings with ``{}``. An ensemble normalizes
each template's embedding, averages and re-normalizes.
"""

from __future__ import annotations

from methods import METHODS
from methods.base import Fitted, Task, normalize


def resolve_templates(choice, dataset_templates: list[str]) -> list[str]:
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
        raise ValueError(f"templates must be 'dataset', 'simple7', 'imagenet80' or a list, "
                         f"not {choice!r}")
    bad = [t for t in templates if "{}" not in t]
    if bad:
        raise ValueError(f"templates need a '{{}}' for the class name: {bad[:3]}")
    return templates


@METHODS.register("zero_shot", display_name="Zero-shot CLIP", order=0,
                  description="no training: cosine to class prompt embeddings (PROTOCOL §4)")
def zero_shot(task: Task) -> Fitted:
    templates = resolve_templates(task.config.get("templates", "dataset"), task.templates)
    weights = task.backbone.class_weights(task.classnames, templates)
    scale = task.backbone.logit_scale

    def logits(features):
        return scale * normalize(features.float()) @ weights.T

    return Fitted(logits, {"n_templates": len(templates)})
