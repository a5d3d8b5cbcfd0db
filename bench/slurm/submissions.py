"""Submission records: ``OUTPUT/sweep/submissions/<time>-<id>.json``, one per submission, written
atomically: the launcher, the submitit log folder, the SLURM array id, and for each array task its
job id, job key, log files and cells (ids, labels, result paths relative to OUTPUT)."""

from __future__ import annotations

import datetime
import socket
import sys
from pathlib import Path

from results.atomic import atomic_write_json, read_json
from results.records import cell_id, method_label
from results.store import ResultStore

SWEEP_DIR = "sweep"
SUBMISSIONS_DIR = "submissions"

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
