"""`bench report OUTPUT`: tables of the results under an output folder.

The main layout (methods × shot counts, averaged over datasets) and, per shot count, methods ×
datasets plus an Average column; mean ± std over seeds with the number of seeds behind each cell.
``--compare published`` adds the shipped reference numbers where the protocol matches.
See docs/reports.md.
"""

from __future__ import annotations

import fnmatch
import os
import sys
from pathlib import Path

from bench.base.errors import UsageError
from bench.base.registry import unknown_name_message

FORMATS = ("terminal", "markdown", "latex", "csv")


# ----------------------------------------------------------------------------- shared with plot
def add_selection_args(p) -> None:
    p.add_argument("output", metavar="OUTPUT", type=Path,
                   help="the output folder of `bench run` (holds results/)")
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


def _split(text: str | None) -> list[str] | None:
    if text is None:
        return None
    items = [s.strip() for s in text.split(",") if s.strip()]
    return items or None


def parse_shots(text: str | None) -> list[int] | None:
    """The --shots filter, sorted; parsed and checked like `bench run --shots`."""
    from bench.sweep import parse_int_list

    return None if text is None else sorted(parse_int_list(text, "--shots"))


def _check_names(kind: str, asked: list[str] | None, present: set[str]) -> None:
    for name in asked or []:
        if not any(fnmatch.fnmatchcase(p, name) for p in present):
            raise UsageError(unknown_name_message(kind, name, present).replace(
                f"(see `bench ls {kind}s`)", "(found in the results)"))


def _registry_labels():
    """Display names and order from the method and dataset registries; raw keys when a registry
    cannot be loaded (the tables still work)."""
    from results.aggregate import Labels

    labels = Labels()
    coop: list[str] = []
    try:
        from bench.catalog import method_catalog
        from bench.config import load_method_file

        catalog = method_catalog()  # read from source: no torch import for a report
        labels.methods = {e.name: (e.display_name, e.order) for e in catalog}
        labels.default_variants = {e.name: load_method_file(e.name).get("default_variant")
                                   for e in catalog}
    except Exception as exc:  # a broken method module must not break reports
        print(f"bench: warning: method registry not loaded ({exc}); showing raw names",
              file=sys.stderr)
    try:
        from datasets_registry import COOP_TAG, DATASETS

        labels.datasets = {e.name: (e.display_name, e.order) for e in DATASETS.entries()}
        coop = DATASETS.names(COOP_TAG)
    except Exception as exc:
        print(f"bench: warning: dataset registry not loaded ({exc}); showing raw names",
              file=sys.stderr)
    return labels, coop


def _default_config():
    """``(method, variant, dataset, shots, protocol) -> the config bench would run today`` (None
    for a method without a config file): a row's label names the values that differ from it."""
    from bench.config import MethodSpec, method_file, resolve_method_config

    cache: dict = {}

    def resolve(method, variant, dataset, shots, protocol="fewshot"):
        key = (method, variant, dataset, shots, protocol)
        if key not in cache:
            cache[key] = (resolve_method_config(MethodSpec(method, variant), dataset, shots,
                                                protocol=protocol)[1]
                          if method_file(method).is_file() else None)
        return cache[key]

    return resolve


def read_records(args, protocol: str = "fewshot") -> list[dict]:
    """The sound records of ``protocol`` under ``args.output`` (notes on what was set aside, and
    on records of other protocols, go to stderr)."""
    from collections import Counter

    from results.protocols import of_protocol, protocol_of
    from results.store import ResultStore

    store = ResultStore(args.output)
    if not store.results_dir.is_dir():
        raise UsageError(f"no results in {args.output}: {store.results_dir} does not exist "
                         f"(run `bench run --output {args.output} ...` first)")
    records = list(store.iter_records(include_failed=True))
    _note_set_aside(store)
    others = Counter(protocol_of(r) for r in records if protocol_of(r) != protocol)
    mine = of_protocol(records, protocol)
    if others:
        found = ", ".join(f"{n} {p}" for p, n in sorted(others.items()))
        print(f"bench: note: {found} record(s) of other protocols are not in this report "
              f"(bench report {args.output} --protocol NAME)", file=sys.stderr)
    if not mine and records:
        raise UsageError(f"no {protocol} results in {args.output}; it holds "
                         f"{', '.join(sorted(others))} results: see them with `bench report "
                         f"{args.output} --protocol {sorted(others)[0]}`")
    return mine


def load_summary(args, records: list[dict] | None = None, *, required: list[str] | None = None,
                 labels=None):
    """Read (or take), select and aggregate the records that ``args`` ask for; clear errors
    otherwise. Notes on what was set aside (damaged, superseded, duplicates) go to stderr.
    ``required``: the datasets the average needs, instead of those ``args`` name."""
    from results.aggregate import records_to_frame, select, summarize

    if records is None:
        records = read_records(args)
    frame = records_to_frame(records, _default_config())
    if frame.empty:
        raise UsageError(f"no usable result records under {args.output}/results")
    methods, datasets = _split(args.methods), _split(args.datasets)
    backbones, shots = _split(args.backbone), parse_shots(args.shots)
    _check_names("method", methods, set(frame["method_label"]) | set(frame["method_base"]))
    _check_names("dataset", [d for d in datasets or [] if not any(c in d for c in "*?[")],
                 set(frame["dataset"]))
    _check_names("backbone", backbones, set(frame["backbone"]) | set(frame["backbone_name"]))
    chosen = select(frame, methods=methods, datasets=datasets, shots=shots, backbones=backbones)
    if chosen.empty:
        raise UsageError(f"no results match the selection; found shots "
                         f"{sorted(set(frame['shots']))}, datasets "
                         f"{sorted(set(frame['dataset']))}, methods "
                         f"{sorted(set(frame['method_label']))}")
    exact = [d for d in datasets or [] if not any(c in d for c in "*?[")]
    if required is None:
        required = exact if datasets and len(exact) == len(datasets) else None
    summary = summarize(chosen, datasets=required, shots=shots)
    if summary.duplicates:
        print(f"bench: note: {summary.duplicates} record(s) set aside: older copies of the same "
              f"cell, seed and identity (the newest counts)", file=sys.stderr)
    if labels is not None:
        return summary, labels[0], labels[1]
    labels, coop = _registry_labels()
    return summary, labels, coop


def _note_set_aside(store) -> None:
    if store.damaged:
        print(f"bench: note: {len(store.damaged)} damaged record(s) set aside (named above); "
              f"`bench run` computes their cells again", file=sys.stderr)
    superseded = store.superseded()
    if superseded:
        print(f"bench: note: {len(superseded)} record(s) set aside in {store.superseded_dir}: "
              f"replaced by runs with other inputs (or damaged); reports never read them",
              file=sys.stderr)


def published_comparison(summary, labels, coop):
    from results.published import compare, load_published

    try:
        published = load_published()
    except ValueError as exc:
        raise UsageError(f"the shipped published numbers cannot be read: {exc}") from None
    return compare(summary, published, backbone_names=summary.backbone_info,
                   average_datasets=coop, method_names=labels.method_name,
                   default_variants=labels.default_variants)


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
    p.add_argument("--format", choices=FORMATS, default="terminal", dest="fmt",
                   help="terminal (default), markdown, latex (booktabs) or csv (tidy, one row "
                        "per cell)")
    p.add_argument("--out", type=Path, default=None, help="write to FILE instead of stdout")
    p.add_argument("--layout", choices=["all", "main", "per-shot"], default="all",
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
    p.set_defaults(func=run)


def found_protocol(output: Path) -> str:
    """The protocol a report shows when none is asked for: fewshot, unless ``output`` holds
    results of exactly one other protocol and none of fewshot (then that one, with a note)."""
    from results.protocols import protocol_of
    from results.store import ResultStore

    store = ResultStore(output)
    found = {protocol_of(r) for r in store.iter_records(include_failed=True)}
    if "fewshot" in found or len(found) != 1:
        return "fewshot"
    (only,) = found
    print(f"bench: note: {output} holds {only} results only: showing them (as with --protocol "
          f"{only})", file=sys.stderr)
    return only


def run(args) -> int:
    from results.tables import (build_tables, render_comparison, render_csv, render_latex,
                                render_text)

    protocol = getattr(args, "protocol", None) or found_protocol(args.output)
    if protocol != "fewshot":
        return _run_protocol(args, protocol)
    summary, labels, coop = load_summary(args)
    tables = build_tables(summary, labels, per_shot=args.layout != "main")
    if args.layout == "per-shot":
        tables = [t for t in tables if t.group != "Shots"]
    comparison = published_comparison(summary, labels, coop) if args.compare else None

    if args.fmt == "csv":
        text = render_csv(summary, labels)
        if comparison is not None:  # CSV: the comparison replaces the table (one tidy table)
            text = render_comparison(comparison[0], labels, "csv")
    elif args.fmt == "latex":
        text = render_latex(tables, standalone=args.standalone)
        if comparison is not None:
            extra = render_comparison(comparison[0], labels, "latex")
            if args.standalone:
                text = text.replace("\\end{document}", extra + "\\end{document}")
            else:
                text += "\n" + extra
    else:
        text = render_text(tables, args.fmt, color=_use_color(args))
        if comparison is not None:
            text += "\n" + render_comparison(comparison[0], labels, args.fmt, comparison[1])
    _write(text, args.out)
    return 0


def protocol_tables(args, protocol: str) -> tuple[list, str]:
    """The base-to-novel or transfer tables of ``args.output`` and their tidy CSV
    (results/protocols.py)."""
    from bench.protocols import check_protocol
    from results import protocols as rp

    check_protocol(protocol)
    records = read_records(args, protocol)
    labels = _registry_labels()
    tables, csv_parts = [], []
    if protocol == "base2novel":
        summaries = {part: load_summary(args, rp.part_records(records, part), labels=labels)[0]
                     for part in rp.PARTS}
        tables = rp.base2novel_tables(summaries["base"], summaries["novel"], labels[0])
        csv_parts.append(rp.render_csv(protocol, summaries, labels[0]))
    else:
        exploded = rp.target_records(records)
        for source in sorted({r["source"] for r in exploded}):
            mine = [r for r in exploded if r["source"] == source]
            targets = sorted({r["dataset"] for r in mine} - {source})
            asked = _split(args.datasets)
            if asked:
                targets = [t for t in targets if any(fnmatch.fnmatchcase(t, a) for a in asked)]
            summary = load_summary(args, mine, required=targets or None, labels=labels)[0]
            tables += rp.transfer_tables(summary, labels[0], protocol, source)
            csv_parts.append(rp.render_csv(protocol, {"top1": summary}, labels[0], source,
                                           header=not csv_parts))
    return tables, "".join(csv_parts)


def _use_color(args) -> bool:
    """ANSI bold for the terminal format on a tty (``--color auto``, unless NO_COLOR is set)."""
    return args.fmt == "terminal" and args.out is None and (
        args.color == "always" or (args.color == "auto" and sys.stdout.isatty()
                                   and not os.environ.get("NO_COLOR")))


def _run_protocol(args, protocol: str) -> int:
    """`bench report --protocol base2novel|domain|crossdataset`."""
    from results.tables import render_latex, render_text

    if args.compare:
        raise UsageError(f"--compare published has few-shot numbers only; leave it out with "
                         f"--protocol {protocol}")
    if args.layout != "all":
        raise UsageError(f"--layout is for the few-shot tables; --protocol {protocol} has one "
                         f"layout")
    tables, csv_text = protocol_tables(args, protocol)
    if args.fmt == "csv":
        text = csv_text
    elif args.fmt == "latex":
        text = render_latex(tables, standalone=args.standalone)
    else:
        text = render_text(tables, args.fmt, color=_use_color(args))
    _write(text, args.out)
    return 0
