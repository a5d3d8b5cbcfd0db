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
    from bench.demo.flags import add_arguments  # torch-free: the parser is built at start-up

    add_arguments(t)
    t.set_defaults(func=_pretrain)


def _data(args) -> int:
    from datasets_registry._demo import suite

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
             eval_every=args.eval_every, final_logit_scale=args.final_logit_scale,
             logit_scale=args.logit_scale)
    return 0
