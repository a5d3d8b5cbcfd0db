"""Plan a sweep: expand the grid into cells, drop cells already done, group cells into jobs.

A cell is one (backbone, pretrained, dataset, method + variant + resolved config, shots, seed).
A job is the unit a launcher runs: by default all cells of one (backbone, pretrained, dataset),
so the model is loaded and the features extracted once per job.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.config import MethodSpec, resolve_method_config
from bench.errors import UsageError
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
                 overrides: dict[str, dict] | None = None) -> list[dict]:
    overrides = overrides or {}
    cells = []
    for backbone, pretrained in backbones:
        for dataset in datasets:
            for spec in methods:
                for k in shots:
                    variant, config = resolve_method_config(spec, dataset, k,
                                                            overrides.get(spec.name))
                    for seed in seeds:
                        cells.append({"backbone": backbone, "pretrained": pretrained,
                                      "dataset": dataset, "method": spec.name,
                                      "variant": variant, "config": config,
                                      "shots": k, "seed": seed})
    return cells


def plan(cells: list[dict], *, data_root: str, output: str, cache_dir: str, device: str,
         group_by: str = "dataset", options: dict | None = None,
         skip_done: bool = True) -> list[Job]:
    """Group the cells that still need running into jobs (in grid order)."""
    if group_by not in GROUPINGS:
        raise UsageError(f"unknown grouping {group_by!r}; choose one of {', '.join(GROUPINGS)}")
    from bench.identity import attach_inputs

    attach_inputs(cells, data_root, device, options or {})
    store = ResultStore(output)
    todo = [c for c in cells if not (skip_done and store.exists(c))]
    keys = GROUPINGS[group_by]
    jobs: dict[tuple, Job] = {}
    for cell in todo:
        k = tuple(str(cell.get(f)) for f in keys)
        if k not in jobs:
            jobs[k] = Job(cell["backbone"], cell["pretrained"], cell["dataset"], str(data_root),
                          str(output), str(cache_dir), device, [], dict(options or {}))
        jobs[k].cells.append(cell)
    return list(jobs.values())
