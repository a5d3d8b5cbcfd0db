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
"""

from __future__ import annotations

import argparse
import datetime
import pickle
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from bench.errors import BenchError, UsageError, did_you_mean
from results.atomic import atomic_write_json, read_json
from results.store import ResultStore, cell_id, method_label

SWEEP_DIR = "sweep"
SUBMISSIONS_DIR = "submissions"
DEFAULT_TIME = "4:00:00"  # submitit's own default (5 minutes) is too short for a real job
POLL_S = 2.0
END_GRACE_S = 60.0  # after every cell has a record, how long to wait for the tasks to exit

# key in the YAML `slurm:` mapping -> (what it must be, CLI flag)
SLURM_YAML_KEYS = {
    "partition": ("a partition name", "--partition"),
    "account": ("an account name", "--account"),
    "qos": ("a QOS name", "--qos"),
    "time": ("a time limit: minutes, or [D-]HH:MM[:SS], e.g. 90 or 2:00:00", "--time"),
    "gpus_per_job": ("a whole number of GPUs (0 or more)", "--gpus-per-job"),
    "cpus_per_job": ("a whole number of CPUs (1 or more)", "--cpus-per-job"),
    "mem": ("a memory size such as 16G or 4000M", "--mem"),
    "array_parallelism": ("the most array tasks running at once (1 or more)",
                          "--array-parallelism"),
    "sbatch_args": ("a list of extra sbatch arguments such as --constraint=a100",
                    "--sbatch-arg"),
    "submitit_dir": ("a folder for submitit's logs and pickles", "--submitit-dir"),
    "max_requeue": ("how often a task that hits its time limit is requeued (0 or more)",
                    "--max-requeue"),
}

# sbatch options submitit writes itself; --sbatch-arg must not set them behind its back
_RESERVED_SBATCH = {"array", "output", "error", "open-mode", "signal", "job-name", "wckey",
                    "parsable"}
_TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL",
             "BOOT_FAIL", "DEADLINE", "REVOKED", "SPECIAL_EXIT", "FINISHED", "INTERRUPTED",
             "LOST", "GONE"}
_BAD = _TERMINAL - {"COMPLETED", "FINISHED"}


# --------------------------------------------------------------------------------------------
# options
# --------------------------------------------------------------------------------------------

class _NoWait(argparse.Action):
    """``--no-wait`` sets both ``args.no_wait`` (True) and ``args.wait`` (False)."""

    def __call__(self, parser, namespace, values, option_string=None):
        namespace.no_wait = True
        namespace.wait = False


def add_slurm_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the SLURM / submitit option group to the `run` parser."""
    g = parser.add_argument_group(
        "SLURM and submitit (--launcher slurm|local; also settable under `slurm:` in the sweep "
        "YAML, flags win)")
    g.add_argument("--partition", help="SLURM partition")
    g.add_argument("--account", help="SLURM account to charge")
    g.add_argument("--qos", help="SLURM quality of service")
    g.add_argument("--time", help=f"time limit per array task: minutes or [D-]HH:MM[:SS] "
                                  f"(default {DEFAULT_TIME}); a task that reaches it is "
                                  f"checkpointed, requeued and resumes")
    g.add_argument("--gpus-per-job", type=int, metavar="N", help="GPUs per array task (default 0)")
    g.add_argument("--cpus-per-job", type=int, metavar="N", help="CPUs per array task")
    g.add_argument("--mem", help="memory per array task, e.g. 32G")
    g.add_argument("--array-parallelism", type=int, metavar="N",
                   help="most array tasks running at once (SLURM's %%N; default: all)")
    g.add_argument("--sbatch-arg", dest="sbatch_args", action="append", metavar="ARG",
                   help="extra sbatch argument, e.g. --sbatch-arg=--constraint=a100; repeatable")
    g.add_argument("--submitit-dir", metavar="DIR",
                   help="folder for submitit's logs and pickles (default OUTPUT/sweep/submitit)")
    g.add_argument("--max-requeue", type=int, metavar="N",
                   help="requeues allowed after hitting the time limit (default 3; preemptions "
                        "are always requeued)")
    g.add_argument("--no-wait", nargs=0, action=_NoWait,
                   help="submit and return at once; follow with `bench status OUTPUT`")
    parser.set_defaults(no_wait=False, wait=True)


def parse_time_minutes(value, where: str = "--time") -> int:
    """Minutes from 90, '90', '1:30:00', '2-00:00', '1-12:00:00' or '45:00' (MM:SS)."""
    if isinstance(value, bool):
        raise UsageError(f"{where}: expected {SLURM_YAML_KEYS['time'][0]}, not {value!r}")
    if isinstance(value, (int, float)):
        minutes = float(value)
    else:
        text = str(value).strip()
        m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text)
        if not m:
            raise UsageError(f"{where}: {value!r} is not {SLURM_YAML_KEYS['time'][0]}")
        days, a, b, c = m.groups()
        days = int(days or 0)
        if days and b is None:  # D-HH
            minutes = days * 1440 + int(a) * 60
        elif c is not None:  # [D-]HH:MM:SS
            minutes = days * 1440 + int(a) * 60 + int(b) + int(c) / 60
        elif b is not None:  # D-HH:MM, or MM:SS as sbatch reads it
            minutes = days * 1440 + int(a) * 60 + int(b) if days else int(a) + int(b) / 60
        else:
            minutes = int(a)
    if minutes <= 0:
        raise UsageError(f"{where}: the time limit must be positive, not {value!r}")
    return max(1, int(round(minutes)))


def _check_int(value, key: str, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        else:
            raise UsageError(f"{where}: expected {SLURM_YAML_KEYS[key][0]}, not {value!r}")
    if value < minimum:
        raise UsageError(f"{where}: expected {SLURM_YAML_KEYS[key][0]}, not {value}")
    return value


def _check_str(value, key: str, where: str) -> str:
    if isinstance(value, (dict, list, bool)) or value is None or str(value).strip() == "":
        raise UsageError(f"{where}: expected {SLURM_YAML_KEYS[key][0]}, not {value!r}")
    return str(value).strip()


def parse_sbatch_args(args: list[str], where: str = "--sbatch-arg") -> dict:
    """['--constraint=a100', '--exclusive', '--gres gpu:2'] -> submitit additional_parameters."""
    out: dict = {}
    for raw in args:
        for token in _split_sbatch(raw, where):
            if not token.startswith("--"):
                raise UsageError(f"{where}: {raw!r}: give long sbatch options such as "
                                 f"--constraint=a100 (short forms like -C are not accepted)")
            name, eq, value = token[2:].partition("=")
            if not re.fullmatch(r"[a-z][a-z0-9-]*", name):
                raise UsageError(f"{where}: {raw!r} is not an sbatch option")
            if name in _RESERVED_SBATCH:
                raise UsageError(f"{where}: --{name} is set by bench/submitit itself and cannot "
                                 f"be overridden")
            out[name.replace("-", "_")] = value if eq else True
    return out


def _split_sbatch(raw: str, where: str) -> list[str]:
    try:
        parts = shlex.split(str(raw))
    except ValueError as exc:
        raise UsageError(f"{where}: {raw!r}: {exc}") from None
    tokens: list[str] = []
    for p in parts:  # "--gres gpu:2" -> "--gres=gpu:2"
        if tokens and not p.startswith("-") and "=" not in tokens[-1]:
            tokens[-1] = f"{tokens[-1]}={p}"
        else:
            tokens.append(p)
    return tokens


def slurm_options(args, sweep: dict | None) -> dict:
    """Merge CLI flags over the sweep YAML's ``slurm:`` mapping; validated and normalised.

    Returns a dict with keys partition, account, qos, time_min, gpus_per_job, cpus_per_job,
    mem, array_parallelism, sbatch_args (list), additional_parameters (dict), submitit_dir,
    max_requeue (None where unset).
    """
    yaml_opts = (sweep or {}).get("slurm") or {}
    if not isinstance(yaml_opts, dict):
        raise UsageError(f"sweep file: 'slurm' must be a mapping of options "
                         f"({', '.join(SLURM_YAML_KEYS)}), not {type(yaml_opts).__name__}")
    for key in yaml_opts:
        if key not in SLURM_YAML_KEYS:
            hint = did_you_mean(str(key), SLURM_YAML_KEYS, cutoff=0.5, prefix="; did you mean")
            raise UsageError(f"sweep file: unknown key 'slurm.{key}'{hint} (known: "
                             f"{', '.join(SLURM_YAML_KEYS)})")
    merged: dict = {}
    for key in SLURM_YAML_KEYS:
        flag_value = getattr(args, key, None) if args is not None else None
        if flag_value is not None and flag_value != []:
            merged[key] = (flag_value, SLURM_YAML_KEYS[key][1])
        elif key in yaml_opts and yaml_opts[key] is not None:
            merged[key] = (yaml_opts[key], f"sweep file: slurm.{key}")
    opts: dict = {k: None for k in ("partition", "account", "qos", "gpus_per_job",
                                    "cpus_per_job", "mem", "array_parallelism", "submitit_dir",
                                    "max_requeue")}
    for key in ("partition", "account", "qos"):
        if key in merged:
            opts[key] = _check_str(*merged[key][:1], key, merged[key][1])
    value, where = merged.get("time", (DEFAULT_TIME, "--time"))
    opts["time_min"] = parse_time_minutes(value, where)
    for key, minimum in (("gpus_per_job", 0), ("cpus_per_job", 1), ("array_parallelism", 1),
                         ("max_requeue", 0)):
        if key in merged:
            opts[key] = _check_int(merged[key][0], key, merged[key][1], minimum)
    if "mem" in merged:
        value, where = merged["mem"]
        text = str(value).strip().upper() if not isinstance(value, bool) else ""
        if isinstance(value, int) and not isinstance(value, bool):
            text = f"{value}M"  # sbatch's unit for a bare number is megabytes
        if not re.fullmatch(r"\d+(\.\d+)?[KMGT]?B?", text):
            raise UsageError(f"{where}: expected {SLURM_YAML_KEYS['mem'][0]}, not {value!r}")
        opts["mem"] = text.removesuffix("B") if text.endswith(("KB", "MB", "GB", "TB")) else text
    sbatch = []
    if "sbatch_args" in merged:
        value, where = merged["sbatch_args"]
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise UsageError(f"{where}: expected {SLURM_YAML_KEYS['sbatch_args'][0]}, "
                             f"not {value!r}")
        sbatch = list(value)
    opts["sbatch_args"] = sbatch
    opts["additional_parameters"] = parse_sbatch_args(sbatch)
    if "submitit_dir" in merged:
        opts["submitit_dir"] = _check_str(merged["submitit_dir"][0], "submitit_dir",
                                          merged["submitit_dir"][1])
    return opts


# --------------------------------------------------------------------------------------------
# the job function
# --------------------------------------------------------------------------------------------

try:
    from submitit.helpers import Checkpointable as _Checkpointable
except ImportError:  # submitit is a dependency; keep `bench --help` working without it
    _Checkpointable = object


class BenchJob(_Checkpointable):
    """What each array task runs: ``bench.runner.run_job(job)``, checkpointable.

    On a time limit or preemption submitit calls ``checkpoint``, which resubmits the same job;
    the requeued run skips the cells already written, so it resumes where it stopped.
    ``include``: the submitting process's plugin paths (``bench.plugins``), imported again in
    the task so that plugin methods and datasets resolve there too.
    """

    def __init__(self, include=()):
        self.include = list(include)

    def __call__(self, job) -> dict:
        from bench.runner import run_job

        if getattr(self, "include", None):  # pickles from before include paths lack it
            from bench.plugins import include

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


# --------------------------------------------------------------------------------------------
# submission records
# --------------------------------------------------------------------------------------------

def sweep_dir(output) -> Path:
    return Path(output) / SWEEP_DIR


def cell_label(cell: dict) -> str:
    return f"{cell['dataset']}/{method_label(cell)}/k{cell['shots']}/s{cell['seed']}"


def load_submissions(output) -> list[dict]:
    folder = sweep_dir(output) / SUBMISSIONS_DIR
    records = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        if path.name.startswith("."):
            continue
        rec = read_json(path)
        if rec is None:
            continue
        rec["_path"] = str(path)
        records.append(rec)
    records.sort(key=lambda r: r.get("submitted", ""))
    return records


def _record_submission(output: Path, launcher: str, folder: Path, jobs: list, sjobs: list,
                       options: dict) -> dict:
    store = ResultStore(output)
    tasks = []
    for i, (job, sjob) in enumerate(zip(jobs, sjobs)):
        tasks.append({
            "index": i,
            "job_id": str(sjob.job_id),
            "key": job.key,
            "stdout": str(sjob.paths.stdout),
            "stderr": str(sjob.paths.stderr),
            "result_pickle": str(sjob.paths.result_pickle),
            "cells": [{"id": cell_id(c), "label": cell_label(c),
                       "result": str(store.path_for(c).relative_to(output)),
                       "failed": str(store.failed_path_for(c).relative_to(output))}
                      for c in job.cells],
        })
    first = str(sjobs[0].job_id)
    array_id = first.split("_")[0] if launcher == "slurm" else None
    now = datetime.datetime.now(datetime.timezone.utc)
    record = {"launcher": launcher, "submitted": now.isoformat(timespec="seconds"),
              "host": socket.gethostname(), "submitit_dir": str(folder), "array_id": array_id,
              "options": {k: v for k, v in options.items() if k != "additional_parameters"},
              "argv": sys.argv, "tasks": tasks}
    name = f"{now.strftime('%Y%m%dT%H%M%S')}-{array_id or first}.json"
    path = sweep_dir(output) / SUBMISSIONS_DIR / name
    atomic_write_json(path, record)
    record["_path"] = str(path)
    return record


# --------------------------------------------------------------------------------------------
# states
# --------------------------------------------------------------------------------------------

def _run(cmd: list[str], timeout: float = 20) -> str | None:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def _expand_slurm_ids(job_id: str) -> list[str]:
    """'12_3' -> ['12_3']; '12_[1-3,5%2]' -> ['12_1', '12_2', '12_3', '12_5']; '12' -> ['12']."""
    m = re.fullmatch(r"(\d+)_\[([^\]]+)\]", job_id)
    if not m:
        return [job_id]
    base, spec = m.groups()
    out = []
    for part in spec.split("%")[0].split(","):
        lo, _, hi = part.partition("-")
        for i in range(int(lo), int(hi or lo) + 1):
            out.append(f"{base}_{i}")
    return out


def slurm_states(array_ids: list[str]) -> dict[str, dict]:
    """{'12_3': {'state': 'COMPLETED', 'exit': '0:0', 'elapsed': ..., 'node': ...}} from sacct,
    and from squeue (all states, so also tasks that ended minutes ago) where accounting lags or
    a task is requeued. ``states[None]`` is True when squeue answered: then a task missing from
    both is gone (e.g. cancelled before it ever started, which leaves no accounting record)."""
    ids = [a for a in array_ids if a]
    states: dict = {None: False}
    if not ids:
        return states
    out = _run(["sacct", "-X", "-n", "-P", "-o", "JobID,State,ExitCode,Elapsed,NodeList",
                "-j", ",".join(ids)])
    for line in (out or "").splitlines():
        parts = line.split("|")
        if len(parts) < 5:
            continue
        jid, state, code, elapsed, node = parts[:5]
        for tid in _expand_slurm_ids(jid):
            states[tid] = {"state": state.split()[0] if state else "UNKNOWN", "exit": code,
                           "elapsed": elapsed, "node": node}
    try:
        sq = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T", "-j",
                             ",".join(ids)], capture_output=True, text=True, timeout=20)
        # an array the controller has forgotten entirely: "Invalid job id specified"
        states[None] = sq.returncode == 0 or "invalid job id" in sq.stderr.lower()
        out = sq.stdout if sq.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        out = None
    for line in (out or "").splitlines():
        jid, _, state = line.partition("|")
        state = state.strip()
        for tid in _expand_slurm_ids(jid.strip()):
            # the controller is ahead of accounting: trust it for live states (a requeued
            # task that sacct still shows ended) and for tasks sacct does not know yet
            if tid not in states or state not in _TERMINAL:
                states[tid] = {**states.get(tid, {"exit": "", "elapsed": "", "node": ""}),
                               "state": state}
    return states


def _pid_alive(pid: str) -> bool:
    try:
        cmdline = Path(f"/proc/{int(pid)}/cmdline").read_bytes()
    except (OSError, ValueError):
        return False
    return b"submitit" in cmdline


def _read_result_pickle(path: str):
    try:
        with open(path, "rb") as fh:
            return pickle.load(fh)
    except Exception:  # noqa: BLE001 - missing, partial or unreadable: no result
        return None


def task_states(record: dict) -> dict[str, dict]:
    """job_id -> {'state', 'exit', 'error'} for every task of one submission."""
    out: dict[str, dict] = {}
    sl = slurm_states([record["array_id"]]) if record["launcher"] == "slurm" else {}
    for task in record["tasks"]:
        jid = task["job_id"]
        res = _read_result_pickle(task["result_pickle"])
        error = None
        if isinstance(res, tuple) and len(res) == 2 and res[0] == "error":
            error = str(res[1])
        if record["launcher"] == "slurm":
            info = dict(sl.get(jid) or {"state": "UNKNOWN", "exit": "", "elapsed": "",
                                        "node": ""})
            if info["state"] == "UNKNOWN" and res is not None:
                info["state"] = "COMPLETED" if error is None else "FAILED"
            elif jid not in sl and sl.get(None):
                info["state"] = "GONE"  # neither the controller nor accounting knows it
        else:
            if _pid_alive(jid):
                info = {"state": "RUNNING"}
            elif res is None:
                info = {"state": "LOST"}
            else:
                info = {"state": "FINISHED" if error is None else "FAILED"}
        info["error"] = error
        out[jid] = info
    return out


def sweep_status(output, with_jobs: bool = True) -> dict:
    """Everything `bench status` shows, for all submissions recorded under OUTPUT/sweep."""
    output = Path(output)
    subs = load_submissions(output)
    cells: dict[str, dict] = {}
    for sub in subs:  # later submissions win; a cell keeps its latest task
        for task in sub["tasks"]:
            for c in task["cells"]:
                cells[c["id"]] = {**c, "job_id": task["job_id"]}
    done, failed, pending = [], [], []
    for c in cells.values():
        if (output / c["result"]).is_file():
            done.append(c)
        elif (output / c["failed"]).is_file():
            failed.append(c)
        else:
            pending.append(c)
    jobs = {}
    if with_jobs and subs:
        jobs = task_states(subs[-1])
    return {"output": str(output), "submissions": subs, "cells": cells, "done": done,
            "failed": failed, "pending": pending, "jobs": jobs}


def is_active(info: dict, record: dict) -> bool:
    """Queued or running; a task neither sacct nor squeue knows counts as active only during
    the first two minutes after submission (accounting may lag behind sbatch)."""
    if info["state"] in _TERMINAL:
        return False
    if info["state"] == "UNKNOWN":
        return not _submitted_long_ago(record)
    return True


def active_tasks(record: dict) -> list[str]:
    return [jid for jid, info in task_states(record).items() if is_active(info, record)]


def _submitted_long_ago(record: dict, seconds: float = 120) -> bool:
    try:
        t = datetime.datetime.fromisoformat(record["submitted"])
    except (KeyError, ValueError):
        return True
    return (datetime.datetime.now(datetime.timezone.utc) - t).total_seconds() > seconds


# --------------------------------------------------------------------------------------------
# launch and wait
# --------------------------------------------------------------------------------------------

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
        from bench.plugins import included

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


def _task_pending(output: Path, record: dict, job_id: str) -> int:
    task = next(t for t in record["tasks"] if t["job_id"] == job_id)
    return sum(1 for c in task["cells"] if not (output / c["result"]).is_file()
               and not (output / c["failed"]).is_file())


def _cell_counts(output: Path, record: dict) -> tuple[int, int, int]:
    done = failed = pending = 0
    for task in record["tasks"]:
        for c in task["cells"]:
            if (output / c["result"]).is_file():
                done += 1
            elif (output / c["failed"]).is_file():
                failed += 1
            else:
                pending += 1
    return done, failed, pending


def wait_for(output: Path, record: dict, sjobs: list | None = None,
             poll_s: float = POLL_S) -> int:
    """Poll the results store and the task states until every task has ended (or every cell
    has a record); show a tqdm bar of cells done/failed/pending."""
    from tqdm import tqdm

    total = sum(len(t["cells"]) for t in record["tasks"])
    tty = sys.stderr.isatty()
    bar = tqdm(total=total, unit="cell", desc="bench sweep", dynamic_ncols=True,
               file=sys.stderr, mininterval=0.5 if tty else 30)
    all_recorded = 0.0
    try:
        while True:
            done, failed, pending = _cell_counts(output, record)
            states = task_states(record)
            active = sum(1 for s in states.values() if is_active(s, record))
            if bar.n != done + failed or tty:
                bar.update(done + failed - bar.n)
            bar.set_postfix_str(f"done={done} failed={failed} pending={pending} "
                                f"tasks running/queued={active}", refresh=tty)
            if active == 0:
                break
            if pending == 0:  # every cell has a record: give the tasks a moment to exit
                all_recorded = all_recorded or time.monotonic()
                if time.monotonic() - all_recorded > END_GRACE_S:
                    break
            time.sleep(poll_s)
    finally:
        bar.close()
    done, failed, pending = _cell_counts(output, record)
    bad = {jid: s for jid, s in states.items() if s["state"] in _BAD}
    print(f"bench: {done} done, {failed} failed, {pending} without a result "
          f"(of {total} submitted cells)", file=sys.stderr)
    for jid, s in bad.items():
        task = next(t for t in record["tasks"] if t["job_id"] == jid)
        print(f"bench: task {jid} ({task['key']}) ended {s['state']}; log: {task['stderr']}",
              file=sys.stderr)
    if failed or pending:
        print(f"bench: `bench status {output}` shows the failures; rerun the same command to "
              f"retry failed cells and run the missing ones", file=sys.stderr)
    return 0 if failed == 0 and pending == 0 else 1
