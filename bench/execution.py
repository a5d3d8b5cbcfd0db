"""Plan a resolved sweep and execute it: the one path every front end takes (`bench run`,
:func:`bench.api.execute`, :func:`bench.api.run`).

:func:`plan` expands the grid into cells, attaches their inputs and groups those not done into
jobs (resumable: a cell with a sound record is skipped); :func:`execute` checks what can be
checked before any work (device, weights, writable folders), writes ``OUTPUT/plan.json`` and
hands the jobs to a launcher: in this process, local subprocesses or SLURM (submitit). Notes
and progress go to stderr, as from the command line.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.base.errors import UsageError
from bench.resolve import RunConfig


@dataclass
class Plan:
    """A resolved sweep's cells (every cell of the grid, with its inputs) and the jobs that run
    those not done yet."""

    config: RunConfig
    cells: list[dict]
    jobs: list = field(default_factory=list)  # bench.planner.Job

    @property
    def n_todo(self) -> int:
        return sum(len(j.cells) for j in self.jobs)

    @property
    def n_done(self) -> int:
        return len(self.cells) - self.n_todo


@dataclass
class Outcome:
    """What :func:`execute` did: cells of the grid, done before, run now, failed, left to
    another process (locked); ``code`` is the command's exit status (1 when a cell failed)."""

    cells: int
    done_before: int
    ran: int
    failed: int = 0
    locked: int = 0
    code: int = 0
    seconds: float = 0.0


def plan(cfg: RunConfig) -> Plan:
    """Apply the run's reproducibility policy, check the device and the weights, print the
    notes, and plan: the grid's cells and the jobs of those not done."""
    from bench.planner import expand_cells, plan as plan_jobs

    cfg.options["determinism"] = _apply_determinism(cfg.options["determinism"])
    _check_device(cfg.device, cfg.launcher)
    for note in (cfg.demo_note, cfg.backbone_note):
        if note:
            print(note, file=sys.stderr)
    _check_weights(cfg.backbones, cfg.launcher)
    cells = expand_cells(cfg.backbones, cfg.datasets, cfg.methods, cfg.shots,
                         cfg.seeds, cfg.overrides, cfg.config_problems,
                         protocol=cfg.protocol, targets=cfg.targets)
    jobs = plan_jobs(cells, data_root=cfg.data_root, output=str(cfg.output),
                     cache_dir=cfg.cache_dir, device=cfg.device, group_by=cfg.group_by,
                     options=cfg.options)
    result = Plan(cfg, cells, jobs)
    print(f"bench: {len(cells)} cells ({result.n_done} already done), {result.n_todo} to run "
          f"in {len(jobs)} job(s); results in {cfg.output}", file=sys.stderr)
    return result


def execute(planned: Plan) -> Outcome:
    """Run a plan's jobs with its launcher; SLURM without waiting (``wait`` false) submits and
    returns."""
    cfg = planned.config
    _check_writable(cfg.output)
    _check_writable(Path(cfg.cache_dir), "--cache-dir")
    write_plan(cfg.output, planned.cells)
    t0 = time.perf_counter()
    outcome = Outcome(len(planned.cells), planned.n_done, planned.n_todo)
    if planned.jobs:
        if cfg.launcher == "inprocess":
            counts = run_inprocess(planned.jobs, cfg)
            outcome.failed, outcome.locked = counts["failed"], counts["locked"]
            outcome.code = 1 if outcome.failed else 0
        else:
            from bench.slurm import launch_submitit

            outcome.code = launch_submitit(planned.jobs, cfg.launcher, cfg.slurm, wait=cfg.wait)
    outcome.seconds = time.perf_counter() - t0
    if cfg.launcher == "inprocess" or cfg.wait:
        print(f"bench: finished in {outcome.seconds:.1f} s", file=sys.stderr)
    return outcome


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


def run_inprocess(jobs, cfg: RunConfig) -> dict:
    """The jobs one after another in this process; counts of failed and locked cells."""
    from bench.base.errors import sigterm_as_interrupt
    from bench.progress import log_progress
    from bench.runner import run_job

    failed = locked = 0
    encode_s = 0.0
    damaged: list = []
    progress = log_progress(sum(len(j.cells) for j in jobs), cfg.progress_every)
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
    return {"failed": failed, "locked": locked}
