"""What a cell is: the keys that make a result what it is, and the id hashed from them.

``cell_id`` names a cell's record everywhere (the store's files, claims, SLURM submissions); it
must never change for the same cell, or old output folders would lose their done cells.
"""

from __future__ import annotations

import hashlib
import json

CELL_KEYS = ("backbone", "pretrained", "dataset", "method", "variant", "config", "shots", "seed")


def canon(obj) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


def config_hash(config: dict) -> str:
    return hashlib.sha1(canon(config).encode()).hexdigest()[:8]


# Keys of cells of the other evaluation protocols (bench.protocols); absent in few-shot cells, so
# their identity (and every few-shot record written before protocols existed) is unchanged.
PROTOCOL_KEYS = ("protocol", "targets")


def identity(cell: dict) -> dict:
    """What makes a result what it is: the cell's keys, its protocol keys when it has them, and
    its ``inputs`` when it has them."""
    ident = {k: cell.get(k) for k in CELL_KEYS}
    ident.update({k: cell[k] for k in PROTOCOL_KEYS if cell.get(k) is not None})
    if "inputs" in cell:
        ident["inputs"] = cell["inputs"]
    return ident


def cell_id(cell: dict) -> str:
    return hashlib.sha1(canon(identity(cell)).encode()).hexdigest()[:16]


def same_result(record: dict, cell: dict) -> bool:
    """``record`` is the result of ``cell``: the same keys, and the same inputs when the cell has
    them (a record without inputs is stale for a cell that has them)."""
    if any(canon(record.get(k)) != canon(cell.get(k)) for k in CELL_KEYS + PROTOCOL_KEYS):
        return False
    return "inputs" not in cell or canon(record.get("inputs")) == canon(cell["inputs"])


def method_label(cell: dict) -> str:
    return f"{cell['method']}:{cell['variant']}" if cell.get("variant") else cell["method"]
