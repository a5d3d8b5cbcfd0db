"""`bench export OUTPUT FILE`: the results (and per-image predictions) as one JSON Lines file.

Versioned (``bench-export`` 1), merges by concatenation; `bench compare` reads it in place of an
output folder. Format: docs/statistics.md#export.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bench.base.errors import UsageError


def register(subparsers) -> None:
    p = subparsers.add_parser("export", help="results and predictions as one versioned JSONL file",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("output", metavar="OUTPUT", type=Path, help="the output folder of `bench run`")
    p.add_argument("dest", metavar="FILE", type=Path, help="the .jsonl file to write")
    p.add_argument("--no-predictions", action="store_true",
                   help="records only (no embedded predictions files)")
    p.set_defaults(func=run)


def run(args) -> int:
    from results.export import write_export
    from results.store import ResultStore

    if not ResultStore(args.output).results_dir.is_dir():
        raise UsageError(f"no results in {args.output}: {args.output}/results does not exist "
                         f"(run `bench run --output {args.output} ...` first)")
    if args.dest.is_dir():
        raise UsageError(f"{args.dest} is a folder; name the .jsonl file to write")
    n = write_export(args.output, args.dest, predictions=not args.no_predictions)
    print(f"wrote {args.dest}: {n} record(s)", file=sys.stderr)
    return 0
