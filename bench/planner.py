"""Plan a sweep: expand the grid into cells, drop cells already done, group cells into jobs.

A cell is one (backbone, pretrained, dataset, method + variant + resolved config, shots, seed).
A job is the unit a launcher runs: by default all cells of one (backbone, pretrained, dataset),
so the model is loaded and the features extracted once per job.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.config import (ConfigError, MethodSpec, check_config, method_schema,
                          protocol_config, resolve_method_config)
from bench.base.errors import UsageError
from results.store import ResultStore

GROUPINGS = {
    "dataset": ("backbone", "pretrained", "dataset"),  # default: one job per backbone x dataset
    "method": ("backbone", "pretrained", "dataset", "method", "variant"),
    "cell": ("backbone", "pretrained", "dataset", "method", "variant", "shots", "seed"),
    "backbone": ("backbone", "pretrained"),  # a job may span datasets: run in turn
}


@dataclass
class Job:
    backbone: str
    pretrained: str | None
    dataset: str
    data_root: str
    output: str
    cache_dir: str
    device: str
    cells: list[dict] = field(default_factory=list)
    options: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        datasets = sorted({c["dataset"] for c in self.cells}) or [self.dataset]
        methods = sorted({c["method"] for c in self.cells})
        return f"{self.backbone}|{self.pretrained}|{','.join(datasets)}|{','.join(methods)}"


def expand_cells(backbones: list[tuple[str, str | None]], datasets: list[str],
                 methods: list[MethodSpec], shots: list[int], seeds: list[int],
                 overrides: dict[str, dict] | None = None,
                 problems: list[str] | None = None, protocol: str = "fewshot",
                 targets: list[str] | None = None) -> list[dict]:
    """Every cell of the grid, its config resolved and checked against its method's schema.

    ``protocol`` (bench.protocols) and, for the transfer protocols, the ``targets`` evaluated
    besides each dataset (the sources) are part of every cell; methods that cannot follow the
    protocol are refused here. Each method's config is resolved for the protocol (its YAML's
    ``protocols`` block: the release's settings there), and a cell of another protocol than the
    few-shot one records the block and its source in ``protocol_config``.

    Every bad config value of every cell (and the ``problems`` found earlier, such as unknown
    ``--set`` keys) is reported in one :class:`ConfigError`, before any image is read.
    """
    from bench.protocols import cell_fields, config_refusals, refusal

    overrides = overrides or {}
    extra = cell_fields(protocol, targets)
    found = _Problems(list(problems or []), datasets, shots)
    cells = []
    sources = {}
    for backbone, pretrained in backbones:
        for dataset in datasets:
            for spec in methods:
                for k in shots:
                    try:
                        variant, config = resolve_method_config(spec, dataset, k,
                                                                overrides.get(spec.name),
                                                                protocol)
                        if spec.name not in sources:
                            sources[spec.name] = protocol_config(spec.name, protocol)
                    except ConfigError as exc:
                        found.add_line(str(exc))
                        continue
                    for key, value, want in check_config(config, method_schema(spec.name)):
                        found.add(spec, key, value, want, dataset, k)
                    source = ({"protocol_config": sources[spec.name]}
                              if sources[spec.name] else {})
                    for seed in seeds:
                        cells.append({"backbone": backbone, "pretrained": pretrained,
                                      "dataset": dataset, "method": spec.name,
                                      "variant": variant, "config": config,
                                      "shots": k, "seed": seed, **extra, **source})
    found.raise_any()
    refused = config_refusals(protocol, cells)  # per resolved config: coop:csc too
    if refused:
        raise UsageError(refusal(protocol, refused))
    return cells


class _Problems:
    """Bad config values collected over the grid: one line per (method, key, value), saying
    which datasets or shot counts it concerns when not all of them."""

    def __init__(self, lines: list[str], datasets: list[str], shots: list[int]):
        self.lines = list(dict.fromkeys(lines))
        self.values: dict[tuple, dict] = {}
        self.datasets, self.shots = datasets, shots

    def add_line(self, line: str) -> None:
        if line not in self.lines:
            self.lines.append(line)

    def add(self, spec: MethodSpec, key: str, value, want: str, dataset: str, shots: int) -> None:
        where = self.values.setdefault((spec.label, key, repr(value), want),
                                       {"datasets": set(), "shots": set()})
        where["datasets"].add(dataset)
        where["shots"].add(shots)

    def raise_any(self) -> None:
        lines = list(self.lines)
        merged: dict[tuple, list[str]] = {}  # the same bad value in several methods: one line
        for (label, key, value, want), where in self.values.items():
            scope = []
            if len(where["datasets"]) < len(set(self.datasets)):
                scope.append("datasets " + ",".join(d for d in self.datasets
                                                    if d in where["datasets"]))
            if len(where["shots"]) < len(set(self.shots)):
                scope.append("shots " + ",".join(str(k) for k in self.shots
                                                 if k in where["shots"]))
            scope_txt = f" ({'; '.join(scope)})" if scope else ""
            merged.setdefault((key, value, scope_txt, want), []).append(label)
        for (key, value, scope_txt, want), labels in merged.items():
            lines.append(f"{', '.join(labels)}: {key} = {value}{scope_txt}: must be {want}")
        fix = "fix the --set value, the sweep file's 'set', or configs/methods/<method>.yaml"
        if len(lines) == 1:  # one line, as every error
            raise ConfigError(f"1 bad config value; nothing was run: {lines[0]} ({fix})")
        if lines:
            raise ConfigError(f"{len(lines)} bad config values; nothing was run ({fix}):\n  "
                              + "\n  ".join(lines))


def plan(cells: list[dict], *, data_root: str, output: str, cache_dir: str, device: str,
         group_by: str = "dataset", options: dict | None = None,
         skip_done: bool = True) -> list[Job]:
    """Group the cells that still need running into jobs (in grid order)."""
    if group_by not in GROUPINGS:
        raise UsageError(f"unknown grouping {group_by!r}; choose one of {', '.join(GROUPINGS)}")
    from bench.identity import attach_inputs

    attach_inputs(cells, data_root, device, options or {})
    store = ResultStore(output)
    from bench.cell_state import DONE, cell_state

    todo = [c for c in cells if not (skip_done and cell_state(store, c) == DONE)]
    keys = GROUPINGS[group_by]
    jobs: dict[tuple, Job] = {}
    for cell in todo:
        k = tuple(str(cell.get(f)) for f in keys)
        if k not in jobs:
            jobs[k] = Job(cell["backbone"], cell["pretrained"], cell["dataset"], str(data_root),
                          str(output), str(cache_dir), device, [], dict(options or {}))
        jobs[k].cells.append(cell)
    return list(jobs.values())
