"""Reading an output folder: select and aggregate its records (the summary `bench report` and
`bench plot` show), the tables of every protocol, the comparison with published numbers, and
the report text in each format. The command line and :mod:`bench.api` call these; nothing here
parses flags or prints tables (notes on what was set aside go to stderr).

``sel`` below is a :class:`Selection`: the output folder and what to keep of it, as `bench
report`'s selection flags (comma strings or lists; ``None`` = all found).
"""

from __future__ import annotations

import fnmatch
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.base.errors import UsageError
from bench.base.registry import unknown_name_message

FORMATS = ("terminal", "markdown", "latex", "csv")
LAYOUTS = ("all", "main", "per-shot")


@dataclass
class Selection:
    """An output folder and the methods, datasets, shots and backbones to report of it."""

    output: Path  # an output folder, or a `bench export` file
    methods: str | list | None = None
    datasets: str | list | None = None
    shots: str | list | None = None
    backbone: str | list | None = None
    compare: str | None = None  # "published": the shipped reference numbers beside ours
    more: tuple = ()  # further folders or export files, read as one with ``output``

    def __post_init__(self):
        if isinstance(self.output, (list, tuple)):  # several sources given as one list
            self.output, self.more = self.output[0], (*self.output[1:], *self.more)
        self.output = Path(self.output)
        self.more = tuple(Path(m) for m in self.more)
        for key in ("methods", "datasets", "shots", "backbone"):
            value = getattr(self, key)
            if isinstance(value, (list, tuple)):
                setattr(self, key, ",".join(str(v) for v in value))
            elif value is not None and not isinstance(value, str):
                setattr(self, key, str(value))


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


def sources(sel) -> list[Path]:
    """The folders and export files ``sel`` reads, in order (each once)."""
    return list(dict.fromkeys([Path(sel.output), *getattr(sel, "more", ())]))


_UNPACKED: list = []  # temporary folders holding exports' prediction files, for this process


def source_records(path: Path) -> list[dict]:
    """Every sound record (failed ones too) of an output folder, or of a `bench export` file
    (its predictions unpacked into a temporary folder kept until the process ends, so that
    significance tests read them as from a folder)."""
    from results.store import ResultStore

    path = Path(path)
    if path.is_file():
        import tempfile

        from results.export import read_export

        if not _UNPACKED:
            _UNPACKED.append(tempfile.TemporaryDirectory(prefix="bench-export-"))
        unpack = Path(_UNPACKED[0].name) / str(len(list(Path(_UNPACKED[0].name).iterdir())))
        try:
            return read_export(path, unpack_to=unpack)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    store = ResultStore(path)
    if not store.results_dir.is_dir():
        raise UsageError(f"no results in {path}: {store.results_dir} does not exist "
                         f"(run `bench run --output {path} ...` first, or name a `bench export` "
                         f"file)")
    records = list(store.iter_records(include_failed=True))
    _note_set_aside(store)
    return records


def all_records(sel) -> list[dict]:
    """The records of every source of ``sel``; a cell found in two sources counts once (the
    newest record, as within one folder), and cells whose bits differ between sources are
    named in a note."""
    paths = sources(sel)
    records = [r for path in paths for r in source_records(path)]
    if len(paths) > 1:
        _note_shared_cells(records)
    return records


def _note_shared_cells(records: list[dict]) -> None:
    from results.records import cell_id

    seen: dict[str, set] = {}
    for r in records:
        if r.get("status") == "ok":
            seen.setdefault(cell_id(r), set()).add(r.get("logits_sha256"))
    differ = [c for c, bits in seen.items() if len(bits) > 1]
    extra = sum(1 for r in records if r.get("status") == "ok") - len(seen)
    if extra:
        print(f"bench: note: {extra} record(s) repeat a cell of another source: each cell "
              f"counts once (the newest record)"
              + (f"; {len(differ)} of them have other bits in another source (other hardware "
                 f"or settings: compare the records' determinism blocks)" if differ else ""),
              file=sys.stderr)


def read_records(sel, protocol: str = "fewshot", records: list[dict] | None = None) -> list[dict]:
    """The sound records of ``protocol`` in ``sel``'s sources, or among ``records`` already read
    from them (notes on what was set aside, and on records of other protocols, go to stderr)."""
    from collections import Counter

    from results.protocols import of_protocol, protocol_of

    records = all_records(sel) if records is None else records
    others = Counter(protocol_of(r) for r in records if protocol_of(r) != protocol)
    mine = of_protocol(records, protocol)
    if others:
        found = ", ".join(f"{n} {p}" for p, n in sorted(others.items()))
        print(f"bench: note: {found} record(s) of other protocols are not in this report "
              f"(bench report {sel.output} --protocol NAME)", file=sys.stderr)
    if not mine and records:
        raise UsageError(f"no {protocol} results in {sel.output}; it holds "
                         f"{', '.join(sorted(others))} results: see them with `bench report "
                         f"{sel.output} --protocol {sorted(others)[0]}`")
    return mine


def load_summary(sel, records: list[dict] | None = None, *, required: list[str] | None = None,
                 labels=None):
    """Read (or take), select and aggregate the records that ``sel`` asks for; clear errors
    otherwise. Notes on what was set aside (damaged, superseded, duplicates) go to stderr.
    ``required``: the datasets the average needs, instead of those ``sel`` names."""
    from results.aggregate import records_to_frame, select, summarize

    if records is None:
        records = read_records(sel)
    frame = records_to_frame(records, _default_config())
    if frame.empty:
        raise UsageError(f"no usable result records in {', '.join(map(str, sources(sel)))}")
    methods, datasets = _split(sel.methods), _split(sel.datasets)
    backbones, shots = _split(sel.backbone), parse_shots(sel.shots)
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


def found_protocol(sel, records: list[dict]) -> str:
    """The protocol a report shows when none is asked for: fewshot, unless ``records`` (all of
    ``sel``'s) hold results of exactly one other protocol and none of fewshot (then that one,
    with a note)."""
    from results.protocols import protocol_of

    found = {protocol_of(r) for r in records}
    if "fewshot" in found or len(found) != 1:
        return "fewshot"
    (only,) = found
    print(f"bench: note: {sel.output} holds {only} results only: showing them (as with "
          f"--protocol {only})", file=sys.stderr)
    return only


def protocol_tables(sel, protocol: str, records: list[dict] | None = None
                    ) -> tuple[list, list[list]]:
    """The base-to-novel or transfer tables of ``sel``'s sources (or of ``records`` read from
    them) and their tidy rows (results/protocols.py: ``csv_rows``)."""
    from bench.protocols import check_protocol
    from results import protocols as rp

    check_protocol(protocol)
    records = read_records(sel, protocol, records)
    labels = _registry_labels()
    tables, rows = [], []
    if protocol == "base2novel":
        summaries = {part: load_summary(sel, rp.part_records(records, part), labels=labels)[0]
                     for part in rp.PARTS}
        tables = rp.base2novel_tables(summaries["base"], summaries["novel"], labels[0])
        rows += rp.csv_rows(protocol, summaries, labels[0])
    else:
        exploded = rp.target_records(records)
        for source in sorted({r["source"] for r in exploded}):
            mine = [r for r in exploded if r["source"] == source]
            targets = sorted({r["dataset"] for r in mine} - {source})
            asked = _split(sel.datasets)
            if asked:
                targets = [t for t in targets if any(fnmatch.fnmatchcase(t, a) for a in asked)]
            summary = load_summary(sel, mine, required=targets or None, labels=labels)[0]
            tables += rp.transfer_tables(summary, labels[0], protocol, source)
            rows += rp.csv_rows(protocol, {"top1": summary}, labels[0], source)
    return tables, rows


def report_text(sel: Selection, fmt: str = "terminal", *, layout: str = "all",
                color: bool = False, standalone: bool = False,
                protocol: str | None = None, significance: str | None = None,
                ci: str | None = None) -> str:
    """The text `bench report` prints: ``fmt`` terminal, markdown, latex or csv; ``layout`` all,
    main or per-shot (few-shot); ``protocol`` None = fewshot, or the one protocol the folder holds
    when it holds no few-shot results; ``significance`` (a test) marks cells significantly below
    their column's best and ``ci`` (seeds or bootstrap) shows intervals (docs/statistics.md)."""
    from results.tables import (build_tables, render_comparison, render_csv, render_latex,
                                render_text)

    everything = all_records(sel)  # read once: the protocol shown, then its records
    protocol = protocol or found_protocol(sel, everything)
    if protocol != "fewshot":
        return _protocol_text(sel, protocol, everything, fmt, layout=layout, color=color,
                              standalone=standalone)
    records = read_records(sel, records=everything)
    summary, labels, coop = load_summary(sel, records)
    tables = build_tables(summary, labels, per_shot=layout != "main")
    if layout == "per-shot":
        tables = [t for t in tables if t.group != "Shots"]
    if significance or ci:
        _significance(tables, records, summary, significance, ci)
    comparison = published_comparison(summary, labels, coop) if sel.compare else None

    if fmt == "csv":
        text = render_csv(summary, labels)
        if comparison is not None:  # CSV: the comparison replaces the table (one tidy table)
            text = render_comparison(comparison[0], labels, "csv")
    elif fmt == "latex":
        text = render_latex(tables, standalone=standalone)
        if comparison is not None:
            extra = render_comparison(comparison[0], labels, "latex")
            if standalone:
                text = text.replace("\\end{document}", extra + "\\end{document}")
            else:
                text += "\n" + extra
    else:
        text = render_text(tables, fmt, color=color)
        if comparison is not None:
            text += "\n" + render_comparison(comparison[0], labels, fmt, comparison[1])
    return text


def _significance(tables, records, summary, test: str | None, ci: str | None) -> None:
    """``--significance`` marks and ``--ci`` intervals (results/significance.py), in place."""
    from results import significance

    try:
        if ci:
            significance.add_intervals(tables, records, summary, kind=ci,
                                       default_config=_default_config())
        if test:
            significance.mark_tables(tables, records, summary, test=test,
                                     default_config=_default_config())
    except ValueError as exc:  # no predictions stored, a damaged file, unpaired test images
        raise UsageError(str(exc)) from None


def _protocol_text(sel: Selection, protocol: str, records: list[dict], fmt: str, *,
                   layout: str, color: bool, standalone: bool) -> str:
    """The report of the base2novel, domain or crossdataset results."""
    from results.tables import render_latex, render_text

    if sel.compare:
        raise UsageError(f"--compare published has few-shot numbers only; leave it out with "
                         f"--protocol {protocol}")
    if layout != "all":
        raise UsageError(f"--layout is for the few-shot tables; --protocol {protocol} has one "
                         f"layout")
    tables, rows = protocol_tables(sel, protocol, records)
    if fmt == "csv":
        from results.protocols import render_csv

        return render_csv(rows)
    if fmt == "latex":
        return render_latex(tables, standalone=standalone)
    return render_text(tables, fmt, color=color)


PLOT_FORMATS = ("png", "pdf", "svg")


def plot_curves(sel: Selection, *, out: Path | None = None, formats=("png", "pdf"),
                ncols: int = 4, dpi: int = 150) -> list[tuple[str, list[str], list[Path]]]:
    """`bench plot`'s figures, one per backbone (OUTPUT/plots/curves-<backbone>.<format>, or
    ``out``): [(backbone name, panel titles, files written)]. Notes go to stderr."""
    summary, labels, coop = load_summary(sel)
    if len(summary.backbones) > 1 and out is not None:
        raise UsageError(f"the results hold {len(summary.backbones)} backbones "
                         f"({', '.join(sorted(summary.backbones))}); with --out, choose one "
                         f"with --backbone")
    comparison, notes = (published_comparison(summary, labels, coop) if sel.compare
                         else (None, []))

    from results.plots import panel_titles, plot_curves as plot_figure, save_figure

    written = []
    for bb in sorted(summary.backbones):
        fig = plot_figure(summary, bb, labels, published=comparison, ncols=ncols)
        titles = panel_titles(fig)
        if out is not None:
            stem = Path(out)
            if stem.suffix.lower().lstrip(".") in PLOT_FORMATS:
                stem = stem.with_suffix("")
        elif sel.output.is_file():
            raise UsageError(f"{sel.output} is an export file: give --out DIR/NAME for the "
                             f"plots")
        else:
            stem = sel.output / "plots" / f"curves-{bb}"
        written.append((summary.backbones[bb], titles, save_figure(fig, stem, formats, dpi=dpi)))
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    return written


# ----------------------------------------------------------------------------- compare
def compare_rows(output, a: str, b: str | None = None, *, against=None, test: str = "seeds",
                 across: str = "wilcoxon", datasets=None, shots=None, backbone=None,
                 alpha: float = 0.05, resamples: int = 10_000, allow_incomparable: bool = False):
    """Row ``a`` vs row ``b`` (default ``a``, from ``against``) of ``output`` (a folder or an
    export file): a ``results.significance`` table (its ``frame``, ``notes``). Selections take
    lists or comma strings; every problem is a UsageError with one line (docs/statistics.md)."""
    from results import significance

    b = a if b is None else b
    if against is None and a == b:
        raise UsageError(f"--methods {a}: name two rows, A,B (or one with --against)")
    if not 0 < alpha < 1:
        raise UsageError(f"--alpha {alpha}: use a level between 0 and 1, e.g. 0.05")
    if resamples < 100:
        raise UsageError(f"--resamples {resamples}: use at least 100 (default 10000)")

    def listed(value):
        return _split(value) if value is None or isinstance(value, str) else list(value)

    shots = parse_shots(shots) if shots is None or isinstance(shots, str) else list(shots)
    records_a = all_records(Selection(output))
    records_b = None if against is None else all_records(Selection(against))
    try:
        table = significance.compare(
            records_a, a, b, records_b=records_b, test=test, across=across,
            datasets=listed(datasets), shots=shots, backbones=listed(backbone), alpha=alpha,
            resamples=resamples, default_config=_default_config(),
            allow_incomparable=allow_incomparable)
    except ValueError as exc:  # unknown rows, facts, missing or unpaired predictions
        raise UsageError(str(exc)) from None
    if table.frame["p"].notna().sum() == 0:
        raise UsageError(f"{a} and {b} share no cell to compare (the same dataset, shots and "
                         f"seed): {'; '.join(table.notes) or 'none found'}")
    return table
