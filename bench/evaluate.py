"""Metrics on test logits: top-1 accuracy (micro, correct/total) and mean per-class accuracy."""

from __future__ import annotations

import torch


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
