"""`bench compare OUTPUT --methods A,B`: is the gap between two methods real?

Paired by seed, per dataset and shot count and for the average over datasets: the difference
A − B, its interval and p-value, Holm–Bonferroni over the table. ``--test seeds`` (default)
needs only the records; ``bootstrap`` and ``mcnemar`` read the per-image predictions files.
``--against OUTPUT2`` takes B from another folder (two runs of one method: ``--methods A``).
See docs/statistics.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bench.base.errors import UsageError

FORMATS = ("terminal", "markdown", "latex", "csv")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "compare", help="paired comparison of two methods (p-values, intervals, Holm)",
        description=__doc__.split("\n\n")[0])
    p.add_argument("output", metavar="OUTPUT", type=Path,
                   help="the output folder of `bench run` (holds results/), or a `bench "
                        "export` file")
    p.add_argument("--methods", required=True,
                   help="A,B: two method rows (a name, label such as coop:csc, or the row as "
                        "`bench report` names it); with --against, one name means the same in both")
    p.add_argument("--against", type=Path, default=None, metavar="OUTPUT2",
                   help="take B from this output folder or export file (compare two runs)")
    p.add_argument("--test", choices=["seeds", "bootstrap", "mcnemar"], default="seeds",
                   help="seeds: paired t over seeds (default); bootstrap: over test images and "
                        "seeds; mcnemar: exact, per seed (both need stored predictions)")
    p.add_argument("--across", choices=["wilcoxon", "t"], default="wilcoxon",
                   help="test of the per-dataset differences for the Average (default wilcoxon)")
    p.add_argument("--datasets", default=None, help="comma list or patterns of datasets")
    p.add_argument("--shots", default=None, help="comma list of shot counts")
    p.add_argument("--backbone", default=None, help="backbone(s): name or label; patterns work")
    p.add_argument("--alpha", type=float, default=0.05, help="family-wise level (default 0.05)")
    p.add_argument("--resamples", type=int, default=10_000,
                   help="bootstrap resamples (default 10000)")
    p.add_argument("--allow-incomparable", action="store_true",
                   help="compare rows whose protocol facts differ (labelled in the output)")
    p.add_argument("--format", choices=FORMATS, default="terminal", dest="fmt")
    p.add_argument("--out", type=Path, default=None, help="write to FILE instead of stdout")
    p.set_defaults(func=run)


def run(args) -> int:
    from bench.commands.report import _write
    from bench.reporting import _registry_labels, _split, compare_rows
    from results import significance

    names = _split(args.methods) or []
    if args.against is not None and len(names) == 1:
        names = names * 2
    if len(names) != 2:
        raise UsageError(f"--methods {args.methods}: name two rows, A,B (or one with --against)")
    table = compare_rows(args.output, names[0], names[1], against=args.against, test=args.test,
                         across=args.across, datasets=args.datasets, shots=args.shots,
                         backbone=args.backbone, alpha=args.alpha, resamples=args.resamples,
                         allow_incomparable=args.allow_incomparable)
    labels, _ = _registry_labels()
    _write(significance.render(table, args.fmt, labels), args.out)
    if any(n.startswith("not paired") for n in table.notes):
        print("bench: note: some cells could not be paired (see the notes)", file=sys.stderr)
    return 0
