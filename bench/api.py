"""The Python API, the core that `bench run`, `bench report`, `bench plot` and the SLURM jobs
call: build a sweep, plan it, execute it, read its results.

    import bench
    sweep = bench.Sweep(methods="zero_shot,linear_probe", shots=[1, 2], seeds=[1],
                        output="runs/a")          # the demo; data_root=... for real data
    plan = sweep.plan()                          # cells, jobs, plan.n_done / plan.n_todo
    bench.execute(plan)                          # resumable: done cells are skipped
    cells = bench.cells("runs/a")                # one row per record (seed)
    table = bench.summary("runs/a")              # mean/std per dataset, method, shots
    print(bench.report("runs/a", format="markdown"))

A :class:`Sweep` holds the explicit values (the `bench run` flags, as Python values); the sweep
file (``config=``) and the defaults fill the rest, with the command line's rule and error
messages (bench/resolve.py). Errors a user can fix raise :class:`bench.base.errors.UsageError`
(or another ``BenchError``) with the one line the command prints. ``bench.run`` and
``bench.load`` are the short forms: plan + execute + summary, and summary.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from bench.execution import Outcome, Plan


@dataclass
class Sweep:
    """A sweep's explicit values, named as `bench run`'s flags (``data_root`` for
    ``--data-root``, ``overrides`` for ``--set``); None = not given (the sweep file's value,
    else the default). Lists or comma strings for methods, datasets, shots, seeds."""

    methods: str | list | None = None
    datasets: str | list | None = None
    shots: str | int | list | None = None
    seeds: str | int | list | None = None
    protocol: str | None = None
    source: str | None = None
    backbone: str | None = None
    pretrained: str | None = None
    data_root: str | Path | None = None
    output: str | Path | None = None
    cache_dir: str | Path | None = None
    device: str | None = None
    config: str | Path | None = None  # the sweep YAML
    overrides: list | dict | None = None  # --set: ["method.key=value", ...] or {key: value}
    include: list | None = None  # plugin paths (--include)
    launcher: str | None = None
    group_by: str | None = None
    batch_size: int | None = None
    workers: int | None = None
    autocast: str | None = None
    decode: str | None = None
    cache_dtype: str | None = None
    fit_threads: int | None = None
    joint_fits: str | int | None = None
    determinism: str | None = None
    quiet: bool = False
    progress_every: float = 30.0
    # SLURM (bench/slurm/options.py)
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time: str | int | None = None
    gpus_per_job: int | None = None
    cpus_per_job: int | None = None
    mem: str | None = None
    array_parallelism: int | None = None
    sbatch_args: list | None = None
    submitit_dir: str | None = None
    max_requeue: int | None = None
    wait: bool = True  # False: submit SLURM / local jobs and return (--no-wait)
    _resolved: object = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        for name in ("methods", "datasets", "shots", "seeds", "include", "sbatch_args"):
            value = getattr(self, name)
            if isinstance(value, tuple):
                setattr(self, name, list(value))
        if isinstance(self.include, (str, Path)):
            self.include = [self.include]
        if isinstance(self.sbatch_args, str):
            self.sbatch_args = [self.sbatch_args]
        if isinstance(self.overrides, dict):
            self.overrides = [f"{k}={v}" for k, v in self.overrides.items()]
        elif isinstance(self.overrides, str):
            self.overrides = [self.overrides]
        for name in ("data_root", "output", "cache_dir", "config"):
            value = getattr(self, name)
            if isinstance(value, Path):
                setattr(self, name, str(value))

    def resolve(self):
        """Everything the run needs (bench.resolve.RunConfig), validated; plugins of
        ``include`` are registered first."""
        if self._resolved is None:
            from bench.resolve import resolve

            if self.include:
                from bench.base.plugins import include

                include(self.include)
            self._resolved = resolve(self)
        return self._resolved

    def plan(self) -> Plan:
        """The grid's cells and the jobs of those not done (notes go to stderr)."""
        from bench.execution import plan

        return plan(self.resolve())


def sweep_fields() -> list[str]:
    """The names a :class:`Sweep` takes (bench.run's keywords)."""
    return [f.name for f in fields(Sweep) if f.init]


def execute(what: Sweep | Plan, *, launcher: str | None = None) -> Outcome:
    """Run a sweep or a plan (in this process, local subprocesses or SLURM: ``launcher``
    overrides the sweep's); resumable. Returns the counts (bench.execution.Outcome)."""
    from bench.execution import execute as run_plan

    if isinstance(what, Sweep):
        what = (replace(what, launcher=launcher) if launcher else what).plan()
    elif launcher and launcher != what.config.launcher:
        from bench.base.errors import UsageError

        raise UsageError(f"bench.execute: this plan was checked for launcher "
                         f"{what.config.launcher}; give launcher={launcher!r} to the Sweep, or "
                         f"call execute(sweep, launcher={launcher!r})")
    return run_plan(what)


def _selection(output, methods=None, datasets=None, shots=None, backbone=None, compare=None):
    from bench.reporting import Selection

    return Selection(output, methods=methods, datasets=datasets, shots=shots,
                     backbone=backbone, compare=compare)


def cells(output, methods=None, datasets=None, shots=None, backbone=None, *,
          protocol: str | None = None, include_failed: bool = True):
    """One row per record under ``output`` (results/frames.py: accuracy, per-class mean
    accuracy, ``selected.*``, ``timings.*``, ``evaluations.*``, config, status, ...); the
    selection works as `bench report`'s flags; ``protocol``: only that protocol's records."""
    from bench.reporting import _split, parse_shots, read_records
    from results.aggregate import select
    from results.frames import cells_frame

    sel = _selection(output, methods, datasets, shots, backbone)
    records = read_records(sel, protocol) if protocol else _all_records(sel)
    frame = cells_frame(r for r in records if include_failed or r.get("status") == "ok")
    chosen = select(frame.assign(method_label=frame["method"]), methods=_split(sel.methods),
                    datasets=_split(sel.datasets), shots=parse_shots(sel.shots),
                    backbones=_split(sel.backbone))
    return chosen.drop(columns="method_label").reset_index(drop=True)


def _all_records(sel) -> list[dict]:
    from bench.reporting import all_records

    return all_records(sel)


def summary(output, methods=None, datasets=None, shots=None, backbone=None, *, include=None,
            protocol: str = "fewshot"):
    """The aggregate frame `bench report` prints, as the tidy rows of its CSV: one row per
    (backbone, dataset or ``average``, method row, shots) with mean, std (to 4 decimals, as the
    CSV), n, n_failed, ... (columns ``results.tables.CSV_COLUMNS``). Selections take lists or
    comma strings. ``protocol`` base2novel, domain or crossdataset: that protocol's frame (an
    ``evaluation`` column: base / novel / hm, or top1; the ``source`` of transfer results;
    columns ``results.protocols.CSV_COLUMNS``). ``include``: plugin paths, for display names."""
    import pandas as pd

    from bench.reporting import load_summary, protocol_tables

    if include:
        from bench.base.plugins import include as add_include

        add_include(include)
    sel = _selection(output, methods, datasets, shots, backbone)
    if protocol != "fewshot":
        from results.protocols import CSV_COLUMNS, MEAN_STD

        rows = protocol_tables(sel, protocol)[1]
    else:
        from results.tables import CSV_COLUMNS, MEAN_STD, csv_rows

        found, labels, _ = load_summary(sel)
        rows = csv_rows(found, labels)
    frame = pd.DataFrame(rows, columns=CSV_COLUMNS)
    for i in MEAN_STD:  # as the CSV has them
        name = CSV_COLUMNS[i]
        frame[name] = pd.to_numeric(frame[name], errors="coerce").astype(float).round(4)
    return frame


def report(output, methods=None, datasets=None, shots=None, backbone=None, *,
           format: str = "terminal", layout: str = "all", compare: str | None = None,
           protocol: str | None = None, standalone: bool = False, color: bool = False,
           significance: str | None = None, ci: str | None = None) -> str:
    """The text `bench report` prints (``format`` terminal, markdown, latex or csv);
    ``significance`` (seeds, bootstrap, mcnemar) and ``ci`` (seeds, bootstrap) as its flags."""
    from bench.reporting import report_text

    return report_text(_selection(output, methods, datasets, shots, backbone, compare), format,
                       layout=layout, color=color, standalone=standalone, protocol=protocol,
                       significance=significance, ci=ci)


def compare(output, a: str, b: str | None = None, *, against=None, test: str = "seeds",
            across: str = "wilcoxon", datasets=None, shots=None, backbone=None,
            alpha: float = 0.05, resamples: int = 10_000, allow_incomparable: bool = False):
    """`bench compare` as a frame: row ``a`` vs row ``b`` of ``output`` (an output folder or a
    `bench export` file), or ``b`` (default ``a``) of ``against``; one row per (backbone,
    dataset or ``average``, shots) with diff, ci_low/ci_high, p, p_holm, significant, p_across,
    ... (``results.significance.COLUMNS``; docs/statistics.md). Problems raise
    ``bench.base.errors.UsageError`` with the command's one-line message."""
    from bench.reporting import compare_rows

    return compare_rows(output, a, b, against=against, test=test, across=across,
                        datasets=datasets, shots=shots, backbone=backbone, alpha=alpha,
                        resamples=resamples, allow_incomparable=allow_incomparable).frame


def plot(output, methods=None, datasets=None, shots=None, backbone=None, *, out=None,
         formats=("png", "pdf"), compare: str | None = None, ncols: int = 4,
         dpi: int = 150) -> list[Path]:
    """`bench plot`: few-shot curves, one figure per backbone; the files written."""
    from bench.reporting import plot_curves

    written = plot_curves(_selection(output, methods, datasets, shots, backbone, compare),
                          out=out, formats=list(formats), ncols=ncols, dpi=dpi)
    return [path for _, _, paths in written for path in paths]


_ALIASES = {"set": "overrides", "sbatch_arg": "sbatch_args"}  # flag names whose field differs


def run(methods=None, datasets=None, shots=None, seeds=None, *, output="bench-results",
        quiet=True, **options):
    """Run (or resume) a sweep like `bench run` and return its :func:`summary`, restricted to
    this sweep's methods, datasets and shots.

    Takes the :class:`Sweep`'s keywords (any `bench run` flag, named as the flag:
    ``data_root=``, ``device="cpu"``, ``launcher="local"``, ``config=...``; ``set=`` or
    ``overrides=``: ``{"key": value}`` or ``["method.key=value", ...]``; ``no_wait=True``).
    A failed cell does not raise: it shows in the frame's ``n_failed`` (and a warning).
    """
    for flag, name in _ALIASES.items():
        if flag in options:
            options[name] = options.pop(flag)
    if options.pop("no_wait", False):
        options["wait"] = False
    dry_run = options.pop("dry_run", False)
    known = set(sweep_fields())
    for name in options:
        if name not in known:
            raise TypeError(f"bench.run() got an unexpected keyword argument {name!r}; it takes "
                            f"the flags of `bench run`: {', '.join(sorted(known | {'dry_run'}))}")
    sweep = Sweep(methods=methods, datasets=datasets, shots=shots, seeds=seeds, output=output,
                  quiet=quiet, **{k: v for k, v in options.items() if v is not None})
    planned = sweep.plan()
    if not dry_run:
        outcome = execute(planned)
        if outcome.code:
            warnings.warn(f"bench.run: some cells failed (exit code {outcome.code}); see n_failed, "
                          f"`bench status {planned.config.output}` and the .failed.json records",
                          stacklevel=2)
    cfg = planned.config
    return summary(cfg.output, methods=_labels(cfg.methods), datasets=cfg.datasets + cfg.targets,
                   shots=cfg.shots, protocol=cfg.protocol)


def _labels(specs) -> list[str]:
    """The report's method labels of this run's methods (``name:variant``, the default variant
    when none was asked), so that other variants in the same folder stay out."""
    from bench.config import load_method_file

    labels = []
    for spec in specs:
        variant = spec.variant or load_method_file(spec.name).get("default_variant")
        labels.append(f"{spec.name}:{variant}" if variant else spec.name)
    return list(dict.fromkeys(labels))


load = summary  # bench.load(output, ...): the name README used first
