"""Claiming a dataset's cells as the run goes, one (dataset, seed) group at a time, each cell
under its lock (bench.locks): several processes on one output share its work, no cell runs
twice."""

from __future__ import annotations

import hashlib
import sys
import time
from collections import defaultdict

from bench.locks import CellLocks
from results.records import cell_id
from results.store import ResultStore


class Claims:
    """Claiming a dataset's cells as the run goes, one (dataset, seed) group at a time."""

    def __init__(self, dataset: str, cells, store: ResultStore, locks: CellLocks, counts,
                 progress):
        self.dataset, self.store, self.locks = dataset, store, locks
        self.counts, self.progress = counts, progress
        self.groups: dict[int, list[dict]] = defaultdict(list)
        for cell in cells:
            self.groups[cell["seed"]].append(cell)
        self.holders: list = []

    def claim(self, group: list[dict]) -> list[dict]:
        """The cells of ``group`` this process now holds; cells done meanwhile or held by another
        live process are left (and counted). A short-lived claim lock per group keeps two
        processes that reach a group at the same moment from splitting it between them."""
        first = group[0]
        key = f"{first['backbone']}|{first['pretrained']}|{self.dataset}|{first['seed']}"
        claim = "claim-" + hashlib.sha1(key.encode()).hexdigest()[:16]
        deadline = time.monotonic() + 30
        while self.locks.try_acquire(claim) is not None and time.monotonic() < deadline:
            time.sleep(0.02)  # another process is claiming this group: milliseconds
        try:
            return self._claim_cells(group)
        finally:
            self.locks.release(claim)

    def _claim_cells(self, group: list[dict]) -> list[dict]:
        mine = []
        for cell in group:
            holder = self.locks.try_acquire(cell_id(cell))
            if holder is not None:
                self.holders.append(holder)
                self.counts["locked"] += 1
                self._skip()
            elif self.store.exists(cell):  # finished by another process since the plan
                self.locks.release(cell_id(cell))
                self.counts["skipped"] += 1
                self._skip()
            else:
                mine.append(cell)
        return mine

    def claim_rest(self, after_seed) -> list[dict]:
        """Every free cell of the groups after ``after_seed`` (None: all groups)."""
        return [c for seed, group in self.groups.items()
                if after_seed is None or seed > after_seed for c in self.claim(group)]

    def _skip(self) -> None:
        if self.progress is not None:
            self.progress.skipped(1)

    def report(self) -> None:
        if self.holders:
            print(f"bench: {self.dataset}: {len(self.holders)} cell(s) skipped, another bench "
                  f"process is running them ({self.holders[0].describe()})", file=sys.stderr)
