"""Crash-safe file writes: write to a temporary file in the same folder, fsync, rename.

A reader never sees a partial file: it sees the old file, the new file, or no file. Leftover
temporary files from a killed writer are named ``.<name>.<random>.tmp`` and are ignored by every
reader (and removed by ``clean_temp_files``).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

TMP_SUFFIX = ".tmp"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True) + "\n")


def clean_temp_files(folder: Path) -> int:
    """Remove temporary files left by killed writers; returns how many were removed."""
    n = 0
    for p in Path(folder).rglob(f".*{TMP_SUFFIX}"):
        try:
            p.unlink()
            n += 1
        except FileNotFoundError:
            pass
    return n
