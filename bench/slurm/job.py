"""The function every array task runs: ``BenchJob``, checkpointable, so that a task hit by its
time limit or preempted is requeued and resumes (``run_job`` skips the cells already written)."""

from __future__ import annotations

try:
    from submitit.helpers import Checkpointable as _Checkpointable
except ImportError:  # submitit is a dependency; keep `bench --help` working without it
    _Checkpointable = object


class BenchJob(_Checkpointable):
    """What each array task runs: ``bench.runner.run_job(job)``, checkpointable.

    On a time limit or preemption submitit calls ``checkpoint``, which resubmits the same job;
    the requeued run skips the cells already written, so it resumes where it stopped.
    ``include``: the submitting process's plugin paths (``bench.base.plugins``), imported again in
    the task so that plugin methods and datasets resolve there too.
    """

    def __init__(self, include=()):
        self.include = list(include)

    def __call__(self, job) -> dict:
        from bench.runner import run_job

        if getattr(self, "include", None):  # pickles from before include paths lack it
            from bench.base.plugins import include

            include(self.include)
        print(f"bench: array task for {job.key}: {len(job.cells)} cells", flush=True)
        counts = run_job(job)
        print(f"bench: finished {job.key}: {counts}", flush=True)
        return counts

    def checkpoint(self, job):
        from submitit.helpers import DelayedSubmission

        print(f"bench: checkpoint of {job.key}: requeued; the cells already written are kept",
              flush=True)
        return DelayedSubmission(self, job)
