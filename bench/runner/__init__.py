"""The runner: ``run_job`` (bench/runner/job.py) is what every launcher runs (in-process,
submitit local, SLURM). By concern:

- ``job``: a job's cells by dataset, the backbone loaded once, the reproducibility policy, the
  leftovers of killed runs cleaned up;
- ``dataset``: one dataset's cells, claimed a seed at a time, run unit by unit (a cell or a
  joint fit); a data problem fails the dataset's cells with one message;
- ``claims``: claiming cells under their locks, so that processes on one output share its work;
- ``context``: what a dataset's cells share (features, subsets, view stores, targets);
- ``cell``: a cell's lifecycle (record, subset, Task, fit, evaluation, write, failure);
- ``joint``: cells that differ only in shots fitted together.
"""

from bench.runner.job import run_job

__all__ = ["run_job"]
