"""The training loop shared by the methods that learn something by SGD (CoOp, CLIP-Adapter).

One way to do each thing, matching CoOp's Dassl setup (docs/protocol.md §6):

* optimizer: SGD (momentum, weight decay, no dampening, no Nesterov);
* schedule, per epoch: ``warmup_epochs`` epochs at the constant ``warmup_lr``, then cosine
  annealing to 0 over ``epochs`` (Dassl's ``ConstantWarmupScheduler`` around
  ``CosineAnnealingLR(T_max=max_epoch)``: the successor starts after the warm-up, so epoch
  ``e >= warmup`` runs at ``0.5 * lr * (1 + cos(pi * (e - warmup) / epochs))``; the last epoch
  does not reach 0);
* batches: the train rows shuffled every epoch by a generator seeded with the task seed; the
  last incomplete batch is dropped only when the train set has at least ``batch_size`` rows
  (Dassl: ``drop_last = len(data) >= batch_size``), so 1-shot tasks with fewer than 32 images
  still train;
* features: ``task.train_views.for_epoch(e)`` for every epoch ``e`` (0-based): the frozen
  image encoder's output for that epoch's augmented views.

A method gives a ``step(x, y, scale) -> loss`` function that computes its loss on a batch and
runs the backward pass itself on ``scale(loss)`` (``scale`` is the identity, or a GradScaler's
``scale`` under fp16 autocast); the loop zeroes the gradients, calls it and steps.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable, Iterable

import torch

from methods.base import Task

# The config keys every SGD-trained method reads (see configs/methods/*.yaml for the values).
OPTIM_KEYS = ("lr", "momentum", "weight_decay", "batch_size", "epochs", "warmup_epochs",
              "warmup_lr")


@dataclass
class OptimConfig:
    lr: float
    momentum: float
    weight_decay: float
    batch_size: int
    epochs: int
    warmup_epochs: int
    warmup_lr: float

    @classmethod
    def from_config(cls, cfg: dict) -> "OptimConfig":
        missing = [k for k in OPTIM_KEYS if k not in cfg]
        if missing:
            raise ValueError(f"method config lacks the training keys {missing}")
        out = cls(lr=float(cfg["lr"]), momentum=float(cfg["momentum"]),
                  weight_decay=float(cfg["weight_decay"]), batch_size=int(cfg["batch_size"]),
                  epochs=int(cfg["epochs"]), warmup_epochs=int(cfg["warmup_epochs"]),
                  warmup_lr=float(cfg["warmup_lr"]))
        if out.epochs < 1 or out.batch_size < 1 or out.warmup_epochs < 0:
            raise ValueError(f"epochs and batch_size must be >= 1 and warmup_epochs >= 0: {out}")
        return out


def lr_at(epoch: int, opt: OptimConfig) -> float:
    """Learning rate of 0-based ``epoch``: constant warm-up, then cosine over ``opt.epochs``."""
    if epoch < opt.warmup_epochs:
        return opt.warmup_lr
    t = epoch - opt.warmup_epochs
    return 0.5 * opt.lr * (1.0 + math.cos(math.pi * t / opt.epochs))


def batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """One epoch's shuffled index batches (Dassl's drop_last rule, see the module doc)."""
    perm = torch.randperm(n, generator=generator)
    out = list(perm.split(batch_size))
    if n >= batch_size and len(out[-1]) < batch_size:
        out.pop()
    return out


def seeded_generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


StepFn = Callable[[torch.Tensor, torch.Tensor, Callable[[torch.Tensor], torch.Tensor]], torch.Tensor]


def train(task: Task, params: Iterable[torch.nn.Parameter], step: StepFn, opt: OptimConfig,
          scaler: "torch.amp.GradScaler | None" = None) -> list[float]:
    """Run the loop; returns the mean training loss of every epoch."""
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("nothing to train: no parameter requires grad")
    optimizer = torch.optim.SGD(params, lr=opt.lr, momentum=opt.momentum,
                                weight_decay=opt.weight_decay)
    device = task.device
    labels = task.train.labels.to(device)
    n = len(labels)
    if n == 0:
        raise ValueError("the task has no train images")
    gen = seeded_generator(task.seed)
    scale = scaler.scale if scaler is not None else (lambda t: t)
    history = []
    for epoch in range(opt.epochs):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(epoch, opt)
        feats = task.train_views.for_epoch(epoch).to(device=device, dtype=torch.float32)
        if feats.shape[0] != n:
            raise ValueError(f"train views for epoch {epoch} have {feats.shape[0]} rows, "
                             f"the train split has {n}")
        total, count = 0.0, 0
        for idx in batches(n, opt.batch_size, gen):
            idx = idx.to(device)
            optimizer.zero_grad(set_to_none=True)
            loss = step(feats[idx], labels[idx], scale)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        history.append(total / count)
    return history


@torch.no_grad()
def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in percent (micro: correct / total)."""
    return float((logits.argmax(dim=-1).cpu() == labels.cpu()).float().mean() * 100.0)


@contextlib.contextmanager
def seeded_rng(seed: int, device: torch.device):
    """Seed the global RNG (CPU, and ``device`` if CUDA) with ``seed`` inside the block and
    restore it afterwards: module initializers draw from the global RNG, and a method must be
    deterministic per seed without disturbing its caller's random state."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        yield
