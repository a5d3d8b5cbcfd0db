"""`bench run`: the flags, turned into a :class:`bench.api.Sweep` that is planned and executed
(bench/resolve.py, bench/execution.py); then the table of the run's results."""

from __future__ import annotations

import sys

from bench.base.determinism import POLICIES
from bench.resolve import AUTOCAST, CACHE_DTYPES, DECODES, LAUNCHERS


def register(sub) -> None:
    p = sub.add_parser("run", help="run a sweep of methods x datasets x shots x seeds",
                       description="Run (or resume) a sweep. Cells with a result are skipped.")
    p.add_argument("--methods", help="comma list, 'all', or patterns like 'clip_adapter*'; "
                                     "'name:variant' picks a named config (default: all)")
    p.add_argument("--datasets", help="comma list, 'all' or patterns (default: all)")
    p.add_argument("--shots", help="comma list of shot counts (default: 1,2,4,8,16)")
    p.add_argument("--protocol", help="fewshot (default), base2novel (train on the base half of "
                                      "the classes, test on base and novel), domain (train on "
                                      "--source, test on ImageNet-V2/-Sketch/-A/-R) or "
                                      "crossdataset (train on --source, test on --datasets)")
    p.add_argument("--source", help="domain / crossdataset: the dataset trained on (default "
                                    "imagenet); --datasets then names the targets")
    p.add_argument("--seeds", help="comma list of seeds (default: 1,2,3)")
    p.add_argument("--backbone", help="open_clip model name (default: RN50-quickgelu with a "
                                      "data root, the demo model without)")
    p.add_argument("--pretrained", help="open_clip tag, local checkpoint file, "
                                        "local-dir:FOLDER, or 'none'")
    p.add_argument("--data-root", help="folder with the datasets in CoOp's layout "
                                       "(default: the built-in demo suite)")
    p.add_argument("--output", help="results folder (default: bench-results)")
    p.add_argument("--cache-dir", help="feature cache folder (default: OUTPUT/cache)")
    p.add_argument("--device", help="cpu, cuda, cuda:1, or auto (default)")
    p.add_argument("--config", help="sweep YAML; explicit flags override its values")
    p.add_argument("--set", dest="overrides", action="append", default=None, metavar="KEY=VALUE",
                   help="override a method config value: key=value (every selected method "
                        "having the key) or method.key=value; repeatable")
    p.add_argument("--launcher", choices=LAUNCHERS,
                   help="inprocess (default), local (submitit subprocesses) or slurm")
    p.add_argument("--group-by", help="job grouping: dataset (default), method, cell, backbone")
    p.add_argument("--batch-size", type=int, help="feature extraction batch size (default 64)")
    p.add_argument("--workers", type=int, help="DataLoader workers for decoding (default 0 on "
                                               "CPU, 8 on GPU)")
    p.add_argument("--autocast", choices=AUTOCAST,
                   help="fp16 autocast for image encoding: auto (default) = on when the run is on "
                        "CUDA (the original code's fp16 image encoder), never on a CPU")
    p.add_argument("--decode", choices=DECODES,
                   help="where images are decoded and cropped: cpu (default; PIL in the "
                        "DataLoader workers) or gpu (nvJPEG and tensor crops on the run's CUDA "
                        "device: the same crop boxes, slightly different pixels; its speed and "
                        "accuracy on a GPU are not measured yet, see docs/protocol.md §9)")
    p.add_argument("--cache-dtype", choices=CACHE_DTYPES,
                   help="how cached features are stored (default float32; float16 halves the "
                        "cache)")
    p.add_argument("--fit-threads", type=int, metavar="N",
                   help="CPU threads torch uses to fit and evaluate each cell (default 1: small "
                        "tensor operations run faster on one, and far faster when another "
                        "process holds a core; image encoding keeps every thread); 0 = torch's "
                        "default")
    p.add_argument("--joint-fits", metavar="auto|on|off|N",
                   help="train the cells of a seed that differ only in shots together, where the "
                        "method can (CoOp, KgCoOp: one text-encoder pass per step for all; same "
                        "results up to float rounding), at most N prompts (cells x classes) a "
                        "pass; auto (default) = 1024 on CUDA, where small steps are "
                        "launch-bound, 50 on a CPU, where only tiny passes gain; on = 1024 on "
                        "any device")
    p.add_argument("--determinism", choices=POLICIES,
                   help="the reproducibility policy (docs/reliability.md): portable (default) = "
                        "the same bits on any x86-64 CPU with AVX2 (MKL strict CNR, AVX2 kernels)"
                        ", and deterministic algorithms on CUDA; native = reproducible on this "
                        "kind of CPU only, faster where it has AVX-512; off = nothing set. "
                        "Part of each result's identity; non-default results are labelled")
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--progress-every", type=float, default=30.0, metavar="SECONDS",
                   help="when stderr is not a terminal (a log file, nohup, SLURM), print a "
                        "progress line every SECONDS: cells done/total, dataset and method, "
                        "elapsed, estimate left (default 30; 0 = never)")
    from bench.slurm import add_slurm_arguments

    add_slurm_arguments(p)
    p.set_defaults(func=main)


def sweep_from_args(args):
    """The run's flags as a Sweep (the explicit values; None where a flag was not given)."""
    from bench.api import Sweep, sweep_fields

    given = {name: getattr(args, name) for name in sweep_fields() if hasattr(args, name)}
    given["wait"] = getattr(args, "wait", True)
    return Sweep(**given)


def main(args) -> int:
    from bench.api import execute

    planned = sweep_from_args(args).plan()
    if args.dry_run:
        for job in planned.jobs:
            print(f"{job.key}: {len(job.cells)} cells")
        return 0
    outcome = execute(planned)
    cfg = planned.config
    if cfg.launcher == "inprocess" or cfg.wait:
        print_summary(cfg)
    return outcome.code


def print_summary(cfg) -> None:
    """The same tables as `bench report OUTPUT`, restricted to this run's grid."""
    from bench.base.errors import BenchError
    from bench.commands.report import use_color
    from bench.reporting import Selection, report_text

    sel = Selection(cfg.output, methods=",".join(sorted({m.name for m in cfg.methods})),
                    datasets=None if cfg.targets else ",".join(cfg.datasets),
                    shots=",".join(map(str, cfg.shots)))
    try:  # transfer protocols (targets): the tables are of the source and the targets
        sys.stdout.write(report_text(sel, "terminal", color=use_color("terminal", None, "auto"),
                                     protocol=cfg.protocol))
    except BenchError as exc:
        print(f"bench: no table to show: {exc}", file=sys.stderr)
