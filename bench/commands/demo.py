"""`bench demo`: the offline demo's model and data.

    bench demo data                 generate the demo datasets (once) and print where they are
    bench demo pretrain --out F.pt  re-run the tiny CLIP's contrastive pretraining
"""

from __future__ import annotations

from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="the offline demo: tiny pretrained CLIP and generated datasets",
                              description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="demo_command", metavar="ACTION")
    sub.required = True

    d = sub.add_parser("data", help="generate the demo datasets (if missing) and print their data root")
    d.add_argument("--root", type=Path, default=None,
                   help="write them here instead of the cache ($BENCH_DEMO_DIR or ~/.cache/bench/demo)")
    d.set_defaults(func=_data)

    t = sub.add_parser("pretrain", help="pretrain the tiny demo CLIP on the generated world",
                       description="Contrastive pretraining of the demo CLIP (deterministic per "
                                   "seed); see docs/demo.md.")
    add_pretrain_arguments(t)
    t.set_defaults(func=_pretrain)


# bench.demo.pretrain.DEFAULTS, spelled out so that building the parser does not import the
# pretraining module (and torch): every `bench` command would pay seconds for it at start-up.
# tests/test_cli_startup.py checks that these flags match bench.demo.pretrain.add_arguments.
PRETRAIN_DEFAULTS = dict(seed=0, steps=2000, batch=128, lr=1e-3, warmup=150, threads=1,
                         final_logit_scale=100.0)


def add_pretrain_arguments(p) -> None:
    d = PRETRAIN_DEFAULTS
    p.add_argument("--seed", type=int, default=d["seed"])
    p.add_argument("--steps", type=int, default=d["steps"],
                   help="training steps (default %(default)s, about 10 min on an idle 2-core "
                        "machine)")
    p.add_argument("--minutes", type=float, default=None,
                   help="also stop after this many minutes (makes the result machine-dependent)")
    p.add_argument("--batch", type=int, default=d["batch"])
    p.add_argument("--lr", type=float, default=d["lr"])
    p.add_argument("--warmup", type=int, default=d["warmup"])
    p.add_argument("--threads", type=int, default=d["threads"],
                   help="torch threads (fixed for determinism; default %(default)s)")
    p.add_argument("--final-logit-scale", type=float, default=d["final_logit_scale"],
                   help="set the logit scale to this after training (CLIP ends at 100); it "
                        "changes no zero-shot prediction, only the step sizes of methods using "
                        "the model's scale (0: keep the learned one; default %(default)s)")
    p.add_argument("--eval-every", type=int, default=0,
                   help="log zero-shot on the demo suite every N steps (0: only at the end)")
    p.add_argument("--out", type=Path, default=None,
                   help="checkpoint to write (fp16 state_dict); the committed one is "
                        "configs/models/bench-demo-rn.pt")


def _data(args) -> int:
    from bench.demo import suite

    root = args.root if args.root is not None else suite.demo_data_root()
    existed = (Path(root) / ".complete").is_file()
    if not existed:
        print(f"generating the demo datasets in {root} ...")
    suite.ensure_demo_data(root, quiet=existed)
    for name, spec in suite.SUITE.items():
        print(f"{name}: {len(spec.classnames)} classes - {spec.description}")
    print(f"demo data root: {root}")
    return 0


def _pretrain(args) -> int:
    from bench.demo.pretrain import pretrain

    if args.out is None:
        print("note: no --out given, the checkpoint is not saved")
    pretrain(args.out, seed=args.seed, steps=args.steps, batch=args.batch, lr=args.lr,
             warmup=args.warmup, threads=args.threads, minutes=args.minutes,
             eval_every=args.eval_every, final_logit_scale=args.final_logit_scale)
    return 0
