"""`bench report OUTPUT`: tables of the results under an output folder.

The main layout (methods × shot counts, averaged over datasets) and, per shot count, methods ×
datasets plus an Average column; mean ± std over seeds with the number of seeds behind each cell.
``--compare published`` adds the shipped reference numbers where the protocol matches.
See docs/reports.md.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from bench.reporting import FORMATS, LAYOUTS


# ----------------------------------------------------------------------------- shared with plot
def add_selection_args(p) -> None:
    p.add_argument("output", metavar="OUTPUT", type=Path,
                   help="the output folder of `bench run` (holds results/), or a `bench "
                        "export` file")
    p.add_argument("--methods", default=None,
                   help="comma list or patterns of method labels (default: all found)")
    p.add_argument("--datasets", default=None,
                   help="comma list or patterns of datasets (default: all found); the Average "
                        "needs every dataset named here")
    p.add_argument("--shots", default=None, help="comma list of shot counts (default: all found)")
    p.add_argument("--backbone", default=None,
                   help="backbone(s): model name (RN50-quickgelu) or label "
                        "(RN50-quickgelu__openai); patterns work")
    p.add_argument("--compare", choices=["published"], default=None,
                   help="put the shipped published numbers beside ours (same protocol only)")


def _write(text: str, out: Path | None) -> None:
    if out is None:
        sys.stdout.write(text)
        return
    from results.atomic import atomic_write_text

    atomic_write_text(out, text)
    print(f"wrote {out}", file=sys.stderr)


# ----------------------------------------------------------------------------- report
def register(subparsers) -> None:
    p = subparsers.add_parser(
        "report", help="tables of results: methods x shots, and methods x datasets per shot",
        description=__doc__.split("\n\n")[0])
    add_selection_args(p)
    p.add_argument("more", metavar="MORE", type=Path, nargs="*", default=[],
                   help="more output folders or `bench export` files, reported as one with "
                        "OUTPUT (another machine's or person's results; a cell in two counts "
                        "once)")
    p.add_argument("--format", choices=FORMATS, default="terminal", dest="fmt",
                   help="terminal (default), markdown, latex (booktabs) or csv (tidy, one row "
                        "per cell)")
    p.add_argument("--out", type=Path, default=None, help="write to FILE instead of stdout")
    p.add_argument("--layout", choices=LAYOUTS, default="all",
                   help="main = methods x shots averaged over datasets; per-shot = methods x "
                        "datasets for each shot count; all (default) = both")
    p.add_argument("--color", choices=["auto", "always", "never"], default="auto",
                   help="terminal: bold best values with ANSI codes (auto: when stdout is a tty)")
    p.add_argument("--standalone", action="store_true",
                   help="latex: a complete document (article + booktabs) instead of tables only")
    p.add_argument("--protocol", default=None,
                   help="which protocol's results: fewshot (default), base2novel (Base, Novel "
                        "and HM per dataset), domain or crossdataset (source and targets); "
                        "default: fewshot, or the one protocol OUTPUT holds when it holds no "
                        "few-shot results")
    p.add_argument("--significance", nargs="?", const="seeds", default=None,
                   choices=["seeds", "bootstrap", "mcnemar"], metavar="TEST",
                   help="dagger cells significantly below their column's best (Holm over the "
                        "table): seeds (paired t, the default TEST), bootstrap or mcnemar "
                        "(per-image predictions); docs/statistics.md")
    p.add_argument("--ci", nargs="?", const="seeds", default=None, choices=["seeds", "bootstrap"],
                   metavar="KIND", help="95%% intervals instead of ± std: seeds (t over seeds, "
                                        "the default KIND) or bootstrap (test images and seeds)")
    p.set_defaults(func=run)


def run(args) -> int:
    from bench.reporting import report_text

    text = report_text(selection(args), args.fmt, layout=args.layout,
                       color=use_color(args.fmt, args.out, args.color),
                       standalone=args.standalone, protocol=getattr(args, "protocol", None),
                       significance=getattr(args, "significance", None),
                       ci=getattr(args, "ci", None))
    _write(text, args.out)
    return 0


def selection(args):
    """The selection flags (add_selection_args) as a bench.reporting.Selection."""
    from bench.reporting import Selection

    return Selection(args.output, methods=args.methods, datasets=args.datasets,
                     shots=args.shots, backbone=args.backbone, compare=args.compare,
                     more=tuple(getattr(args, "more", ()) or ()))


def use_color(fmt: str, out, choice: str) -> bool:
    """ANSI bold for the terminal format on a tty (``--color auto``, unless NO_COLOR is set)."""
    return fmt == "terminal" and out is None and (
        choice == "always" or (choice == "auto" and sys.stdout.isatty()
                               and not os.environ.get("NO_COLOR")))
