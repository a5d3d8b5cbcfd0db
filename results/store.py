"""The results store: one small JSON file per cell, written atomically.

Layout under the output folder::

    results/<backbone>__<weights>/<dataset>/<method>/<variant or "default">/
        k<shots>-s<seed>-<config hash>.json          (done)
        k<shots>-s<seed>-<config hash>.pred.npz      (its per-image predictions, beside it)
        k<shots>-s<seed>-<config hash>.failed.json   (failed; retried by the next run)
    superseded/<UTC time>/<the same relative path>   (records replaced by a run with other inputs)
    splits/<dataset>/shot_<K>-seed_<S>.json          (the exact few-shot subset, portable)

Every record of a method sits under ``<method>/`` (a search by method name finds them all). The
layout before this one, ``<dataset>/<method>_<variant>/k...json``, is still read: reports read it,
a valid record there counts as done, and the next record written for its cell moves it aside.

A record (``schema`` 1) holds::

    cell_id, backbone, pretrained, dataset, method, variant, config (resolved), shots, seed,
    inputs {...} (fingerprints of what produced it: split, weights, features, views; when the
    planner gives them), status ("ok" | "failed"), metrics {top1, mean_per_class, n_test}
    (percent), selected {...} (what the method chose on val: C, alpha, ...), fewshot {path,
    n_train, n_val, short_classes}, timings {...} (seconds), versions {...}, host, created (ISO
    time), error {type, message, traceback} (failed cells only), predictions {file, sha256,
    ...} (the per-image predictions file, :mod:`results.predictions`; absent in records written
    before bench stored them, which still report)

``cell_id`` (:mod:`results.records`) hashes the cell's identity: the keys of ``CELL_KEYS`` and ``inputs`` when present.
A cell is done when its file holds a sound record (:mod:`results.validate`) with status ok and the
cell's identity, ``inputs`` included: a record whose inputs differ (another split file, weights,
features) is stale, its cell runs again, and the new record moves the old file to
``superseded/`` (never deleted, never read by reports). A damaged record (not JSON, or failing
validation) is never reported, its cell is rerun, and one warning names it.
"""

from __future__ import annotations

import datetime
import json
import os
import re
from pathlib import Path
from typing import Iterator

from results.atomic import atomic_write_json
from results.predictions import DEFAULT_LOGITS, predictions_path, write_predictions
from results.records import cell_id, config_hash, method_label, same_result
from results.validate import record_problem, warn_damaged

SCHEMA = 1
DEFAULT_VARIANT_DIR = "default"
SUPERSEDED = "superseded"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_") or "none"


def backbone_label(cell: dict) -> str:
    pre = cell.get("pretrained")
    pre = Path(pre).name if pre and ("/" in pre or "\\" in pre) else pre
    return _slug(f"{cell['backbone']}__{pre or 'none'}")


def _utc_stamp() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


class ResultStore:
    def __init__(self, output: Path):
        self.output = Path(output)
        self.results_dir = self.output / "results"
        self.splits_dir = self.output / "splits"
        self.superseded_dir = self.output / SUPERSEDED
        self.damaged: dict[str, str] = {}  # path -> why, for the records read so far
        self._stamp: str | None = None
        self.predictions_logits = DEFAULT_LOGITS  # what a predictions file keeps of the logits

    # ------------------------------------------------------------------ paths
    def _name(self, cell: dict) -> str:
        """``k16-s1-<config hash>``; other protocols than few-shot prefix theirs
        (``base2novel-k16-s1-...``; transfer protocols add a hash of their targets)."""
        name = f"k{cell['shots']}-s{cell['seed']}-{config_hash(cell['config'])}"
        protocol = cell.get("protocol")
        if protocol and protocol != "fewshot":
            targets = cell.get("targets")
            suffix = f"-{config_hash({'targets': targets})[:6]}" if targets else ""
            name = f"{protocol}-{name}{suffix}"
        return name

    def _stem(self, cell: dict) -> Path:
        folder = (self.results_dir / backbone_label(cell) / _slug(cell["dataset"])
                  / _slug(cell["method"]) / _slug(cell.get("variant") or DEFAULT_VARIANT_DIR))
        return folder / self._name(cell)

    def _legacy_stem(self, cell: dict) -> Path:
        """Where records were written before method folders held one folder per variant."""
        folder = (self.results_dir / backbone_label(cell) / _slug(cell["dataset"])
                  / _slug(method_label(cell)))
        return folder / self._name(cell)

    def path_for(self, cell: dict) -> Path:
        return self._stem(cell).with_suffix(".json")

    def failed_path_for(self, cell: dict) -> Path:
        return self._stem(cell).with_suffix(".failed.json")

    def _done_paths(self, cell: dict) -> list[Path]:
        return [self.path_for(cell), self._legacy_stem(cell).with_suffix(".json")]

    def split_path(self, dataset: str, shots: int, seed: int) -> Path:
        return self.splits_dir / _slug(dataset) / f"shot_{shots}-seed_{seed}.json"

    # ------------------------------------------------------------------ reading
    def read(self, path: Path) -> dict | None:
        """The sound record at ``path``, or None (missing; damaged: warned once and noted in
        ``self.damaged``)."""
        try:
            rec = json.loads(Path(path).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            why = f"not readable JSON: {exc}"
        else:
            why = record_problem(rec)
        if why is not None:
            self.damaged[str(path)] = why
            warn_damaged(path, why)
            return None
        return rec

    def exists(self, cell: dict) -> bool:
        """The cell is done: a sound ok record of exactly this cell (inputs included)."""
        for path in self._done_paths(cell):
            if path.is_file():
                rec = self.read(path)
                if rec is not None and rec["status"] == "ok" and same_result(rec, cell):
                    return True
        return False

    def iter_records(self, include_failed: bool = True) -> Iterator[dict]:
        """Every sound record under results/ (``_path`` added); damaged ones are warned about,
        noted in ``self.damaged`` and left out. A failure beside a done record is skipped."""
        if not self.results_dir.is_dir():
            return
        for path in sorted(self.results_dir.rglob("*.json")):
            if path.name.startswith("."):
                continue  # a temporary file of an interrupted write
            if path.name.endswith(".failed.json"):
                if not include_failed or path.with_name(
                        path.name.replace(".failed.json", ".json")).exists():
                    continue
            rec = self.read(path)
            if rec is not None:
                rec["_path"] = str(path)
                yield rec

    def load_all(self, include_failed: bool = True) -> list[dict]:
        return list(self.iter_records(include_failed))

    def superseded(self) -> list[Path]:
        """The records set aside under superseded/ (never read by reports)."""
        if not self.superseded_dir.is_dir():
            return []
        return sorted(p for p in self.superseded_dir.rglob("*.json") if not p.name.startswith("."))

    # ------------------------------------------------------------------ writing
    def write(self, record: dict, predictions=None) -> Path:
        """Write a record atomically. A success removes an earlier failure of the same cell.
        Any other record in the cell's place (other inputs, damaged, or the older layout's copy)
        is moved to superseded/ first (with its predictions file); a sound done record of the
        same cell stays when a failure is written. ``predictions`` (``{evaluation: (logits,
        labels)}``) of a success are written first, beside it (results/predictions.py), and the
        record's ``predictions`` block names that file and its hash."""
        record = {k: v for k, v in record.items() if not k.startswith("_")}
        record = {**record, "schema": SCHEMA, "cell_id": cell_id(record)}
        ok = record.get("status") == "ok"
        new = self.path_for(record)
        for path in self._done_paths(record):
            if not path.is_file():
                continue
            old = self.read(path)
            current = old is not None and old["status"] == "ok" and same_result(old, record)
            if not current or (ok and path != new):
                self._set_aside(path)
        legacy_failed = self._legacy_stem(record).with_suffix(".failed.json")
        if legacy_failed != self.failed_path_for(record):
            legacy_failed.unlink(missing_ok=True)
        if ok:
            if predictions:
                record["predictions"] = write_predictions(predictions_path(new), predictions,
                                                          logits=self.predictions_logits)
            atomic_write_json(new, record)
            self.failed_path_for(record).unlink(missing_ok=True)
            return new
        path = self.failed_path_for(record)
        atomic_write_json(path, record)
        return path

    def _set_aside(self, path: Path) -> Path:
        """Move ``path`` to superseded/<UTC time>/<its path under OUTPUT>; never overwrites."""
        if self._stamp is None:
            self._stamp = _utc_stamp()
        dest = self.superseded_dir / self._stamp / path.relative_to(self.output)
        n = 1
        while dest.exists():
            dest = dest.with_name(f"{path.stem}.{n}{path.suffix}")
            n += 1
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, dest)
        if predictions_path(path).is_file():  # its predictions go with it (same relative name)
            os.replace(predictions_path(path), predictions_path(dest))
        return dest
