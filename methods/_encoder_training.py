"""What the encoder-tuning methods (methods/tuning.py) share: precision, batches, schedules,
class-chunked text encoding, and the scorer of test images.

* Precision (``precision`` key): ``auto`` = ``amp_fp16`` on CUDA (every release runs fp16 on
  its GPU), ``fp32`` elsewhere; ``amp_fp16`` is fp32 trainable tensors under fp16 autocast with
  a GradScaler, ``amp_bf16`` without one. The shared frozen model is never cast.
* Batches: one pass over the train set per epoch, shuffled by a generator seeded with the task
  seed. ``drop_last="dassl"`` (PromptSRC, MaPLe: Dassl drops the last incomplete batch when the
  train set has at least a batch) or ``"never"`` (CLIP-LoRA, 2SFS: a plain ``DataLoader``).
  An iteration budget (CLIP-LoRA's 500 x shots) stops inside an epoch, as the releases
  ``break`` out of their loader.
* Schedules: :func:`cosine_lr` (``CosineAnnealingLR(T_max, eta_min)`` stepped per iteration,
  CLIP-LoRA, 2SFS) and Dassl's per-epoch constant warm-up + cosine
  (``methods._training.lr_at``, PromptSRC, MaPLe).
* :class:`ChunkedText`: class text embeddings for a training step with at most ``chunk``
  classes through the text tower at once (exact gradient, CoOp's two-pass step; the RNG state
  of each chunk is replayed, so LoRA dropout draws the same masks in both passes).
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable, Iterator

import torch
import torch.nn.functional as F

from bench.base.determinism import MIN_BATCH
from bench.base.schema import ConfigError
from methods._training import batches, batches_per_epoch

PRECISIONS = ("auto", "fp32", "amp_fp16", "amp_bf16")
DROP_LAST = ("dassl", "never")


class Numerics:
    """The precision a fit runs at: autocast and loss scaling."""

    def __init__(self, precision: str, device: torch.device, method: str):
        if precision not in PRECISIONS:
            raise ConfigError(f"{method}: precision must be one of {', '.join(PRECISIONS)}, "
                             f"not {precision!r}")
        if precision == "auto":
            precision = "amp_fp16" if device.type == "cuda" else "fp32"
        if precision == "amp_fp16" and device.type != "cuda":
            raise ConfigError(f"{method}: precision amp_fp16 needs a CUDA device (use fp32 or "
                             f"amp_bf16 on the CPU)")
        self.precision, self.device = precision, device
        self.amp_dtype = {"amp_fp16": torch.float16, "amp_bf16": torch.bfloat16}.get(precision)

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype,
                              enabled=self.amp_dtype is not None)

    def scaler(self) -> "torch.amp.GradScaler | None":
        return torch.amp.GradScaler(self.device.type) if self.precision == "amp_fp16" else None


def step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, scaler=None,
         after_backward: Callable[[], None] | None = None) -> bool:
    """Backward of ``loss`` (scaled), ``after_backward()`` (the chunked text pass), optimizer
    step, zeroed gradients. False when the GradScaler skipped the step (inf/NaN gradients)."""
    (scaler.scale(loss) if scaler is not None else loss).backward()
    if after_backward is not None:
        after_backward()
    stepped = True
    if scaler is not None:
        before = scaler.get_scale()
        scaler.step(optimizer)
        scaler.update()
        stepped = scaler.get_scale() >= before
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return stepped


def batch_plan(n: int, batch_size: int, generator: torch.Generator, *, epochs: int | None = None,
               iterations: int | None = None, drop_last: str = "never", first_epoch: int = 0
               ) -> Iterator[tuple[int, int, torch.Tensor]]:
    """``(epoch, iteration, rows)`` for every training step: ``epochs`` full passes, or passes
    until ``iterations`` steps (the last pass cut short). Epoch numbers start at
    ``first_epoch`` (2SFS's second stage continues after the first's epochs)."""
    if drop_last not in DROP_LAST:
        raise ConfigError(f"drop_last must be one of {', '.join(DROP_LAST)}, not {drop_last!r}")
    if n < 1:
        raise ValueError("the task has no train images")
    if (epochs is None) == (iterations is None):
        raise ValueError("give epochs or iterations")
    it, epoch = 0, first_epoch
    while epochs is None or epoch < first_epoch + epochs:
        for rows in batches(n, batch_size, generator, drop_last):
            if iterations is not None and it >= iterations:
                return
            yield epoch, it, rows
            it += 1
        epoch += 1
        if iterations is not None and it >= iterations:
            return


def epochs_for(n: int, batch_size: int, iterations: int, drop_last: str = "never") -> int:
    """Passes over ``n`` train rows that ``iterations`` steps take (the last one partly)."""
    return math.ceil(iterations / batches_per_epoch(n, batch_size, drop_last)) if iterations else 0


def cosine_lr(iteration: int, total: int, lr: float, eta_min: float) -> float:
    """``CosineAnnealingLR(T_max=total, eta_min)`` at 0-based ``iteration`` (closed form)."""
    return eta_min + (lr - eta_min) * (1 + math.cos(math.pi * iteration / total)) / 2


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def normalize(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


@contextlib.contextmanager
def _replay(state):
    """Run with the RNG ``state`` (cpu, cuda) and put the current one back afterwards."""
    cpu, cuda = state
    saved = (torch.get_rng_state(), torch.cuda.get_rng_state() if cuda is not None else None)
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state(cuda)
    try:
        yield
    finally:
        torch.set_rng_state(saved[0])
        if cuda is not None:
            torch.cuda.set_rng_state(saved[1])


def _rng_state(device: torch.device):
    return (torch.get_rng_state(),
            torch.cuda.get_rng_state(device) if device.type == "cuda" else None)


class ChunkedText:
    """Class text embeddings (C, D) for a training step, ``encode(rows)`` (k, D) with autograd.

    Without ``chunk`` (or ``chunk >= C``) :meth:`forward` returns them with their graph. With
    it, :meth:`forward` encodes every chunk without autograd and returns a leaf that collects
    the loss gradient; :meth:`backward`, after the loss's backward pass, re-encodes chunk by
    chunk with autograd (replaying each chunk's RNG state) and pushes that gradient through:
    the exact gradient, with the memory of one chunk."""

    def __init__(self, encode: Callable[[torch.Tensor], torch.Tensor], n: int,
                 chunk: int | None, device: torch.device):
        self.encode, self.n, self.device = encode, n, device
        self.chunks = list(torch.arange(n, device=device).split(chunk)) if chunk and chunk < n \
            else None
        self._text = None
        self._states = []

    def forward(self) -> torch.Tensor:
        if self.chunks is None:
            return self.encode(torch.arange(self.n, device=self.device))
        self._states = []
        parts = []
        with torch.no_grad():
            for rows in self.chunks:
                self._states.append(_rng_state(self.device))
                parts.append(self.encode(rows))
        self._text = torch.cat(parts).requires_grad_(True)
        return self._text

    def backward(self) -> None:
        if self.chunks is None or self._text is None or self._text.grad is None:
            return
        grad = self._text.grad
        for rows, state in zip(self.chunks, self._states):
            with _replay(state):
                part = self.encode(rows)
            part.backward(grad[rows].to(part.dtype))
        self._text = None


def scorer(image_features: Callable[[torch.Tensor], torch.Tensor], classifier: torch.Tensor,
           scale: float, numerics: Numerics) -> Callable[[torch.Tensor], torch.Tensor]:
    """The logits function of a tuned model: ``scale * cos(image_features(x), classifier)``,
    (N, C) float32 on the input's device. ``classifier`` (C, D) is normalized here. Batches of
    fewer than MIN_BATCH images are padded (bench.base.determinism: an image's logits must not depend
    on the batch it falls in)."""
    weights = normalize(classifier.detach().float())
    device = numerics.device

    @torch.no_grad()
    def logits_fn(images: torch.Tensor) -> torch.Tensor:
        x = images.to(device, torch.float32)
        n = x.shape[0]
        if 0 < n < MIN_BATCH:
            x = torch.cat([x, x.new_zeros((MIN_BATCH - n, *x.shape[1:]))])
        with numerics.autocast():
            feats = image_features(x)
        out = scale * normalize(feats.float()[:n]) @ weights.t()
        return out.to(images.device)

    return logits_fn


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), labels)
