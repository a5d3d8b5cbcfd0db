"""`bench status OUTPUT`: where a sweep stands, in flight or finished.

Reads the submissions recorded in OUTPUT/sweep/ by `bench run --launcher slurm|local`, the
results store, and the task states (sacct/squeue for SLURM, the process table and submitit's
result files for local jobs). For a sweep run in-process it reads the plan that `bench run`
records in OUTPUT/plan.json before it starts, and tells done, failed, running (a live lock in
OUTPUT/locks) and pending cells apart; exit 0 only when every planned cell is done. For SLURM and
local sweeps: exit 0 when nothing failed (all done, or still running), 1 when cells failed or
tasks ended leaving cells without a result.

A cell's state (done, failed, stale, pending) comes from ``bench.cell_state.cell_state``, for
every kind of sweep: done only when its record passes the one validation that `bench run` and
`bench report` use too (results/validate.py) and is the record of that very cell (its
``cell_id``, which covers the cell's inputs); a damaged or stale record counts as pending, with
one warning per damaged file.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench.base.errors import UsageError


def register(sub) -> None:
    p = sub.add_parser("status", help="progress and failures of a sweep (any launcher)",
                       description="Show cells done / failed / pending for the sweep in OUTPUT, "
                                   "which SLURM or local tasks failed, and where their logs are.")
    p.add_argument("output", metavar="OUTPUT", help="the sweep's results folder (bench run "
                                                    "--output)")
    p.add_argument("--tracebacks", action="store_true",
                   help="print the full traceback of every failed cell")
    p.add_argument("--cells", action="store_true", help="list every pending cell too")
    p.set_defaults(func=main)


def bar(done: int, failed: int, total: int, width: int = 40) -> str:
    if total <= 0:
        return "[" + " " * width + "]"
    d = round(width * done / total)
    f = min(width - d, round(width * failed / total))
    if failed and f == 0 and d < width:
        f = 1
    return "[" + "#" * d + "x" * f + "." * (width - d - f) + "]"


def _tail(path: str, n: int = 3) -> list[str]:
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [ln for ln in lines if ln.strip()][-n:]


def main(args) -> int:
    from bench.slurm import sweep_status
    from results.store import ResultStore

    output = Path(args.output).expanduser()
    if not output.is_dir():
        raise UsageError(f"{output} is not a folder; give the --output folder of a sweep")
    out = sys.stdout
    store = ResultStore(output)
    st = sweep_status(output, store=store)
    if st["submissions"]:
        return _launcher_status(output, store, st, args, out)
    if (output / "plan.json").is_file():
        return _inprocess_status(output, store, args, out)
    return _unplanned_status(output, store, args, out)


def _unplanned_status(output: Path, store, args, out) -> int:
    """An in-process sweep without a recorded plan (run before plans were recorded): only the
    records tell what is done and failed; nothing tells what is pending."""
    records = store.load_all()
    if not records and not store.damaged:
        print(f"{output}: no sweep here (no results, no submissions under {output}/sweep)",
              file=out)
        return 1
    ok = [r for r in records if r.get("status") == "ok"]
    bad = [r for r in records if r.get("status") != "ok"]
    damaged = (f", {len(store.damaged)} damaged (left out of reports; `bench run` computes "
               f"them again)" if store.damaged else "")
    print(f"sweep {output} (in-process): {len(ok)} cells done, {len(bad)} failed{damaged}",
          file=out)
    _print_failed_records(bad, args.tracebacks, out)
    return 1 if bad or store.damaged else 0


def _launcher_status(output: Path, store, st: dict, args, out) -> int:
    """A SLURM or local sweep (``st``: bench.slurm.sweep_status): cell counts, the latest
    submission's tasks, failed tasks and cells, and what to do next."""
    from bench.slurm import is_active

    latest = st["submissions"][-1]
    jobs = st["jobs"]
    active = {jid for jid, info in jobs.items() if is_active(info, latest)}
    _print_cell_counts(output, store, st, out)
    where = (f"SLURM array {latest['array_id']}" if latest["launcher"] == "slurm"
             else "local processes")
    print(f"\nlatest submission {latest['submitted']} ({len(st['submissions'])} in all): "
          f"{len(latest['tasks'])} task(s) as {where}; {len(active)} queued or running", file=out)
    print(f"submitit logs: {latest['submitit_dir']}", file=out)
    _print_task_table(latest, jobs, st, out)
    bad_tasks = _failed_tasks(latest, jobs)
    _print_failed_tasks(bad_tasks, out)
    if st["failed"]:
        _print_failed_records([_failed_record(output, c) for c in st["failed"]],
                              args.tracebacks, out)

    lost = [c for c in st["pending"] if c["job_id"] not in active]
    if args.cells and st["pending"]:
        print(f"\npending cells ({len(st['pending'])}):", file=out)
        for c in st["pending"]:
            print(f"  {c['label']}  (task {c['job_id']})", file=out)
    if lost:
        print(f"\n{len(lost)} pending cell(s) belong to tasks that are no longer running; rerun "
              f"the same `bench run` command to submit them (only cells without a result are "
              f"submitted)", file=out)
    elif active:
        print(f"\nin flight: run `bench status {output}` again to follow", file=out)
    if st["failed"]:
        print(f"rerunning the same `bench run` retries the {len(st['failed'])} failed cell(s)",
              file=out)
    return 1 if st["failed"] or lost or bad_tasks else 0


def _print_cell_counts(output: Path, store, st: dict, out) -> None:
    """The header: cells done, failed and pending, damaged records among them, a bar."""
    n_damaged = sum(1 for c in st["stale"] if any(str(output / c[k]) in store.damaged
                                                  for k in ("result", "failed")))
    done, failed, pending = len(st["done"]), len(st["failed"]), len(st["pending"])
    total = done + failed + pending
    pct = 100.0 * (done + failed) / total if total else 100.0
    print(f"sweep {output}: {total} cells: {done} done, {failed} failed, {pending} pending",
          file=out)
    if n_damaged:
        print(f"({n_damaged} of the pending cells have a damaged record, named above; `bench run` "
              f"computes them again)", file=out)
    print(f"{bar(done, failed, total)} {pct:5.1f}%", file=out)


def _print_task_table(latest: dict, jobs: dict, st: dict, out) -> None:
    """One row per task of the latest submission: its state and its cells done/failed/pending."""
    rows = []
    done_ids = {c["id"] for c in st["done"]}
    failed_ids = {c["id"] for c in st["failed"]}
    for task in latest["tasks"]:
        info = jobs.get(task["job_id"], {"state": "UNKNOWN"})
        n_done = sum(1 for c in task["cells"] if c["id"] in done_ids)
        n_fail = sum(1 for c in task["cells"] if c["id"] in failed_ids)
        n_pend = len(task["cells"]) - n_done - n_fail
        rows.append((task["job_id"], info["state"], f"{n_done}/{n_fail}/{n_pend}", task["key"]))
    w0 = max(len("task"), *(len(r[0]) for r in rows))
    w1 = max(len("state"), *(len(r[1]) for r in rows))
    w2 = max(len("done/failed/pending"), *(len(r[2]) for r in rows))
    print(f"  {'task':<{w0}}  {'state':<{w1}}  {'done/failed/pending':<{w2}}  job", file=out)
    for r in rows:
        print(f"  {r[0]:<{w0}}  {r[1]:<{w1}}  {r[2]:<{w2}}  {r[3]}", file=out)


def _failed_tasks(latest: dict, jobs: dict) -> list[tuple[dict, dict]]:
    """(task, job info) of the latest submission's tasks that ended other than completed, or
    reported an error."""
    from bench.slurm import is_active

    return [(t, jobs[t["job_id"]]) for t in latest["tasks"]
            if t["job_id"] in jobs and (jobs[t["job_id"]]["state"] not in
                                        ("COMPLETED", "FINISHED")
                                        and not is_active(jobs[t["job_id"]], latest)
                                        or jobs[t["job_id"]].get("error"))]


def _print_failed_tasks(bad_tasks: list[tuple[dict, dict]], out) -> None:
    """Each failed task's state, exit code, log files, and its error or the end of its stderr."""
    if not bad_tasks:
        return
    print(f"\nfailed tasks ({len(bad_tasks)}):", file=out)
    for task, info in bad_tasks:
        code = f", exit {info['exit']}" if info.get("exit") else ""
        why = (" (SLURM has no record of it: cancelled before it started?)"
               if info["state"] == "GONE" else "")
        print(f"  {task['job_id']} {info['state']}{code}{why}: {task['key']}", file=out)
        print(f"    stderr: {task['stderr']}", file=out)
        print(f"    stdout: {task['stdout']}", file=out)
        for line in (str(info["error"]).strip().splitlines()[-2:] if info.get("error")
                     else _tail(task["stderr"])):
            print(f"    | {line}", file=out)


def _failed_record(output: Path, cell: dict) -> dict:
    """A failed cell's .failed.json record, or (unreadable) its label and path."""
    rec = _load(output / cell["failed"])
    return rec or {"_label": cell["label"], "_path": str(output / cell["failed"])}


def _load(path: Path) -> dict | None:
    from results.atomic import read_json

    rec = read_json(path)
    if rec is not None:
        rec["_path"] = str(path)
    return rec


def _label(rec: dict) -> str:
    if "_label" in rec:
        return rec["_label"]
    from bench.slurm import cell_label

    try:
        return cell_label(rec)
    except KeyError:
        return rec.get("_path", "?")


def _print_failed_records(records: list[dict], tracebacks: bool, out) -> None:
    if not records:
        return
    print(f"\nfailed cells ({len(records)}):", file=out)
    for rec in records:
        err = rec.get("error") or {}
        print(f"  {_label(rec)}: {err.get('type', '?')}: {str(err.get('message', ''))[:300]}",
              file=out)
        print(f"    record: {rec.get('_path')}", file=out)
        if tracebacks and err.get("traceback"):
            for line in str(err["traceback"]).rstrip().splitlines():
                print(f"    | {line}", file=out)


@dataclass
class _PlannedCells:
    """The planned cells of an in-process sweep by state (``failed``: their failure records;
    ``holders``: who holds the running ones, as lock holder description -> cell count)."""

    done: list = field(default_factory=list)
    failed: list = field(default_factory=list)
    running: list = field(default_factory=list)
    pending: list = field(default_factory=list)
    holders: dict = field(default_factory=dict)


def _read_plan(output: Path) -> tuple[dict, list[dict]]:
    """OUTPUT/plan.json and its cells; a usage error when it is damaged."""
    from results.atomic import read_json

    plan = read_json(output / "plan.json")
    cells = plan.get("cells") if plan else None
    if not isinstance(cells, list) or not all(isinstance(c, dict) for c in cells):
        raise UsageError(f"{output}/plan.json is damaged; rerun the same `bench run` command "
                         f"to record the plan again (results already written are kept)")
    return plan, cells


def _sort_planned_cells(output: Path, store, cells: list[dict]) -> _PlannedCells:
    """Done (a sound record of its own), else running (a live lock), else failed, else pending
    (no record, or a stale one: computed again)."""
    from bench.cell_state import DONE, FAILED, cell_state
    from bench.locks import CellLocks, is_stale, read_holder
    from results.records import cell_id

    locks = CellLocks(output / "locks")
    by_state = _PlannedCells()
    for cell in cells:
        state = cell_state(store, cell)
        if state == DONE:
            by_state.done.append(cell)
            continue
        lock = locks.path(cell_id(cell))
        if lock.is_file() and not is_stale(lock, locks.stale_after_s):
            holder = read_holder(lock)
            if holder is not None:
                who = holder.describe()
                by_state.holders[who] = by_state.holders.get(who, 0) + 1
            by_state.running.append(cell)
            continue
        if state == FAILED:
            failure = store.read(store.failed_path_for(cell))
            failure["_path"] = str(store.failed_path_for(cell))
            by_state.failed.append(failure)
        else:  # pending, or stale (a record that does not count: computed again)
            by_state.pending.append(cell)
    return by_state


def _inprocess_status(output: Path, store, args, out) -> int:
    """Done, failed, running and pending cells of the grid recorded in OUTPUT/plan.json."""
    from bench.slurm import cell_label

    plan, cells = _read_plan(output)
    states = _sort_planned_cells(output, store, cells)
    done, failed, running, pending = states.done, states.failed, states.running, states.pending
    total = len(cells)
    print(f"sweep {output} (in-process, planned {plan.get('created', '?')}): {total} cells: "
          f"{len(done)} done, {len(failed)} failed, {len(running)} running, "
          f"{len(pending)} pending", file=out)
    print(f"{bar(len(done), len(failed), total)} "
          f"{100.0 * (len(done) + len(failed)) / total if total else 100.0:5.1f}%", file=out)
    for who, n in states.holders.items():
        print(f"running: {n} cell(s) held by {who}", file=out)
    _print_failed_records(failed, args.tracebacks, out)
    if args.cells:
        for name, group in (("running", running), ("pending", pending)):
            if group:
                print(f"\n{name} cells ({len(group)}):", file=out)
                for c in group:
                    print(f"  {cell_label(c)}", file=out)
    if store.damaged:
        print(f"({len(store.damaged)} record(s) are damaged, named above; `bench run` computes "
              f"them again)", file=out)
    if pending and not running:
        print(f"\n{len(pending)} cell(s) pending and no bench process is running on this "
              f"output: rerun the same `bench run` command to resume", file=out)
    elif running:
        print(f"\nin flight: run `bench status {output}` again to follow", file=out)
    if failed:
        print(f"rerunning the same `bench run` retries the {len(failed)} failed cell(s)",
              file=out)
    return 0 if len(done) == total else 1
