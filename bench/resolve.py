"""From a sweep's explicit values to everything a run needs (:class:`RunConfig`), validated.

The merge rule is the command line's: an explicit value (a `bench run` flag, a keyword of
:class:`bench.api.Sweep`) wins over the sweep file (``config``), which wins over the default.
Errors name the flag or the sweep-file key that holds the bad value, the same for the CLI and the
Python API. ``given`` below is any object with the sweep's fields as attributes (a
:class:`bench.api.Sweep`); ``None`` means not given.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.base.errors import UsageError

LAUNCHERS = ("inprocess", "local", "slurm")
AUTOCAST = ("auto", "on", "off")
# bench.features.DTYPES's names, spelled out so `bench --help` does not import torch
# (tests/test_cli_run.py checks they agree)
CACHE_DTYPES = ("float32", "float16")
DECODES = ("cpu", "gpu")  # bench.gpu_images.DECODES (tests/test_gpu_images.py checks they agree)
DEVICE = re.compile(r"auto|cpu|cuda(:.*)?")  # a bad GPU index: _check_device says it


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
    progress_every: float = 30.0  # seconds between progress lines when stderr is no terminal
    wait: bool = True  # SLURM / local: wait for the jobs (False: submit and return)


def resolve(given) -> RunConfig:
    """Everything the run needs, from flags, the sweep file and defaults; validated (the first
    problem found is reported, in the order of the steps below)."""
    from bench.config import parse_overrides
    from bench.sweep import (DEFAULT_SEEDS, DEFAULT_SHOTS, MAX_SEED, MAX_SEED_WHY, load_sweep,
                             named, overrides_list, parse_int_list, pick)
    from methods import METHODS

    sweep = load_sweep(given.config)
    shots = parse_int_list(pick(given.shots, sweep, "shots", DEFAULT_SHOTS),
                           named(given.shots, sweep, "shots", "--shots"))
    seeds = parse_int_list(pick(given.seeds, sweep, "seeds", DEFAULT_SEEDS),
                           named(given.seeds, sweep, "seeds", "--seeds"), MAX_SEED, MAX_SEED_WHY)
    data_root, dataset_tag, backbone, demo_note = _data_and_backbone(given, sweep)
    backbones = _backbones(given, sweep, backbone)
    backbone_note = None
    if demo_note is None and pick(given.backbone, sweep, "backbone") is None \
            and "backbones" not in sweep:
        backbone_note = (f"bench: no --backbone given: the protocol's {backbones[0][0]} with "
                         f"--pretrained {backbones[0][1]} (name another with --backbone and "
                         f"--pretrained)")
    protocol, datasets, targets = _protocol_datasets(given, sweep, dataset_tag)
    method_specs = _method_specs(pick(given.methods, sweep, "methods", "all"), METHODS, protocol,
                                 named(given.methods, sweep, "methods", "--methods"))
    backbones, method_specs, demo_note = _vit_methods(
        pick(given.methods, sweep, "methods", "all"), method_specs, backbones, demo_note, METHODS)
    config_problems: list[str] = []  # reported with the bad values, by expand_cells
    overrides = parse_overrides(
        (overrides_list(sweep.get("set")) + (given.overrides or [])),
        sorted({m.name for m in method_specs}), config_problems)
    # Absolute, so SLURM tasks that start in another working directory find them.
    output = Path(pick(given.output, sweep, "output", "bench-results")).expanduser().resolve()
    cache_dir = Path(pick(given.cache_dir, sweep, "cache_dir") or output / "cache").expanduser().resolve()
    device, demo_note = _device(given, sweep, demo_note)
    launcher = pick(given.launcher, sweep, "launcher", "inprocess")
    if launcher not in LAUNCHERS:
        raise UsageError(f"{named(given.launcher, sweep, 'launcher', '--launcher')} {launcher!r}: "
                         f"choose one of {', '.join(LAUNCHERS)}")
    from bench.slurm import slurm_options

    slurm = slurm_options(given, sweep)  # validated for every launcher: a typo fails early
    options = _feature_options(given, sweep, device)
    every = getattr(given, "progress_every", 30.0)
    if not every >= 0:  # negative or nan
        raise UsageError(f"--progress-every must be 0 (never) or a number of seconds, got "
                         f"{every}")
    return RunConfig(
        sweep=sweep, shots=shots, seeds=seeds, data_root=data_root, backbones=backbones,
        datasets=datasets, methods=method_specs, protocol=protocol, targets=targets,
        overrides=overrides, config_problems=config_problems, output=output,
        cache_dir=str(cache_dir), device=device, launcher=launcher,
        group_by=pick(given.group_by, sweep, "group_by", "dataset"), options=options,
        demo_note=demo_note, slurm=slurm, backbone_note=backbone_note, progress_every=every,
        wait=getattr(given, "wait", True))


def _data_and_backbone(given, sweep) -> tuple[str, str, tuple[str, str | None], str | None]:
    """(data root, the tag ``all`` selects datasets by, (backbone, pretrained), demo note).

    Without a data root: the built-in demo suite, and without a backbone either the demo model
    too (with a note saying so). With one: it must be a folder; the backbone defaults to the
    protocol's (RN50-quickgelu, openai)."""
    from bench.sweep import PROTOCOL_BACKBONE, named, pick
    from datasets_registry import COOP_TAG, DEMO_TAG

    data_root = pick(given.data_root, sweep, "data_root")
    backbone = pick(given.backbone, sweep, "backbone")
    pretrained = pick(given.pretrained, sweep, "pretrained")
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
    flag = named(given.data_root, sweep, "data_root", "--data-root")
    if not root.exists():
        raise UsageError(f"{flag} {data_root} does not exist; point it at the folder "
                         f"holding the datasets (see `bench data check`)")
    if not root.is_dir():
        raise UsageError(f"{flag} {data_root} is a file, not a folder")
    if backbone is None:
        backbone, pretrained = PROTOCOL_BACKBONE[0], pretrained or PROTOCOL_BACKBONE[1]
    return str(root.resolve()), COOP_TAG, (backbone, pretrained), None


def _backbones(given, sweep, backbone: tuple[str, str | None]) -> list[tuple[str, str | None]]:
    """The sweep's list of backbones (unless --backbone is given), else the one backbone; each
    checked: a known open_clip name, a pretrained tag or file that exists."""
    from bench.backbone import check_backbone_name, resolve_pretrained

    backbones = [backbone]
    if "backbones" in sweep and given.backbone is None:
        backbones = [(b["backbone"], b.get("pretrained")) for b in sweep["backbones"]]
    for name, pre in backbones:
        check_backbone_name(name)
        resolve_pretrained(name, pre)
    return backbones


def _device(given, sweep, demo_note: str | None) -> tuple[str, str | None]:
    """(device, demo note): ``auto`` means the CPU for the demo, with a note why."""
    from bench.sweep import named, pick

    device = pick(given.device, sweep, "device", "auto")
    if not DEVICE.fullmatch(str(device)):
        raise UsageError(f"{named(given.device, sweep, 'device', '--device')} {device!r}: choose "
                         f"auto (a CUDA GPU when there is one), cpu, cuda or cuda:N (GPU N)")
    if demo_note and device == "auto":
        # The demo's tiny model is launch-bound on a GPU: on an H200 machine one demo dataset
        # x 1 seed ran in 51 s on CUDA and 32 s on its CPU (benchmarks/results/gpu.md).
        device = "cpu"
        demo_note += ("; it runs on the CPU, which is faster than a GPU for this tiny model "
                      "(--device cuda to override)")
    return device, demo_note


def _feature_options(given, sweep, device: str) -> dict:
    """Feature extraction and fitting options (RunConfig.options), validated."""
    from bench.base.determinism import check_policy, requested
    from bench.joint import check_option
    from bench.sweep import DEFAULT_FIT_THREADS, named, pick

    cuda = _cuda_expected(device)
    options = {
        "batch_size": pick(given.batch_size, sweep, "batch_size", 64),
        "workers": pick(given.workers, sweep, "workers", 8 if cuda else 0),
        "cache_dtype": _choice(pick(given.cache_dtype, sweep, "cache_dtype", "float32"),
                               CACHE_DTYPES,
                               named(given.cache_dtype, sweep, "cache_dtype", "--cache-dtype")),
        "autocast": _choice(pick(given.autocast, sweep, "autocast", "auto"), AUTOCAST,
                            named(given.autocast, sweep, "autocast", "--autocast")),
        "decode": _choice(pick(getattr(given, "decode", None), sweep, "decode", "cpu"), DECODES,
                          named(getattr(given, "decode", None), sweep, "decode", "--decode")),
        "progress": not given.quiet,
        "fit_threads": pick(getattr(given, "fit_threads", None), sweep, "fit_threads",
                            DEFAULT_FIT_THREADS),
        "determinism": check_policy(pick(getattr(given, "determinism", None), sweep,
                                         "determinism", requested()), "determinism"),
    }
    joint = pick(getattr(given, "joint_fits", None), sweep, "joint_fits", "auto")
    options["joint_fits"] = check_option(joint)
    if options["joint_fits"] is None:
        flag = named(getattr(given, "joint_fits", None), sweep, "joint_fits", "--joint-fits")
        raise UsageError(f"{flag} {joint!r}: give auto, on, off, or the most prompts "
                         f"(cells x classes) one joint pass may hold, e.g. 1024 (0 = off)")
    if options["decode"] == "gpu" and not cuda:
        raise UsageError(f"--decode gpu decodes images on the run's CUDA device, but this run is "
                         f"on the CPU (--device {device}); use --decode cpu, or --device cuda "
                         f"on a machine with a GPU")
    if options["batch_size"] < 1:
        raise UsageError(f"{named(given.batch_size, sweep, 'batch_size', '--batch-size')} must be "
                         f"a positive number")
    if not isinstance(options["fit_threads"], int) or options["fit_threads"] < 0:
        flag = named(getattr(given, "fit_threads", None), sweep, "fit_threads", "--fit-threads")
        raise UsageError(f"{flag} {options['fit_threads']!r}: give a number of threads "
                         f"(1 or more), or 0 for torch's default")
    if options["workers"] < 0:
        raise UsageError(f"{named(given.workers, sweep, 'workers', '--workers')} must be 0 "
                         f"(decode in this process) or more")
    return options


def _protocol_datasets(given, sweep, dataset_tag) -> tuple[str, list[str], list[str]]:
    """(protocol, the datasets cells train on, the targets each is also evaluated on).

    Few-shot and base-to-novel: ``--datasets`` trains and tests. Domain and cross-dataset:
    cells train on ``--source`` (default imagenet) and ``--datasets`` names the targets (default:
    the four ImageNet variants for domain; every other dataset of the suite for crossdataset)."""
    from bench.protocols import DEFAULT_SOURCE, DOMAIN_TAG, TRANSFER, check_protocol
    from bench.sweep import named, pick
    from datasets_registry import DATASETS

    protocol = check_protocol(str(pick(given.protocol, sweep, "protocol", "fewshot")))
    source = pick(getattr(given, "source", None), sweep, "source")
    asked = pick(given.datasets, sweep, "datasets")
    if asked is not None and not [p for p in (asked if isinstance(asked, list)
                                              else str(asked).split(",")) if str(p).strip()]:
        raise UsageError(f"{named(given.datasets, sweep, 'datasets', '--datasets')} is empty: name "
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


def _vit_methods(value, specs: list, backbones: list, demo_note: str | None, registry):
    """(backbones, method specs, demo note) with the methods that need a ViT image tower
    (methods/tuning.py ``needs_vit``) fitted to the backbones. On the demo's default model,
    naming such a method runs the demo's ViT (bench-demo-vit) instead of its ResNet, with a
    note; ``all`` and patterns keep the ResNet and leave those methods out, with a note. On any
    other backbone without a ViT tower, a method named explicitly is refused with one line; one
    selected by ``all`` or a pattern is left out, with a note."""
    from bench.backbone import resolve_pretrained
    from bench.encoder_cells import backbone_problem
    from methods.tuning import kind_of

    for spec in specs:
        kind_of(registry.entry(spec.name))  # a registration's unknown kind: one line

    parts = value if isinstance(value, list) else str(value).split(",")
    explicit = {p.strip().partition(":")[0] for p in parts
                if p.strip() != "all" and not any(ch in p for ch in "*?[")}
    vit = [s for s in specs if registry.entry(s.name).extra.get("needs_vit")]
    if demo_note and any(s.name in explicit for s in vit):
        from bench.demo import VIT_CHECKPOINT, VIT_MODEL_NAME

        backbones = [(VIT_MODEL_NAME, str(VIT_CHECKPOINT.resolve()))]
        resolve_pretrained(*backbones[0])
        named_vit = ", ".join(s.name for s in vit if s.name in explicit)
        demo_note += (f"; {named_vit} tune(s) inside a ViT image tower, so the demo's ViT "
                      f"{VIT_MODEL_NAME} runs every method of this run")
    left_out = []
    for spec in vit:
        for name, _ in backbones:
            problem = backbone_problem(registry.entry(spec.name), name)
            if problem is None:
                continue
            if spec.name in explicit:
                raise UsageError(problem)
            left_out.append(spec)
            break
    if left_out:
        names = list(dict.fromkeys(s.name for s in left_out))
        print(f"bench: {', '.join(names)} left out: they tune inside a ViT image tower and "
              f"{', '.join(b for b, _ in backbones)} has none (run them with a ViT backbone; on "
              f"the demo: --methods {','.join(names)})", file=sys.stderr)
        specs = [s for s in specs if s not in left_out]
        if not specs:
            raise UsageError("--methods selects no method that can run on this backbone "
                             "(see the note above)")
    return backbones, specs, demo_note
