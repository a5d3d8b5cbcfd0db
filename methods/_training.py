"""The training loop shared by the methods that learn something by gradient descent (CoOp,
CLIP-Adapter, TaskRes, Tip-Adapter-F).

By default (no ``optimizer`` / ``schedule`` key in the method's config) it is CoOp's Dassl setup
(docs/protocol.md §6):

* optimizer: SGD (momentum, weight decay, no dampening, no Nesterov);
* schedule, per epoch (``schedule: cosine_epoch``): ``warmup_epochs`` epochs at the constant ``warmup_lr``, then cosine
  annealing to 0 over ``epochs`` (Dassl's ``ConstantWarmupScheduler`` around
  ``CosineAnnealingLR(T_max=max_epoch)``: the successor starts after the warm-up, so epoch
  ``e >= warmup`` runs at ``0.5 * lr * (1 + cos(pi * (e - warmup) / epochs))``; the last epoch
  does not reach 0);
* batches: the train rows shuffled every epoch by a generator seeded with the task seed; the
  last incomplete batch is dropped only when the train set has at least ``batch_size`` rows
  (Dassl: ``drop_last = len(data) >= batch_size``), so 1-shot tasks with fewer than 32 images
  still train;
* features: ``task.train_views.for_epoch(e)`` for every epoch ``e`` (0-based): the frozen
  image encoder's output for that epoch's augmented views (a method may pass its own
  ``features_for_epoch``, as Tip-Adapter-F does with its fixed views).

Other methods' released setups, chosen by config keys (:func:`make_optimizer`, :func:`lr_at_iter`):

* ``optimizer: adam`` / ``adamw`` with ``eps`` and ``betas`` (Dassl's ``adam`` is
  ``torch.optim.Adam(lr, weight_decay, betas)``; Tip-Adapter's ``AdamW(lr, eps=1e-4)``);
* ``schedule: cosine_iter``: ``CosineAnnealingLR(T_max = epochs * batches per epoch)`` stepped
  after every iteration, no warm-up (Tip-Adapter-F): iteration ``t`` runs at
  ``0.5 * lr * (1 + cos(pi * t / T_max))``;
* ``drop_last: never``: keep the last incomplete batch (a plain ``DataLoader``, Tip-Adapter-F).

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

from bench.base.schema import ConfigError
from methods.base import Task

# The config keys every SGD-trained method reads (see configs/methods/*.yaml for the values).
OPTIM_KEYS = ("lr", "momentum", "weight_decay", "batch_size", "epochs", "warmup_epochs",
              "warmup_lr")
# What an Adam-family method must give; warm-up keys are optional there (default: none).
ADAM_KEYS = ("lr", "weight_decay", "batch_size", "epochs")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine_epoch", "cosine_iter")
DROP_LAST = ("dassl", "never")


@dataclass
class OptimConfig:
    lr: float
    momentum: float
    weight_decay: float
    batch_size: int
    epochs: int
    warmup_epochs: int
    warmup_lr: float
    optimizer: str = "sgd"
    eps: float = 1e-8            # torch's Adam/AdamW default
    betas: tuple = (0.9, 0.999)  # torch's and Dassl's (OPTIM.ADAM_BETA1/2) default
    schedule: str = "cosine_epoch"
    drop_last: str = "dassl"

    @classmethod
    def from_config(cls, cfg: dict) -> "OptimConfig":
        optimizer = cfg.get("optimizer", "sgd")
        schedule = cfg.get("schedule", "cosine_epoch")
        drop_last = cfg.get("drop_last", "dassl")
        for key, value, known in (("optimizer", optimizer, OPTIMIZERS),
                                  ("schedule", schedule, SCHEDULES),
                                  ("drop_last", drop_last, DROP_LAST)):
            if value not in known:
                raise ConfigError(f"{key} must be one of {', '.join(known)}, not {value!r}")
        required = OPTIM_KEYS if optimizer == "sgd" else ADAM_KEYS
        missing = [k for k in required if k not in cfg]
        if missing:
            raise ConfigError(f"method config lacks the training keys {missing}")
        try:
            betas = tuple(float(b) for b in cfg.get("betas", (0.9, 0.999)))
        except (TypeError, ValueError):
            raise ConfigError(f"betas must be two numbers, not {cfg.get('betas')!r}") from None
        out = cls(lr=float(cfg["lr"]), momentum=float(cfg.get("momentum", 0.0)),
                  weight_decay=float(cfg["weight_decay"]), batch_size=int(cfg["batch_size"]),
                  epochs=int(cfg["epochs"]), warmup_epochs=int(cfg.get("warmup_epochs", 0)),
                  warmup_lr=float(cfg.get("warmup_lr", 0.0)), optimizer=optimizer,
                  eps=float(cfg.get("eps", 1e-8)), betas=betas, schedule=schedule,
                  drop_last=drop_last)
        if out.epochs < 1 or out.batch_size < 1 or out.warmup_epochs < 0:
            raise ConfigError(f"epochs and batch_size must be >= 1 and warmup_epochs >= 0: {out}")
        if len(out.betas) != 2:
            raise ConfigError(f"betas must be two numbers, not {cfg.get('betas')!r}")
        if schedule == "cosine_iter" and out.warmup_epochs:
            raise ConfigError("schedule cosine_iter has no warm-up: set warmup_epochs to 0 "
                             "(or use schedule cosine_epoch)")
        return out


def make_optimizer(params: list, opt: OptimConfig) -> torch.optim.Optimizer:
    """The optimizer ``opt.optimizer`` names, with the config's hyperparameters."""
    if opt.optimizer == "sgd":
        return torch.optim.SGD(params, lr=opt.lr, momentum=opt.momentum,
                               weight_decay=opt.weight_decay)
    kind = torch.optim.Adam if opt.optimizer == "adam" else torch.optim.AdamW
    return kind(params, lr=opt.lr, betas=opt.betas, eps=opt.eps, weight_decay=opt.weight_decay)


def lr_at_iter(iteration: int, total: int, opt: OptimConfig) -> float:
    """Learning rate of 0-based ``iteration`` of ``total`` under ``CosineAnnealingLR(T_max=total)``
    stepped once per iteration (eta_min 0)."""
    return 0.5 * opt.lr * (1.0 + math.cos(math.pi * iteration / total))


def lr_at(epoch: int, opt: OptimConfig) -> float:
    """Learning rate of 0-based ``epoch``: constant warm-up, then cosine over ``opt.epochs``."""
    if epoch < opt.warmup_epochs:
        return opt.warmup_lr
    t = epoch - opt.warmup_epochs
    return 0.5 * opt.lr * (1.0 + math.cos(math.pi * t / opt.epochs))


def batches(n: int, batch_size: int, generator: torch.Generator,
            drop_last: str = "dassl") -> list[torch.Tensor]:
    """One epoch's shuffled index batches (Dassl's drop_last rule, see the module doc;
    ``drop_last="never"`` keeps the last incomplete batch)."""
    perm = torch.randperm(n, generator=generator)
    out = list(perm.split(batch_size))
    if drop_last == "dassl" and n >= batch_size and len(out[-1]) < batch_size:
        out.pop()
    return out


def batches_per_epoch(n: int, batch_size: int, drop_last: str = "dassl") -> int:
    full, rest = divmod(n, batch_size)
    if rest and (drop_last == "never" or n < batch_size):
        return full + 1
    return full


def total_steps(n: int, opt: OptimConfig) -> int:
    """Optimizer steps of a fit on ``n`` train rows: epochs x batches per epoch."""
    return opt.epochs * batches_per_epoch(n, opt.batch_size, opt.drop_last)


def seeded_generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


StepFn = Callable[[torch.Tensor, torch.Tensor, Callable[[torch.Tensor], torch.Tensor]], torch.Tensor]


def training_loop(task: Task, params: Iterable[torch.nn.Parameter], opt: OptimConfig,
                  scaler: "torch.amp.GradScaler | None" = None,
                  features_for_epoch: Callable[[int], torch.Tensor] | None = None):
    """The loop as a generator: yields every batch as ``(x, y, scale)`` with the gradients
    zeroed, expects the batch's loss back (``send``) once the caller has run the backward pass,
    then steps; returns (``StopIteration.value``) the mean training loss of every epoch.
    :func:`train` drives one; :func:`train_jointly` several in step, one backward pass for all.
    ``features_for_epoch(e)`` replaces ``task.train_views.for_epoch(e)`` as the source of epoch
    ``e``'s (N, D) features."""
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("nothing to train: no parameter requires grad")
    optimizer = make_optimizer(params, opt)
    views_of = features_for_epoch or task.train_views.for_epoch
    device = task.device
    labels = task.train.labels.to(device)
    n = len(labels)
    if n == 0:
        raise ValueError("the task has no train images")
    gen = seeded_generator(task.seed)
    scale = scaler.scale if scaler is not None else (lambda t: t)
    history = []
    total_iters = total_steps(n, opt)
    iteration = 0
    for epoch in range(opt.epochs):
        if opt.schedule == "cosine_epoch":
            for group in optimizer.param_groups:
                group["lr"] = lr_at(epoch, opt)
        feats = views_of(epoch).to(device=device, dtype=torch.float32)
        if feats.shape[0] != n:
            raise ValueError(f"train views for epoch {epoch} have {feats.shape[0]} rows, "
                             f"the train split has {n}")
        total, count = None, 0
        for idx in batches(n, opt.batch_size, gen, opt.drop_last):
            idx = idx.to(device)
            if opt.schedule == "cosine_iter":
                for group in optimizer.param_groups:
                    group["lr"] = lr_at_iter(iteration, total_iters, opt)
            iteration += 1
            optimizer.zero_grad(set_to_none=True)
            loss = yield feats[idx], labels[idx], scale
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            part = loss.detach().double().cpu() * len(idx)
            total = part if total is None else total + part
            count += len(idx)
        mean = total / count
        history.append(mean.tolist() if mean.ndim else float(mean))
    return history


def train(task: Task, params: Iterable[torch.nn.Parameter], step: StepFn, opt: OptimConfig,
          scaler: "torch.amp.GradScaler | None" = None,
          features_for_epoch: Callable[[int], torch.Tensor] | None = None) -> list[float]:
    """Run the loop (:func:`training_loop`) with ``step``; returns the mean training loss of
    every epoch.

    ``step`` may return a vector of K losses (K models trained side by side on the same
    batches, whose backward pass it ran on their sum): the history is then one list of K mean
    losses per epoch."""
    return train_jointly([training_loop(task, params, opt, scaler, features_for_epoch)],
                         lambda members, batches: [step(*batches[0])])[0]


JointStepFn = Callable[[list[int], list[tuple]], list[torch.Tensor]]


def train_jointly(loops: list, step: JointStepFn) -> list[list[float]]:
    """Drive several :func:`training_loop` generators in step: ``step(members, batches)`` gets
    the indices of the loops still training and each one's batch, runs one backward pass for
    all (each loss through its own ``scale``) and returns their losses. A loop that ends (fewer
    epochs or batches) drops out; the others go on. Returns each loop's loss history.

    Each loop keeps its own optimizer, schedule, batch order and GradScaler, so with parameters
    that no other loop's loss reaches every model trains as it would alone."""
    histories: list = [None] * len(loops)
    pending = {}
    for i, loop in enumerate(loops):
        try:
            pending[i] = next(loop)
        except StopIteration as done:
            histories[i] = done.value
    while pending:
        members = list(pending)
        losses = step(members, [pending[i] for i in members])
        for i, loss in zip(members, losses):
            try:
                pending[i] = loops[i].send(loss)
            except StopIteration as done:
                histories[i] = done.value
                del pending[i]
    return histories


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
