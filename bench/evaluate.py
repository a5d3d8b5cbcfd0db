"""Scoring a fitted method: metrics on test logits (top-1 accuracy, micro, correct/total; mean
per-class accuracy) and every evaluation a cell's protocol asks for (bench.protocols).

Nothing a method returns is trusted: the logits of every evaluation must be a tensor of shape
(test images, classes evaluated) with finite values, and ``Fitted.info`` a JSON object; anything
else raises :class:`InvalidResult`, and the runner records the cell as failed with that message
instead of a number computed from garbage (NaN logits would score like argmax 0: chance)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import torch

from bench.protocols import BaseNovel, protocol_of


def evaluate(logits: torch.Tensor, labels: torch.Tensor) -> dict:
    labels = labels.to(logits.device)
    correct = (logits.argmax(dim=1) == labels).double()
    classes = labels.unique()
    per_class = torch.stack([correct[labels == c].mean() for c in classes])
    return {
        "top1": round(100.0 * correct.mean().item(), 6),
        "mean_per_class": round(100.0 * per_class.mean().item(), 6),
        "n_test": int(labels.numel()),
    }


class InvalidResult(Exception):
    """A fitted method's output that must not become a result; its cell fails with this."""


def check_info(info) -> dict:
    """``Fitted.info`` (recorded as ``selected``): a JSON object of finite values, or
    :class:`InvalidResult` saying what is wrong."""
    if not isinstance(info, dict):
        raise InvalidResult(f"Fitted.info is a {type(info).__name__}, not a dict; it is recorded "
                            f"as the result's 'selected' (what the method chose on val)")
    try:
        json.dumps(info, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidResult(f"Fitted.info is not JSON-serializable ({exc}); it is recorded as "
                            f"the result's 'selected': give it numbers, strings, lists and dicts "
                            f"(float(x) for a tensor or numpy value)") from None
    return info


def check_logits(logits, n_images: int, n_classes: int, name: str) -> None:
    """``logits`` of evaluation ``name`` are (n_images, n_classes) and finite, else
    :class:`InvalidResult`."""
    shape = tuple(logits.shape)
    if shape != (n_images, n_classes):
        raise InvalidResult(f"{name}: the method's logits have shape {shape}, not ({n_images}, "
                            f"{n_classes}) = (test images, classes evaluated)")
    bad = ~torch.isfinite(logits)
    if bad.any():
        rows = int(bad.any(dim=1).sum())
        raise InvalidResult(f"{name}: {int(bad.sum())} of {logits.numel()} logits are not finite "
                            f"(NaN or infinite), in {rows} of {n_images} test images: the fit "
                            f"diverged or the method has a bug; no accuracy is recorded")


@dataclass
class Target:
    """A target dataset of the domain / cross-dataset protocols, with its test features and
    labels. ``source_classes``: the source classifier's columns for a target whose classes are
    some of the source's (ImageNet-A/-R: 200 of ImageNet's 1000); None: the source's classes."""

    dataset: object  # datasets_registry.base.Dataset
    splits: object  # datasets_registry.base.DatasetSplits
    features: torch.Tensor
    labels: torch.Tensor

    @property
    def source_classes(self):
        return getattr(self.splits, "source_classes", None)


def evaluate_cell(cell, ctx, fitted, test_feats, test_labels, device, keep=None):
    """Every evaluation of the cell's protocol: ({name: metrics}, the primary name, a sha256 of
    all test logits in order). Few-shot: the test set. Base-to-novel: ``base`` (base test images
    over the base classes) and ``novel`` (novel test images over the novel classes, through
    ``Fitted.for_classes``). Domain / cross-dataset: the source's test set, then each target
    (``ctx.target(name)``); a domain target with some of the source's classes (ImageNet-A/-R:
    200 of 1000) is scored over those classes only (:func:`source_subset_model`). ``keep``, a
    dict, receives ``{name: (logits, labels)}`` as scored (the per-image predictions file)."""
    protocol = protocol_of(cell)
    digest = hashlib.sha256()
    out: dict[str, dict] = {}

    def score(name, model, feats, labels, n_classes, columns=None):
        logits = chunked_logits(model, feats, device)
        check_logits(logits, len(feats), n_classes, name)
        if columns is not None:
            logits = logits[:, columns]
        out[name] = evaluate(logits, labels)
        if keep is not None:
            keep[name] = (logits, labels)
        digest.update(logits.numpy().tobytes())

    if protocol == "base2novel":
        split = BaseNovel(len(ctx.splits.classnames))
        names = split.classnames(ctx.splits.prompt_classnames)
        for part, (rows, labels) in split.test_parts(ctx.splits.test).items():
            model = fitted if part == "base" else fitted.on_classes(
                names["novel"], ctx.dataset.templates, cell["dataset"])
            score(part, model, test_feats[rows], torch.tensor(labels), len(names[part]))
        return out, "base", digest.hexdigest()
    n_source = len(ctx.splits.classnames)
    score(cell["dataset"], fitted, test_feats, test_labels, n_source)
    for name in cell.get("targets") or []:
        target = ctx.target(name)
        if protocol == "domain":
            model, columns = source_subset_model(fitted, target.source_classes, ctx, cell)
            subset = model is not fitted  # scores the target's classes only
            score(name, model, target.features, target.labels,
                  len(target.source_classes) if subset else n_source, columns)
        else:
            model = fitted.on_classes(target.splits.prompt_classnames, target.dataset.templates,
                                      name)
            score(name, model, target.features, target.labels, len(target.splits.classnames))
    return out, cell["dataset"], digest.hexdigest()


def source_subset_model(fitted, source_classes, ctx, cell):
    """(model, columns) scoring a domain target over ``source_classes``, the source's classes it
    has. A method that scores any class names (``Fitted.for_classes``) gets the source classes'
    names, templates and dataset key, so it computes only those classes (CoCoOp runs its text
    encoder per image and class: 200 instead of 1000 for ImageNet-A/-R, as the release builds
    its classifier over the variant's names); logits equal the 1000-way ones' columns up to
    float rounding (tests/test_imagenet_variants.py). Any other method (per-class weights)
    keeps the full classifier and the columns; so does a target with all the source's classes."""
    if source_classes is None or len(source_classes) >= len(ctx.splits.classnames) \
            or fitted.for_classes is None:
        return fitted, source_classes
    names = [ctx.splits.prompt_classnames[i] for i in source_classes]
    return fitted.on_classes(names, ctx.dataset.templates, cell["dataset"]), None


def chunked_logits(fitted, feats: torch.Tensor, device, chunk: int = 8192) -> torch.Tensor:
    """``fitted``'s logits of ``feats`` (float32, on the CPU), computed ``chunk`` rows at a time
    on ``device``; :class:`InvalidResult` when the method returns no tensor."""
    images = getattr(fitted, "inputs", "features") == "images"
    if images:  # an encoder-tuning method's model: ``feats`` are the test images
        # (bench.encoder_cells.TestImages), decoded and scored a batch at a time
        batches = feats.batches(int(getattr(fitted, "eval_batch_size", 256)), device)
    else:
        batches = (feats[i:i + chunk].to(device) for i in range(0, len(feats), chunk))
    out = []
    for batch in batches:
        logits = fitted.logits(batch)
        if not isinstance(logits, torch.Tensor):
            raise InvalidResult(f"the method's logits are a {type(logits).__name__}, not a "
                                f"torch.Tensor of shape (images, classes)")
        out.append(logits.float().cpu())
    if images and not out:
        return torch.empty(0, 0)
    return torch.cat(out)
