"""Submit a sweep's jobs through submitit, as one SLURM job array or as local subprocesses,
record the submission, and wait for it unless told not to."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from bench.base.errors import BenchError, UsageError
from bench.slurm.job import BenchJob
from bench.slurm.states import active_tasks
from bench.slurm.submissions import _record_submission, load_submissions, sweep_dir
from bench.slurm.wait import _task_pending, wait_for

def _make_executor(launcher: str, folder: Path, options: dict):
    import submitit

    if launcher == "slurm" and shutil.which("sbatch") is None:
        raise BenchError("--launcher slurm: `sbatch` is not on PATH here; run bench on a SLURM "
                         "login node, or use --launcher local (subprocesses on this machine)")
    kwargs = {}
    if launcher == "slurm" and options.get("max_requeue") is not None:
        kwargs["slurm_max_num_timeout"] = options["max_requeue"]
    executor = submitit.AutoExecutor(folder=str(folder / "%j"), cluster=launcher, **kwargs)
    params: dict = {"name": "bench", "timeout_min": options["time_min"]}
    if options.get("gpus_per_job") is not None:
        params["gpus_per_node"] = options["gpus_per_job"]
    if options.get("cpus_per_job") is not None:
        params["cpus_per_task"] = options["cpus_per_job"]
    if launcher == "slurm":
        for key in ("partition", "account", "qos", "mem", "array_parallelism"):
            if options.get(key) is not None:
                params[f"slurm_{key}"] = options[key]
        if options.get("additional_parameters"):
            params["slurm_additional_parameters"] = dict(options["additional_parameters"])
    executor.update_parameters(**params)
    return executor


def launch_submitit(jobs: list, launcher: str, options: dict, wait: bool = True) -> int:
    """Submit ``jobs`` as one job array; wait with a progress bar unless ``wait`` is False.

    Returns 0 when every submitted cell is done (or, without waiting, when submission worked),
    1 when cells failed or tasks ended without writing their cells.
    """
    if launcher not in ("slurm", "local"):
        raise UsageError(f"launch_submitit: launcher must be 'slurm' or 'local', not {launcher!r}")
    if not jobs:
        return 0
    outputs = {str(j.output) for j in jobs}
    if len(outputs) != 1:
        raise UsageError(f"all jobs of a sweep must share one output folder, got {sorted(outputs)}")
    output = Path(outputs.pop())
    subs = load_submissions(output)
    if subs:
        # only tasks that still have cells to write block a new submission (they would
        # compute the same cells twice); a task finishing up its last cell does not
        busy = [jid for jid in active_tasks(subs[-1])
                if _task_pending(output, subs[-1], jid)]
        if busy:
            what = (f"scancel {subs[-1]['array_id']}" if subs[-1]["launcher"] == "slurm"
                    else "stop them")
            raise BenchError(
                f"{len(busy)} task(s) of the previous submission to {output} are still queued "
                f"or running ({', '.join(busy[:5])}{' ...' if len(busy) > 5 else ''}); wait "
                f"for them (`bench status {output}`) or {what}, then rerun")
    folder = Path(options.get("submitit_dir") or sweep_dir(output) / "submitit").expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    executor = _make_executor(launcher, folder.resolve(), options)
    try:
        from bench.base.plugins import included

        sjobs = executor.map_array(BenchJob(included()), jobs)
    except Exception as exc:  # submitit wraps sbatch's message in its own exception types
        msg = str(exc).strip().splitlines()
        raise BenchError(f"submitting {len(jobs)} job(s) to {launcher} failed: "
                         f"{' '.join(msg[-3:])[:600]}") from None
    record = _record_submission(output, launcher, folder.resolve(), jobs, sjobs, options)
    n_cells = sum(len(j.cells) for j in jobs)
    where = (f"SLURM array {record['array_id']}" if launcher == "slurm"
             else f"{len(sjobs)} local process(es)")
    print(f"bench: submitted {len(jobs)} task(s) with {n_cells} cells as {where}; logs in "
          f"{folder}", file=sys.stderr)
    if not wait:
        print(f"bench: not waiting; follow with `bench status {output}`", file=sys.stderr)
        return 0
    try:
        return wait_for(output, record, sjobs)
    except KeyboardInterrupt:
        what = (f"the jobs keep running on SLURM (scancel {record['array_id']} stops them)"
                if launcher == "slurm" else "the local jobs keep running")
        print(f"\nbench: stopped waiting; {what}; `bench status {output}` shows progress",
              file=sys.stderr)
        return 130
