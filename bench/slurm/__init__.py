"""Launch a sweep's jobs through submitit: on SLURM (one job array) or as local subprocesses.

The function every array task runs is ``BenchJob`` (a ``submitit.helpers.Checkpointable``
around ``bench.runner.run_job``): on a time limit or preemption, submitit checkpoints it and
requeues the task, and the requeued task resumes for free, because ``run_job`` skips every cell
whose result is already written.

Each submission is recorded atomically in ``OUTPUT/sweep/submissions/<time>-<id>.json``: the
launcher, the submitit log folder, the SLURM array id, and for each array task its job id, its
job key, its log files and its cells (result paths). ``bench status OUTPUT`` reads these records,
the results store and ``sacct`` (or, for the local launcher, the process table and submitit's
result files) to say which cells are done, failed or pending and which tasks failed.

SLURM options come from CLI flags over the sweep YAML's ``slurm:`` mapping (``slurm_options``).

One module per concern: ``options`` (flags and the YAML mapping), ``job`` (``BenchJob``),
``submissions`` (the records), ``states`` (sacct/squeue, task states, ``sweep_status``),
``launch`` (submitit) and ``wait`` (the wait loop). Every name is re-exported here, so
``from bench.slurm import X`` works as it did when this was one module (and submission pickles
that name ``bench.slurm.BenchJob`` still load).
"""

from bench.slurm.job import BenchJob
from bench.slurm.launch import _make_executor, launch_submitit
from bench.slurm.options import (DEFAULT_TIME, SLURM_YAML_KEYS, add_slurm_arguments,
                                 parse_sbatch_args, parse_time_minutes, slurm_options)
from bench.slurm.states import (_expand_slurm_ids, active_tasks, is_active, slurm_states,
                                task_states, sweep_status)
from bench.slurm.submissions import (SUBMISSIONS_DIR, SWEEP_DIR, cell_label, load_submissions,
                                     sweep_dir)
from bench.slurm.wait import END_GRACE_S, POLL_S, wait_for

__all__ = ["BenchJob", "DEFAULT_TIME", "END_GRACE_S", "POLL_S", "SLURM_YAML_KEYS",
           "SUBMISSIONS_DIR", "SWEEP_DIR", "_expand_slurm_ids", "_make_executor", "active_tasks",
           "add_slurm_arguments", "cell_label", "is_active", "launch_submitit",
           "load_submissions", "parse_sbatch_args", "parse_time_minutes", "slurm_options",
           "slurm_states", "sweep_dir", "sweep_status", "task_states", "wait_for"]
