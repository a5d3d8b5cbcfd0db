"""`bench data`: check a data root, print a few-shot subset, create a missing split file.

    bench data check --data-root R [--datasets all|name,...] [--fast]
    bench data fewshot --dataset D --shots K --seed S --data-root R
    bench data split DATASET --data-root R [--seed S]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench.base.errors import UsageError


def register(subparsers) -> None:
    p = subparsers.add_parser("data", help="check a data root; print few-shot subsets; create split files",
                              description="Data-root tools for the CoOp datasets.")
    sub = p.add_subparsers(dest="data_command", metavar="ACTION", parser_class=type(p))
    sub.required = True

    c = sub.add_parser("check", help="say which datasets are usable and exactly what is missing")
    c.add_argument("--data-root", required=True, help="folder holding one folder per dataset")
    c.add_argument("--datasets", default="all",
                   help="comma list or patterns; 'all' = the eleven CoOp datasets (default); "
                        "'imagenet_*' = the four ImageNet variants of domain generalization")
    c.add_argument("--fast", action="store_true",
                   help="only check that the listed image files exist (default: also decode "
                        "every image, as `bench run` reads it)")
    c.add_argument("--workers", type=int, default=None,
                   help="threads decoding images (default: twice the CPU count, at most 32)")
    c.set_defaults(func=run_check)

    f = sub.add_parser("fewshot", help="print CoOp's few-shot subset (K per class) as JSON")
    f.add_argument("--dataset", required=True)
    f.add_argument("--shots", type=int, required=True, help="K images per class (val: min(K, 4))")
    f.add_argument("--seed", type=int, required=True)
    f.add_argument("--data-root", required=True)
    f.set_defaults(func=run_fewshot)

    s = sub.add_parser("split", help="create a missing split_zhou_*.json by CoOp's rules")
    s.add_argument("dataset")
    s.add_argument("--data-root", required=True)
    s.add_argument("--seed", type=int, default=1,
                   help="seed of Python's random for the shuffles (default 1)")
    s.add_argument("--force", action="store_true", help="overwrite an existing split file")
    s.set_defaults(func=run_split)


def data_root_arg(value: str) -> Path:
    root = Path(value).expanduser()
    if not root.exists():
        raise UsageError(f"data root {root} does not exist; pass the folder that holds the "
                         f"dataset folders (imagenet/, caltech-101/, ...)")
    if not root.is_dir():
        raise UsageError(f"data root {root} is a file, not a folder; pass the folder that holds "
                         f"the dataset folders (imagenet/, caltech-101/, ...)")
    return root


def run_check(args) -> int:
    from datasets_registry import COOP_TAG, DATASETS
    from datasets_registry.check import check_dataset, format_check

    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    root = data_root_arg(args.data_root)
    names = DATASETS.select(args.datasets, all_tag=COOP_TAG)
    print(f"data root: {root.resolve()}")
    results = []
    for name in names:
        ds = DATASETS.get(name)
        res = check_dataset(ds, root, decode=not args.fast, workers=args.workers, progress=True)
        results.append(res)
        print()
        print(format_check(res, ds.expected), flush=True)
    usable = [r.display_name for r in results if r.usable]
    missing = [r.display_name for r in results if not r.found]
    broken = [r.display_name for r in results if r.found and not r.usable]
    print()
    print(f"summary: {len(usable)} of {len(results)} usable"
          + (f"; missing: {', '.join(missing)}" if missing else "")
          + (f"; unusable: {', '.join(broken)}" if broken else ""))
    if missing or broken:
        print("See docs/datasets.md for the expected layout of every dataset.")
    return 0 if len(usable) == len(results) else 1


def run_fewshot(args) -> int:
    from datasets_registry import DATASETS
    from datasets_registry.fewshot import sample_fewshot

    if args.shots < 1:
        raise UsageError(f"--shots must be at least 1, got {args.shots}")
    root = data_root_arg(args.data_root)
    ds = DATASETS.get(args.dataset)
    splits = ds.load(root)
    if not splits.train:
        raise UsageError(f"{ds.display_name} has no train images to sample: it is an "
                         f"evaluation-only dataset (train on {splits.source or 'another dataset'} "
                         f"and test on it with `bench run --protocol domain`)")
    sub = sample_fewshot(splits.train, splits.val, args.shots, args.seed)
    json.dump({"train": [list(x) for x in sub.train], "val": [list(x) for x in sub.val]},
              sys.stdout)
    sys.stdout.write("\n")
    return 0


def run_split(args) -> int:
    from datasets_registry import DATASETS
    from datasets_registry.make_split import make_split

    root = data_root_arg(args.data_root)
    ds = DATASETS.get(args.dataset)
    path = make_split(ds, root, seed=args.seed, force=args.force)
    print(f"wrote {path}")
    return 0
