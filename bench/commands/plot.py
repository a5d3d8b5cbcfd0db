"""`bench plot OUTPUT`: few-shot curves, one panel per dataset plus the average (PNG and PDF).

Accuracy vs shots (log-2 axis), one line per method with a ±std band over seeds, zero-shot as a
horizontal line; ``--compare published`` overlays the shipped reference numbers as dashed lines.
See docs/reports.md.
"""

from __future__ import annotations

from pathlib import Path

from bench.base.errors import UsageError
from bench.commands.report import add_selection_args, selection
from bench.reporting import PLOT_FORMATS as FORMATS

MIN_DPI, MAX_DPI = 10, 2400  # at 2400 dpi the default 4-panel-wide figure is 34,560 px wide


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "plot", help="few-shot curves: one panel per dataset plus the average (PNG, PDF)",
        description=__doc__.split("\n\n")[0])
    add_selection_args(p)
    p.add_argument("--out", type=Path, default=None,
                   help="file name without or with extension (default: OUTPUT/plots/"
                        "curves-<backbone>); one file per format is written next to it")
    p.add_argument("--formats", default="png,pdf",
                   help=f"comma list of {', '.join(FORMATS)} (default: png,pdf)")
    p.add_argument("--ncols", type=int, default=4, help="panels per row (default: 4)")
    p.add_argument("--dpi", type=int, default=150, help="PNG resolution (default: 150)")
    p.set_defaults(func=run)


def run(args) -> int:
    formats = [f.strip().lower() for f in args.formats.split(",") if f.strip()]
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise UsageError(f"--formats takes a comma list of {', '.join(FORMATS)}; got "
                         f"{args.formats!r}")
    if args.ncols < 1:
        raise UsageError("--ncols must be at least 1")
    if not MIN_DPI <= args.dpi <= MAX_DPI:
        raise UsageError(f"--dpi must be between {MIN_DPI} and {MAX_DPI} (dots per inch of the "
                         f"PNG; default 150), got {args.dpi}")
    from bench.reporting import plot_curves

    for name, titles, paths in plot_curves(selection(args), out=args.out, formats=formats,
                                           ncols=args.ncols, dpi=args.dpi):
        print(f"{name}: {len(titles)} panels ({', '.join(titles)})")
        for path in paths:
            print(f"wrote {path}")
    return 0
