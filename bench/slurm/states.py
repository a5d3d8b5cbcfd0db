"""Task states (sacct and squeue for SLURM; the process table and submitit's result pickles for
local jobs) and a sweep's status: every recorded cell's state (``bench.cell_state``) plus the
latest submission's task states."""

from __future__ import annotations

import datetime
import pickle
import re
import subprocess
from pathlib import Path

from bench.slurm.submissions import load_submissions

_TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL",
             "BOOT_FAIL", "DEADLINE", "REVOKED", "SPECIAL_EXIT", "FINISHED", "INTERRUPTED",
             "LOST", "GONE"}
_BAD = _TERMINAL - {"COMPLETED", "FINISHED"}


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


def sweep_status(output, with_jobs: bool = True, store=None) -> dict:
    """Everything `bench status` shows, for all submissions recorded under OUTPUT/sweep: the
    cells by state (``bench.cell_state``; a stale cell is pending work and is listed under both
    ``stale`` and ``pending``) and the latest submission's task states. ``store``: the
    ``ResultStore`` to read with (its ``damaged`` then names the damaged records)."""
    from bench.cell_state import DONE, FAILED, STALE, cell_state
    from results.store import ResultStore

    output = Path(output)
    store = store if store is not None else ResultStore(output)
    subs = load_submissions(output)
    cells: dict[str, dict] = {}
    for sub in subs:  # later submissions win; a cell keeps its latest task
        for task in sub["tasks"]:
            for c in task["cells"]:
                cells[c["id"]] = {**c, "job_id": task["job_id"]}
    done, failed, pending, stale = [], [], [], []
    for c in cells.values():
        state = cell_state(store, c)
        {DONE: done, FAILED: failed}.get(state, pending).append(c)
        if state == STALE:
            stale.append(c)
    jobs = {}
    if with_jobs and subs:
        jobs = task_states(subs[-1])
    return {"output": str(output), "submissions": subs, "cells": cells, "done": done,
            "failed": failed, "pending": pending, "stale": stale, "jobs": jobs}


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
