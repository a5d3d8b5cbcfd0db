"""The wait loop after a submission: poll the cells' records and the tasks' states until every
task has ended (or every cell has a record), with a progress bar; then a summary."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from bench.cell_state import DONE, FAILED, PENDING, STALE, cell_state
from bench.slurm.states import _BAD, is_active, task_states

POLL_S = 2.0
END_GRACE_S = 60.0  # after every cell has a record, how long to wait for the tasks to exit


def _task_pending(output: Path, record: dict, job_id: str) -> int:
    """How many cells of the task have no record that counts (pending or stale)."""
    from results.store import ResultStore

    store = ResultStore(output)
    task = next(t for t in record["tasks"] if t["job_id"] == job_id)
    return sum(1 for c in task["cells"] if cell_state(store, c) in (PENDING, STALE))


def _cell_counts(output: Path, record: dict,
                 settled: dict | None = None) -> tuple[int, int, int]:
    """(done, failed, pending) over the submission's cells (stale counts as pending).
    ``settled``: cell id -> 'done' for cells found done by an earlier poll of the same wait, so
    that a poll reads only the records that may have changed."""
    from results.store import ResultStore

    store = ResultStore(output)
    settled = {} if settled is None else settled
    counts = {DONE: 0, FAILED: 0, PENDING: 0}
    for task in record["tasks"]:
        for c in task["cells"]:
            state = settled.get(c["id"]) or cell_state(store, c)
            if state == DONE:
                settled[c["id"]] = DONE
            counts[state if state in counts else PENDING] += 1
    return counts[DONE], counts[FAILED], counts[PENDING]


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
    settled: dict[str, str] = {}
    try:
        while True:
            done, failed, pending = _cell_counts(output, record, settled)
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
    done, failed, pending = _cell_counts(output, record, settled)
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
