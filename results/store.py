"""The results store: one small JSON file per cell, written atomically.

Layout under the output folder::

    results/<backbone>/<dataset>/<method label>/k<shots>-s<seed>-<config hash>.json   (done)
    results/<backbone>/<dataset>/<method label>/k<shots>-s<seed>-<config hash>.failed.json
    splits/<dataset>/shot_<K>-seed_<S>.json   (the exact few-shot subset, portable)

A record (``schema`` 1) holds::

    cell_id, backbone, pretrained, dataset, method, variant, config (resolved), shots, seed,
    status ("ok" | "failed"), metrics {top1, mean_per_class, n_test} (percent),
    selected {...} (what the method chose on val: C, alpha, ...), fewshot {path, n_train, n_val,
    short_classes}, timings {...} (seconds), versions {...}, host, created (ISO time),
    error {type, message, traceback} (failed cells only)

A rerun skips every cell with a done record; a failed record is retried and replaced. A record
that does not parse (damaged outside this store) is never reported and its cell is rerun.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from pathlib import Path
from typing import Iterator

from results.atomic import atomic_write_json

SCHEMA = 1
CELL_KEYS = ("backbone", "pretrained", "dataset", "method", "variant", "config", "shots", "seed")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_") or "none"


def config_hash(config: dict) -> str:
    return hashlib.sha1(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:8]


def cell_id(cell: dict) -> str:
    ident = {k: cell.get(k) for k in CELL_KEYS}
    return hashlib.sha1(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]


def method_label(cell: dict) -> str:
    return f"{cell['method']}:{cell['variant']}" if cell.get("variant") else cell["method"]


def backbone_label(cell: dict) -> str:
    pre = cell.get("pretrained")
    pre = Path(pre).name if pre and ("/" in pre or "\\" in pre) else pre
    return _slug(f"{cell['backbone']}__{pre or 'none'}")


class ResultStore:
    def __init__(self, output: Path):
        self.output = Path(output)
        self.results_dir = self.output / "results"
        self.splits_dir = self.output / "splits"

    def _stem(self, cell: dict) -> Path:
        folder = (self.results_dir / backbone_label(cell) / _slug(cell["dataset"])
                  / _slug(method_label(cell)))
        return folder / f"k{cell['shots']}-s{cell['seed']}-{config_hash(cell['config'])}"

    def path_for(self, cell: dict) -> Path:
        return self._stem(cell).with_suffix(".json")

    def failed_path_for(self, cell: dict) -> Path:
        return self._stem(cell).with_suffix(".failed.json")

    def exists(self, cell: dict) -> bool:
        """A done record is there and readable; a damaged one (not JSON, no metrics: written
        by something other than this store) counts as missing, with a warning, and is rerun."""
        path = self.path_for(cell)
        if not path.is_file():
            return False
        try:
            rec = json.loads(path.read_text())
            if rec.get("status") == "ok" and isinstance(rec.get("metrics"), dict):
                return True
        except (OSError, ValueError, AttributeError):
            pass
        warnings.warn(f"result {path} is damaged (not a complete record); its cell is run "
                      f"again", stacklevel=2)
        return False

    def write(self, record: dict) -> Path:
        """Write a record atomically; a success removes an earlier failure of the same cell."""
        record = {"schema": SCHEMA, "cell_id": cell_id(record), **record}
        if record.get("status") == "ok":
            path = self.path_for(record)
            atomic_write_json(path, record)
            self.failed_path_for(record).unlink(missing_ok=True)
        else:
            path = self.failed_path_for(record)
            atomic_write_json(path, record)
        return path

    def split_path(self, dataset: str, shots: int, seed: int) -> Path:
        return self.splits_dir / _slug(dataset) / f"shot_{shots}-seed_{seed}.json"

    def iter_records(self, include_failed: bool = True) -> Iterator[dict]:
        if not self.results_dir.is_dir():
            return
        for path in sorted(self.results_dir.rglob("*.json")):
            if path.name.startswith("."):
                continue  # a temporary file of an interrupted write
            if path.name.endswith(".failed.json"):
                if not include_failed or path.with_name(
                        path.name.replace(".failed.json", ".json")).exists():
                    continue
            try:
                rec = json.loads(path.read_text())
                if not isinstance(rec, dict):
                    raise ValueError("not an object")
            except (OSError, ValueError) as exc:
                warnings.warn(f"result {path} is damaged ({exc}); left out (rerun `bench run` "
                              f"to recompute it)", stacklevel=2)
                continue
            rec["_path"] = str(path)
            yield rec

    def load_all(self, include_failed: bool = True) -> list[dict]:
        return list(self.iter_records(include_failed))
