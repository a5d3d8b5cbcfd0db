"""`bench run`: plan the sweep, skip what is done, launch the jobs, print the table."""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.base.determinism import POLICIES
from bench.base.errors import UsageError

LAUNCHERS = ("inprocess", "local", "slurm")
AUTOCAST = ("auto", "on", "off")
# bench.features.DTYPES's names, spelled out so `bench --help` does not import torch
# (tests/test_cli_run.py checks they agree)
CACHE_DTYPES = ("float32", "float16")
DECODES = ("cpu", "gpu")  # bench.gpu_images.DECODES (tests/test_gpu_images.py checks they agree)
DEVICE = re.compile(r"auto|cpu|cuda(:.*)?")  # a bad GPU index: _check_device says it


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


@dataclass
class RunConfig:
    """Everything a `bench run` needs, resolved from flags, the sweep file and defaults."""

    sweep: dict  # the sweep YAML as read ({} without --config)
    shots: list[int]
    seeds: list[int]
    data_root: str
    backbones: list[tuple[str, str | None]]  # (open_clip model, pretrained tag or file)
    datasets: list[str]  # the datasets cells train on (the source of transfer protocols)
    methods: list  # bench.config.MethodSpec, in order
    protocol: str  # bench.protocols.PROTOCOLS
    targets: list[str]  # domain / crossdataset: evaluated besides each dataset
    overrides: dict  # method -> {key: value} (--set and the sweep's set)
    config_problems: list[str]  # unknown --set keys, reported with the bad values
    output: Path
    cache_dir: str
    device: str
    launcher: str
    group_by: str
    options: dict  # feature extraction: batch_size, workers, cache_dtype, autocast, progress
    demo_note: str | None  # printed when the run falls back to the built-in demo
    slurm: dict  # bench.slurm.slurm_options
    backbone_note: str | None = None  # printed when a data root runs the default backbone


def resolve(args) -> RunConfig:
    """Everything the run needs, from flags, the sweep file and defaults; validated (the first
    problem found is reported, in the order of the steps below)."""
    from bench.config import parse_overrides
    from bench.sweep import (DEFAULT_SEEDS, DEFAULT_SHOTS, MAX_SEED, MAX_SEED_WHY, load_sweep,
                             named, overrides_list, parse_int_list, pick)
    from methods import METHODS

    sweep = load_sweep(args.config)
    shots = parse_int_list(pick(args.shots, sweep, "shots", DEFAULT_SHOTS),
                           named(args.shots, sweep, "shots", "--shots"))
    seeds = parse_int_list(pick(args.seeds, sweep, "seeds", DEFAULT_SEEDS),
                           named(args.seeds, sweep, "seeds", "--seeds"), MAX_SEED, MAX_SEED_WHY)
    data_root, dataset_tag, backbone, demo_note = _data_and_backbone(args, sweep)
    backbones = _backbones(args, sweep, backbone)
    backbone_note = None
    if demo_note is None and pick(args.backbone, sweep, "backbone") is None \
            and "backbones" not in sweep:
        backbone_note = (f"bench: no --backbone given: the protocol's {backbones[0][0]} with "
                         f"--pretrained {backbones[0][1]} (name another with --backbone and "
                         f"--pretrained)")
    protocol, datasets, targets = _protocol_datasets(args, sweep, dataset_tag)
    method_specs = _method_specs(pick(args.methods, sweep, "methods", "all"), METHODS, protocol,
                                 named(args.methods, sweep, "methods", "--methods"))
    config_problems: list[str] = []  # reported with the bad values, by expand_cells
    overrides = parse_overrides(
        (overrides_list(sweep.get("set")) + (args.overrides or [])),
        sorted({m.name for m in method_specs}), config_problems)
    # Absolute, so SLURM tasks that start in another working directory find them.
    output = Path(pick(args.output, sweep, "output", "bench-results")).expanduser().resolve()
    cache_dir = Path(pick(args.cache_dir, sweep, "cache_dir") or output / "cache").expanduser().resolve()
    device, demo_note = _device(args, sweep, demo_note)
    launcher = pick(args.launcher, sweep, "launcher", "inprocess")
    if launcher not in LAUNCHERS:
        raise UsageError(f"{named(args.launcher, sweep, 'launcher', '--launcher')} {launcher!r}: "
                         f"choose one of {', '.join(LAUNCHERS)}")
    from bench.slurm import slurm_options

    slurm = slurm_options(args, sweep)  # validated for every launcher: a typo fails early
    options = _feature_options(args, sweep, device)
    return RunConfig(
        sweep=sweep, shots=shots, seeds=seeds, data_root=data_root, backbones=backbones,
        datasets=datasets, methods=method_specs, protocol=protocol, targets=targets,
        overrides=overrides, config_problems=config_problems, output=output,
        cache_dir=str(cache_dir), device=device, launcher=launcher,
        group_by=pick(args.group_by, sweep, "group_by", "dataset"), options=options,
        demo_note=demo_note, slurm=slurm, backbone_note=backbone_note)


def _data_and_backbone(args, sweep) -> tuple[str, str, tuple[str, str | None], str | None]:
    """(data root, the tag ``all`` selects datasets by, (backbone, pretrained), demo note).

    Without a data root: the built-in demo suite, and without a backbone either the demo model
    too (with a note saying so). With one: it must be a folder; the backbone defaults to the
    protocol's (RN50-quickgelu, openai)."""
    from bench.sweep import PROTOCOL_BACKBONE, named, pick
    from datasets_registry import COOP_TAG, DEMO_TAG

    data_root = pick(args.data_root, sweep, "data_root")
    backbone = pick(args.backbone, sweep, "backbone")
    pretrained = pick(args.pretrained, sweep, "pretrained")
    if data_root is None:
        from bench.demo import demo_defaults

        demo = demo_defaults()
        demo_note = None
        if backbone is None:
            backbone, pretrained = demo["backbone"], pretrained or demo["pretrained"]
            demo_note = ("bench: no --data-root or --backbone given, so this runs the built-in "
                         "demo (a tiny CLIP pretrained here on generated images, and the demo "
                         "datasets); for real data use --data-root DIR --backbone "
                         "RN50-quickgelu --pretrained openai (or a local checkpoint file)")
        return str(demo["data_root"]), DEMO_TAG, (backbone, pretrained), demo_note
    root = Path(data_root).expanduser()
    flag = named(args.data_root, sweep, "data_root", "--data-root")
    if not root.exists():
        raise UsageError(f"{flag} {data_root} does not exist; point it at the folder "
                         f"holding the datasets (see `bench data check`)")
    if not root.is_dir():
        raise UsageError(f"{flag} {data_root} is a file, not a folder")
    if backbone is None:
        backbone, pretrained = PROTOCOL_BACKBONE[0], pretrained or PROTOCOL_BACKBONE[1]
    return str(root.resolve()), COOP_TAG, (backbone, pretrained), None


def _backbones(args, sweep, backbone: tuple[str, str | None]) -> list[tuple[str, str | None]]:
    """The sweep's list of backbones (unless --backbone is given), else the one backbone; each
    checked: a known open_clip name, a pretrained tag or file that exists."""
    from bench.backbone import check_backbone_name, resolve_pretrained

    backbones = [backbone]
    if "backbones" in sweep and args.backbone is None:
        backbones = [(b["backbone"], b.get("pretrained")) for b in sweep["backbones"]]
    for name, pre in backbones:
        check_backbone_name(name)
        resolve_pretrained(name, pre)
    return backbones


def _device(args, sweep, demo_note: str | None) -> tuple[str, str | None]:
    """(device, demo note): ``auto`` means the CPU for the demo, with a note why."""
    from bench.sweep import named, pick

    device = pick(args.device, sweep, "device", "auto")
    if not DEVICE.fullmatch(str(device)):
        raise UsageError(f"{named(args.device, sweep, 'device', '--device')} {device!r}: choose "
                         f"auto (a CUDA GPU when there is one), cpu, cuda or cuda:N (GPU N)")
    if demo_note and device == "auto":
        # The demo's tiny model is launch-bound on a GPU: on an H200 machine one demo dataset
        # x 1 seed ran in 51 s on CUDA and 32 s on its CPU (benchmarks/results/gpu.md).
        device = "cpu"
        demo_note += ("; it runs on the CPU, which is faster than a GPU for this tiny model "
                      "(--device cuda to override)")
    return device, demo_note


def _feature_options(args, sweep, device: str) -> dict:
    """Feature extraction and fitting options (RunConfig.options), validated."""
    from bench.base.determinism import check_policy, requested
    from bench.joint import check_option
    from bench.sweep import DEFAULT_FIT_THREADS, named, pick

    cuda = _cuda_expected(device)
    options = {
        "batch_size": pick(args.batch_size, sweep, "batch_size", 64),
        "workers": pick(args.workers, sweep, "workers", 8 if cuda else 0),
        "cache_dtype": _choice(pick(args.cache_dtype, sweep, "cache_dtype", "float32"),
                               CACHE_DTYPES,
                               named(args.cache_dtype, sweep, "cache_dtype", "--cache-dtype")),
        "autocast": _choice(pick(args.autocast, sweep, "autocast", "auto"), AUTOCAST,
                            named(args.autocast, sweep, "autocast", "--autocast")),
        "decode": _choice(pick(getattr(args, "decode", None), sweep, "decode", "cpu"), DECODES,
                          named(getattr(args, "decode", None), sweep, "decode", "--decode")),
        "progress": not args.quiet,
        "fit_threads": pick(getattr(args, "fit_threads", None), sweep, "fit_threads",
                            DEFAULT_FIT_THREADS),
        "determinism": check_policy(pick(getattr(args, "determinism", None), sweep,
                                         "determinism", requested()), "determinism"),
    }
    joint = pick(getattr(args, "joint_fits", None), sweep, "joint_fits", "auto")
    options["joint_fits"] = check_option(joint)
    if options["joint_fits"] is None:
        flag = named(getattr(args, "joint_fits", None), sweep, "joint_fits", "--joint-fits")
        raise UsageError(f"{flag} {joint!r}: give auto, on, off, or the most prompts "
                         f"(cells x classes) one joint pass may hold, e.g. 1024 (0 = off)")
    if options["decode"] == "gpu" and not cuda:
        raise UsageError(f"--decode gpu decodes images on the run's CUDA device, but this run is "
                         f"on the CPU (--device {device}); use --decode cpu, or --device cuda "
                         f"on a machine with a GPU")
    if options["batch_size"] < 1:
        raise UsageError(f"{named(args.batch_size, sweep, 'batch_size', '--batch-size')} must be "
                         f"a positive number")
    if not isinstance(options["fit_threads"], int) or options["fit_threads"] < 0:
        flag = named(getattr(args, "fit_threads", None), sweep, "fit_threads", "--fit-threads")
        raise UsageError(f"{flag} {options['fit_threads']!r}: give a number of threads "
                         f"(1 or more), or 0 for torch's default")
    if options["workers"] < 0:
        raise UsageError(f"{named(args.workers, sweep, 'workers', '--workers')} must be 0 "
                         f"(decode in this process) or more")
    return options


def _protocol_datasets(args, sweep, dataset_tag) -> tuple[str, list[str], list[str]]:
    """(protocol, the datasets cells train on, the targets each is also evaluated on).

    Few-shot and base-to-novel: ``--datasets`` trains and tests. Domain and cross-dataset:
    cells train on ``--source`` (default imagenet) and ``--datasets`` names the targets (default:
    the four ImageNet variants for domain; every other dataset of the suite for crossdataset)."""
    from bench.protocols import DEFAULT_SOURCE, DOMAIN_TAG, TRANSFER, check_protocol
    from bench.sweep import named, pick
    from datasets_registry import DATASETS

    protocol = check_protocol(str(pick(args.protocol, sweep, "protocol", "fewshot")))
    source = pick(getattr(args, "source", None), sweep, "source")
    asked = pick(args.datasets, sweep, "datasets")
    if asked is not None and not [p for p in (asked if isinstance(asked, list)
                                              else str(asked).split(",")) if str(p).strip()]:
        raise UsageError(f"{named(args.datasets, sweep, 'datasets', '--datasets')} is empty: name "
                         f"at least one dataset (see `bench ls datasets`), or leave it out for "
                         f"all of them")
    if protocol not in TRANSFER:
        if source is not None:
            raise UsageError(f"--source is for the domain and crossdataset protocols; with "
                             f"--protocol {protocol} every dataset of --datasets is trained on")
        return protocol, DATASETS.select(asked or "all", all_tag=dataset_tag), []
    source = source or DEFAULT_SOURCE
    DATASETS.entry(source)  # did-you-mean for a typo
    if DOMAIN_TAG in DATASETS.entry(source).tags:
        raise UsageError(f"--source {source}: a test-only dataset cannot be trained on; "
                         f"use --source imagenet")
    if protocol == "domain":
        targets = DATASETS.select(asked or "all", all_tag=DOMAIN_TAG)
        wrong = [t for t in targets if DOMAIN_TAG not in DATASETS.entry(t).tags]
        if wrong:
            raise UsageError(f"--protocol domain evaluates on ImageNet's variants "
                             f"({', '.join(DATASETS.names(DOMAIN_TAG))}), not "
                             f"{', '.join(wrong)}; for other datasets use --protocol "
                             f"crossdataset")
    else:
        targets = [t for t in DATASETS.select(asked or "all", all_tag=dataset_tag) if t != source]
    if not targets:
        raise UsageError(f"--protocol {protocol}: no target dataset besides the source "
                         f"{source}; name them with --datasets")
    return protocol, [source], targets


def _choice(value, choices, key: str) -> str:
    """A flag or sweep value among ``choices`` (YAML true/false read as on/off)."""
    if isinstance(value, bool):
        value = "on" if value else "off"
    if value not in choices:
        raise UsageError(f"{key} {value!r}: choose one of {', '.join(choices)}")
    return value


def _cuda_expected(device: str) -> bool:
    if device.startswith("cuda"):
        return True
    if device == "auto":
        import torch

        return torch.cuda.is_available()
    return False


def _check_device(device: str, launcher: str) -> None:
    """A CUDA device this machine does not have is a usage error before any work. Not for
    SLURM: its jobs run on other (GPU) nodes than the one submitting them."""
    if launcher == "slurm" or not device.startswith("cuda"):
        return
    import torch

    index = device.partition(":")[2]
    if index and not index.isdigit():
        raise UsageError(f"--device {device}: the GPU index must be a number, e.g. cuda:0")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        import os

        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        seen = f", CUDA_VISIBLE_DEVICES={visible!r}" if visible is not None else ""
        raise UsageError(f"--device {device}: no CUDA GPU is visible on this machine (torch "
                         f"{torch.__version__}{seen}); use --device cpu (or auto), or run on a "
                         f"GPU node (--launcher slurm)")
    if index and int(index) >= count:
        raise UsageError(f"--device {device}: this machine has {count} CUDA GPU(s), "
                         f"cuda:0..cuda:{count - 1}")


def _check_weights(backbones, launcher: str) -> None:
    """Offline (HF_HUB_OFFLINE), weights of an open_clip tag that are not on this machine cannot
    be had: stop now, before planning, not when the first job loads them. Not for SLURM: its
    jobs run on other nodes, whose caches may hold them."""
    import os

    if launcher == "slurm" or not os.environ.get("HF_HUB_OFFLINE"):
        return
    from bench.backbone import cached_weights, resolve_pretrained, unavailable_weights
    from bench.base.errors import BenchError

    for name, pretrained in backbones:
        tag = resolve_pretrained(name, pretrained)
        if tag is None or tag.startswith("local-dir:") or Path(tag).is_file():
            continue
        if cached_weights(name, tag) is False:
            raise BenchError(unavailable_weights(name, tag))


def _method_specs(value, registry, protocol: str = "fewshot", flag: str = "--methods") -> list:
    """``name``, ``name:variant`` and patterns -> MethodSpecs in order, without duplicates.

    An unknown variant is reported (with a did-you-mean) when the cells are expanded. Under a
    protocol some methods cannot follow (bench.protocols), ``all`` and patterns leave those out
    with a note; a method named explicitly is refused when the cells are expanded.
    """
    from bench.config import MethodSpec
    from bench.protocols import split_methods

    parts = value if isinstance(value, list) else str(value).split(",")
    specs = []
    for part in (p.strip() for p in parts):
        if not part:
            continue
        name, _, variant = part.partition(":")
        names = registry.select(name)
        if name == "all" or any(ch in name for ch in "*?["):
            names, left_out = split_methods(protocol, names)
            if left_out:
                print(f"bench: --protocol {protocol}: {', '.join(left_out)} left out (they "
                      f"cannot score classes they did not train on)", file=sys.stderr)
        specs += [MethodSpec(n, variant or None) for n in names]
    if not specs:
        raise UsageError(f"{flag} is empty: name at least one method (see `bench ls methods`)")
    return list(dict.fromkeys(specs))


def main(args) -> int:
    from bench.planner import expand_cells, plan

    cfg = resolve(args)
    cfg.options["determinism"] = _apply_determinism(cfg.options["determinism"])
    every = getattr(args, "progress_every", 30.0)
    if not every >= 0:  # negative or nan
        raise UsageError(f"--progress-every must be 0 (never) or a number of seconds, got "
                         f"{every}")
    _check_device(cfg.device, cfg.launcher)
    for note in (cfg.demo_note, cfg.backbone_note):
        if note:
            print(note, file=sys.stderr)
    _check_weights(cfg.backbones, cfg.launcher)
    cells = expand_cells(cfg.backbones, cfg.datasets, cfg.methods, cfg.shots,
                         cfg.seeds, cfg.overrides, cfg.config_problems,
                         protocol=cfg.protocol, targets=cfg.targets)
    jobs = plan(cells, data_root=cfg.data_root, output=str(cfg.output),
                cache_dir=cfg.cache_dir, device=cfg.device, group_by=cfg.group_by,
                options=cfg.options)
    n_todo = sum(len(j.cells) for j in jobs)
    print(f"bench: {len(cells)} cells ({len(cells) - n_todo} already done), {n_todo} to run "
          f"in {len(jobs)} job(s); results in {cfg.output}", file=sys.stderr)
    if args.dry_run:
        for job in jobs:
            print(f"{job.key}: {len(job.cells)} cells")
        return 0
    _check_writable(cfg.output)
    _check_writable(Path(cfg.cache_dir), "--cache-dir")
    write_plan(cfg.output, cells)
    t0 = time.perf_counter()
    code = 0
    if jobs:
        code = launch(jobs, cfg, args)
    if cfg.launcher == "inprocess" or getattr(args, "wait", True):
        print(f"bench: finished in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        _print_summary(cfg)
    return code


def _apply_determinism(policy: str) -> str:
    """The run's policy in this process (before it computes) and in the jobs it launches; the
    policy in effect (``portable`` needs an x86-64 CPU with AVX2: bench.base.determinism.effective)."""
    from bench.base import determinism

    policy = determinism.apply(policy)
    determinism.check(policy)
    return policy


def _check_writable(output: Path, flag: str = "--output") -> None:
    """Fail before any work when ``output`` cannot be created or written (as root too)."""
    import os
    import tempfile

    from bench.base.errors import BenchError
    from results.atomic import DiskFull, is_disk_full

    for folder in (output, *output.parents):
        if folder.exists():
            if not folder.is_dir():
                raise UsageError(f"{flag} {output}: {folder} is a file, not a folder; choose "
                                 f"a folder you can write to")
            break
    try:
        output.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".bench-write-test-", dir=output)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        if is_disk_full(exc):
            raise BenchError(DiskFull(output, exc).advice()) from None
        raise UsageError(f"{flag} {output}: cannot write there ({exc.strerror or exc}); "
                         f"choose a folder you can write to") from None


PLAN_FILE = "plan.json"


def write_plan(output: Path, cells: list[dict]) -> None:
    """OUTPUT/plan.json: every cell of this run's grid (with its inputs), written atomically
    before anything runs; `bench status OUTPUT` reads it to tell done, failed, running and
    pending cells apart. The latest run's grid replaces the previous one."""
    import datetime
    import os
    import socket

    from results.atomic import atomic_write_json

    atomic_write_json(Path(output) / PLAN_FILE, {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": socket.gethostname(), "pid": os.getpid(), "cells": cells})


def launch(jobs, cfg, args) -> int:
    if cfg.launcher == "inprocess":
        from bench.base.errors import sigterm_as_interrupt
        from bench.progress import log_progress
        from bench.runner import run_job

        failed = locked = 0
        encode_s = 0.0
        damaged: list = []
        progress = log_progress(sum(len(j.cells) for j in jobs),
                                getattr(args, "progress_every", 30.0))
        with sigterm_as_interrupt(), progress:  # SIGTERM like Ctrl-C (locks released)
            for i, job in enumerate(jobs, 1):
                print(f"bench: job {i}/{len(jobs)}: {job.dataset} ({len(job.cells)} cells)",
                      file=sys.stderr)
                job.progress = progress  # an attribute, so run_job(job) stays the interface
                counts = run_job(job)
                failed += counts["failed"]
                locked += counts.get("locked", 0)
                encode_s += counts.get("encode_s", 0.0)
                damaged += counts.get("damaged_shards", [])
        print(f"bench: image encoding (feature extraction) took {encode_s:.1f} s of the run",
              file=sys.stderr)
        if damaged:  # one line however many: a damaged cache folder can hold hundreds
            print(f"bench: warning: feature cache: {len(damaged)} damaged shard(s) were deleted "
                  f"and their features recomputed, e.g. {damaged[0][0]} ({damaged[0][1]})",
                  file=sys.stderr)
        if locked:
            print(f"bench: {locked} cell(s) were left to another bench process running on "
                  f"{cfg.output}; once it has finished, rerun to pick up any it did not "
                  f"complete", file=sys.stderr)
        if failed:
            print(f"bench: {failed} cell(s) failed; see `bench status {cfg.output}` or the "
                  f".failed.json records; rerun to retry them", file=sys.stderr)
        return 1 if failed else 0
    from bench.slurm import launch_submitit

    return launch_submitit(jobs, cfg.launcher, cfg.slurm,
                           wait=not getattr(args, "no_wait", False))


def _print_summary(cfg) -> None:
    """The same tables as `bench report OUTPUT`, restricted to this run's grid."""
    from argparse import Namespace

    from bench.commands import report
    from bench.base.errors import BenchError

    args = Namespace(output=cfg.output, methods=",".join(sorted({m.name for m in cfg.methods})),
                     datasets=",".join(cfg.datasets), shots=",".join(map(str, cfg.shots)),
                     backbone=None, compare=None, fmt="terminal", out=None, layout="all",
                     color="auto", standalone=False, protocol=cfg.protocol)
    if cfg.targets:  # transfer protocols: the tables are of the source and the targets
        args.datasets = None
    try:
        report.run(args)
    except BenchError as exc:
        print(f"bench: no table to show: {exc}", file=sys.stderr)
