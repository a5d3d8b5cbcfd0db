"""The demo pretraining's defaults and command-line flags, in a module that imports no torch:
`bench demo pretrain` (bench/commands/demo.py) builds its parser from here at start-up, and
`python -m bench.demo.pretrain` uses the same flags."""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULTS = dict(seed=0, steps=3000, batch=128, lr=1e-3, warmup=150, weight_decay=0.1, threads=1,
                final_logit_scale=100.0, logit_scale=100.0, model="bench-demo-rn")
# the demo architectures (configs/models/<name>.json); bench.demo.pretrain.MODELS, without torch
MODELS = ("bench-demo-rn", "bench-demo-vit")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    p.add_argument("--steps", type=int, default=DEFAULTS["steps"],
                   help="training steps (default %(default)s, about 15 min on an idle 2-core machine)")
    p.add_argument("--minutes", type=float, default=None,
                   help="also stop after this many minutes (makes the result machine-dependent)")
    p.add_argument("--batch", type=int, default=DEFAULTS["batch"])
    p.add_argument("--lr", type=float, default=DEFAULTS["lr"])
    p.add_argument("--warmup", type=int, default=DEFAULTS["warmup"])
    p.add_argument("--threads", type=int, default=DEFAULTS["threads"],
                   help="torch threads (fixed for determinism; default %(default)s)")
    p.add_argument("--final-logit-scale", type=float, default=DEFAULTS["final_logit_scale"],
                   help="set the logit scale to this after training (CLIP ends at 100); it changes no "
                        "zero-shot prediction, only the step sizes of methods using the model's "
                        "scale (0: keep the learned one; default %(default)s)")
    p.add_argument("--logit-scale", type=float, default=DEFAULTS["logit_scale"],
                   help="the fixed logit scale of training; 0 learns it from CLIP's 1/0.07 "
                        "(default %(default)s)")
    p.add_argument("--eval-every", type=int, default=0,
                   help="log zero-shot on the demo suite every N steps (0: only at the end)")
    p.add_argument("--model", choices=MODELS, default=DEFAULTS["model"],
                   help="the demo architecture to pretrain (default %(default)s; bench-demo-vit: "
                        "a ViT image tower, for the methods that tune inside the encoders)")
    p.add_argument("--out", type=Path, default=None,
                   help="checkpoint to write (fp16 state_dict); the committed ones are "
                        "configs/models/<model>.pt")


def pretrain_kwargs(args: argparse.Namespace) -> dict:
    """The keyword arguments of ``bench.demo.pretrain.pretrain`` from parsed flags (every entry
    point calls ``pretrain(args.out, **pretrain_kwargs(args))``)."""
    return dict(seed=args.seed, steps=args.steps, batch=args.batch, lr=args.lr,
                warmup=args.warmup, threads=args.threads, minutes=args.minutes,
                eval_every=args.eval_every, final_logit_scale=args.final_logit_scale,
                logit_scale=args.logit_scale, model_name=getattr(args, "model", DEFAULTS["model"]))
