"""The Python API: run a sweep and read results as a pandas DataFrame, for notebooks and scripts.

    import bench
    df = bench.run(methods="zero_shot,linear_probe", datasets="dtd", shots=[1, 2], seeds=[1],
                   data_root="~/data", output="runs/a")
    df = bench.load("runs/a")          # the same tidy frame as `bench report --format csv`

Both go through the command line's own code: ``run`` parses its keywords with the `bench run`
parser and calls the command (resolve, planner, runner, launchers: resumable, same records);
``load`` reads, selects and aggregates like `bench report` and returns the rows its CSV has.
Errors a user can fix raise :class:`bench.base.errors.UsageError` (or another ``BenchError``) with
the same one-line message the command prints.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from argparse import Namespace
from pathlib import Path


def _flag_value(name: str, value) -> str:
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(f"bench.run: {name} is empty")
        return ",".join(str(v) for v in value)
    return str(value)


def _run_parser():
    from bench.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")  # noqa: SLF001
    return parser, sub.choices["run"]


def _flag_keywords(run_parser) -> dict:
    """keyword -> argparse action: each flag's name (``--data-root`` -> ``data_root``, ``--set``
    -> ``set``) and its destination (``overrides`` for ``--set``) both work."""
    flags = {}
    for action in run_parser._actions:  # noqa: SLF001
        if action.option_strings:
            flags[action.dest] = action
            for option in action.option_strings:
                if option.startswith("--"):
                    flags[option[2:].replace("-", "_")] = action
    return flags


def _argv(kwargs: dict, run_parser) -> list[str]:
    """Keyword arguments -> `bench run` flags (``data_root`` -> ``--data-root``)."""
    flags = _flag_keywords(run_parser)
    argv = ["run"]
    for name, value in kwargs.items():
        if value is None or value is False:
            continue
        if name not in flags:
            known = ", ".join(sorted(d for d in flags if d != "help"))
            raise TypeError(f"bench.run() got an unexpected keyword argument {name!r}; "
                            f"it takes the flags of `bench run`: {known}")
        action = flags[name]
        flag = action.option_strings[-1]
        if value is True and action.nargs == 0:
            argv.append(flag)
        elif action.__class__.__name__ == "_AppendAction":  # --include, --set, --sbatch-arg
            items = [value] if isinstance(value, (str, os.PathLike)) else list(value)
            if isinstance(value, dict):
                items = [f"{k}={v}" for k, v in value.items()]
            for item in items:
                argv += [flag, str(item)]
        else:
            argv += [flag, _flag_value(name, value)]
    return argv


def run(methods=None, datasets=None, shots=None, seeds=None, *, output="bench-results",
        data_root=None, backbone=None, pretrained=None, include=None, overrides=None,
        quiet=True, **options):
    """Run (or resume) a sweep like `bench run` and return its results as :func:`load` does,
    restricted to this sweep's methods, datasets and shots.

    ``methods``/``datasets``: comma string or list (patterns and ``name:variant`` work);
    ``shots``/``seeds``: list of ints or comma string; ``include``: plugin path(s);
    ``set`` (or ``overrides``): ``{"key": value}`` or ``["method.key=value", ...]`` (``--set``);
    any other `bench run` flag as a keyword, named as the flag (``device="cpu"``,
    ``launcher="local"``, ``config=...``, ``dry_run=True``).
    A failed cell does not raise: it shows in the frame's ``n_failed`` (and a warning).
    """
    from bench.commands import run as run_command

    kwargs = dict(methods=methods, datasets=datasets, shots=shots, seeds=seeds, output=output,
                  data_root=data_root, backbone=backbone, pretrained=pretrained,
                  include=include, overrides=overrides, quiet=quiet, **options)
    parser, run_parser = _run_parser()
    args = parser.parse_args(_argv({k: v for k, v in kwargs.items()}, run_parser))
    if args.include:
        from bench.base.plugins import include as add_include

        add_include(args.include)
    with contextlib.redirect_stdout(io.StringIO()):  # the command's tables: the frame says it
        code = run_command.main(args)
    if code:
        warnings.warn(f"bench.run: some cells failed (exit code {code}); see n_failed, "
                      f"`bench status {args.output}` and the .failed.json records", stacklevel=2)
    cfg = run_command.resolve(args)  # the run's own grid, for the selection
    datasets = cfg.datasets + cfg.targets
    return load(cfg.output, methods=_labels(cfg.methods), datasets=datasets,
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


def load(output, methods=None, datasets=None, shots=None, backbone=None, *, include=None,
         protocol="fewshot"):
    """The results under ``output`` as the tidy frame `bench report --format csv` writes: one
    row per (backbone, dataset or ``average``, method row, shots) with mean, std, n, n_failed,
    ... (columns ``results.tables.CSV_COLUMNS``). Selection arguments take lists or comma
    strings, like `bench report`'s flags. ``include``: plugin paths, for display names.
    ``protocol``: ``base2novel``, ``domain`` or ``crossdataset`` give that protocol's frame
    (`bench report --protocol NAME --format csv`: an ``evaluation`` column, base / novel / hm
    or top1, and the ``source`` of transfer results; columns ``results.protocols.CSV_COLUMNS``)."""
    import pandas as pd

    from bench.commands.report import load_summary, protocol_tables
    from results.tables import CSV_COLUMNS, render_csv

    if include:
        from bench.base.plugins import include as add_include

        add_include(include)

    def joined(value):
        return None if value is None else _flag_value("selection", value)

    args = Namespace(output=Path(output), methods=joined(methods), datasets=joined(datasets),
                     shots=joined(shots), backbone=joined(backbone), compare=None)
    if protocol != "fewshot":
        from results.protocols import CSV_COLUMNS as PROTOCOL_COLUMNS

        text = protocol_tables(args, protocol)[1]
        frame = pd.read_csv(io.StringIO(text), keep_default_na=False, na_values={
            c: [""] for c in ("mean", "std")})
        return frame.reindex(columns=PROTOCOL_COLUMNS)
    summary, labels, _ = load_summary(args)
    text = render_csv(summary, labels)
    frame = pd.read_csv(io.StringIO(text), keep_default_na=False, na_values={
        c: [""] for c in ("mean", "std")})
    return frame.reindex(columns=CSV_COLUMNS)
