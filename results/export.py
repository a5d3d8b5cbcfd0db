"""`bench export`: an output folder's results as one versioned JSON Lines file.

Format ``bench-export`` version 1 (docs/statistics.md#export). Line 1 is the header::

    {"format": "bench-export", "version": 1, "created": "<UTC ISO time>", "source": "<folder>",
     "records": <count>, "predictions": true|false}

then one line per sound record, in path order::

    {"type": "record", "path": "<its path under OUTPUT>", "record": {...the record...},
     "predictions_npz": "<base64 of its predictions file>"}     (when included and sound)

``record`` is the JSON record as stored (its ``predictions`` block included, so the embedded
file is checked against the same hash as on disk). Exports merge by concatenation: a reader
skips every header line after checking its format and version, and keeps the newest record of
each ``cell_id`` (``created``), as reports do. Damaged prediction files are left out of the
export with a warning (the record stays); failed records are exported too (``status``).
"""

from __future__ import annotations

import base64
import datetime
import json
import sys
from pathlib import Path
from typing import Iterator

from results.atomic import atomic_write_text
from results.predictions import PredictionsError, read_predictions
from results.store import ResultStore

FORMAT = "bench-export"
VERSION = 1


class ExportError(ValueError):
    """An export file this bench cannot read; one line."""


def export_lines(output: Path, *, predictions: bool = True) -> Iterator[str]:
    store = ResultStore(output)
    records = store.load_all(include_failed=True)
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    yield json.dumps({"format": FORMAT, "version": VERSION, "created": created,
                      "source": str(output), "records": len(records),
                      "predictions": predictions})
    for rec in records:
        path = Path(rec.pop("_path"))
        line = {"type": "record", "path": str(path.relative_to(store.output)), "record": rec}
        block = rec.get("predictions")
        if predictions and isinstance(block, dict):
            try:
                read_predictions(path, block)  # checked: a damaged file is not exported
                line["predictions_npz"] = base64.b64encode(
                    (path.parent / block["file"]).read_bytes()).decode("ascii")
            except PredictionsError as exc:
                print(f"bench: warning: {exc}; exported without it", file=sys.stderr)
        yield json.dumps(line, sort_keys=True)


def write_export(output: Path, dest: Path, *, predictions: bool = True) -> int:
    """Write the export of ``output`` to ``dest`` atomically; the number of records."""
    lines = list(export_lines(output, predictions=predictions))
    atomic_write_text(dest, "\n".join(lines) + "\n")
    return len(lines) - 1


def read_export(path: Path, unpack_to: Path | None = None) -> list[dict]:
    """The records of an export (or of several concatenated), newest per ``cell_id``. With
    ``unpack_to``, embedded prediction files are written there and each record's ``_path``
    points beside its file, so :mod:`results.significance` reads them as from a folder."""
    by_id: dict[str, tuple[dict, str | None, str | None]] = {}
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ExportError(f"export {path} cannot be read ({exc})") from None
    for n, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except ValueError:
            raise ExportError(f"export {path} line {n} is not JSON (damaged or truncated)") \
                from None
        if "format" in obj:
            if obj.get("format") != FORMAT or obj.get("version") != VERSION:
                raise ExportError(f"export {path} line {n}: format {obj.get('format')!r} "
                                  f"version {obj.get('version')!r}; this bench reads "
                                  f"{FORMAT} version {VERSION}")
            continue
        if obj.get("type") != "record" or not isinstance(obj.get("record"), dict):
            raise ExportError(f"export {path} line {n} is not a record line")
        rec = obj["record"]
        key = rec.get("cell_id") or obj.get("path")
        old = by_id.get(key)
        if old is None or str(rec.get("created", "")) >= str(old[0].get("created", "")):
            by_id[key] = (rec, obj.get("predictions_npz"), obj.get("path"))
    out = []
    for i, (rec, npz, rel) in enumerate(by_id.values()):
        rec = dict(rec)
        if unpack_to is not None:
            where = Path(unpack_to) / str(i) / (rel or "record.json")
            rec["_path"] = str(where)
            if npz and isinstance(rec.get("predictions"), dict):
                where.parent.mkdir(parents=True, exist_ok=True)
                (where.parent / rec["predictions"]["file"]).write_bytes(base64.b64decode(npz))
        else:
            rec["_path"] = f"{path}:{rel}"
        out.append(rec)
    return out
