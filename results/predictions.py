"""Per-image predictions of a result: a small binary file beside the record's JSON.

A cell's record says how well a method did; its predictions file says on which test images.
With it two methods can be compared image by image (McNemar, a paired bootstrap:
:mod:`results.stats`), errors can be looked at, and a record's accuracy can be checked again.

**The file** (format ``bench-predictions``, version 1) sits beside the record,
``k16-s1-<config hash>.json`` -> ``k16-s1-<config hash>.pred.npz``. It is a NumPy ``.npz``
archive (a zip of ``.npy`` arrays: ``numpy.load`` reads it, no bench needed) holding, for the
``j``-th evaluation of the cell in the order it was scored (few-shot: the test set; base-to-novel:
``base`` then ``novel``; domain / cross-dataset: the source, then each target):

* ``e<j>.pred``: the predicted class of every test image (argmax of the float32 logits, the first
  one on ties, as ``torch.argmax``), ``uint8``/``uint16``/``uint32`` as the class count needs;
* ``e<j>.labels``: the true classes, same dtype;
* with ``logits="top5"`` (the default; ``topK`` for any K): ``e<j>.topk_values`` (float16, each
  row sorted high to low, ties by class index) and ``e<j>.topk_indices``;
  with ``"full16"`` / ``"full32"``: ``e<j>.logits``, every logit in float16 / float32;
  with ``"none"``: predicted classes and labels only;
* ``meta``: the file's own description (JSON bytes): format, version, the evaluations' names,
  test-image and class counts, the logits option.

Files are written deflate-compressed and atomically (:func:`results.atomic.atomic_write_bytes`),
with fixed zip timestamps. Sizes: ``benchmarks/prediction_sizes.py`` (docs/reports.md).

**The record's block** (``record["predictions"]``, what :func:`write_predictions` returns)::

    {"file": "k16-s1-<hash>.pred.npz",   # beside the record
     "format": "bench-predictions/1", "logits": "top5", "bytes": 31337,
     "sha256": "<hash of the content>",  # of the arrays, not of the zip: see content_sha256
     "evaluations": {"<name>": {"n": 500, "classes": 10, "labels_sha256": "..."}, ...}}

``labels_sha256`` lets two records be checked to score the same test images in the same order
without opening either file. ``sha256`` hashes the arrays (name, dtype, shape, bytes), so equal
predictions have equal hashes whatever zlib compressed them. :func:`read_predictions` checks
the file against the block (size, zip checksums, content hash, names and shapes) and raises
:class:`PredictionsError` with one line naming the file and what is wrong;
:func:`check_record` recomputes the record's accuracies (and, for ``full32``, its
``logits_sha256``) from the file.

The record must be written after its predictions file (a record never names a missing file);
when the store moves a record aside (``superseded/``) its predictions file goes with it.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from results.atomic import atomic_write_bytes

FORMAT = "bench-predictions"
VERSION = 1
SUFFIX = ".pred.npz"
DEFAULT_LOGITS = "top5"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed: the same predictions give the same bytes
_TOPK = re.compile(r"top([1-9][0-9]*)$")


class PredictionsError(ValueError):
    """A predictions file that does not match its record's block: missing, truncated, damaged,
    replaced, or of another format. The message is one line."""


@dataclass
class EvalPredictions:
    """One evaluation's predictions. ``topk_values``/``topk_indices`` are (n, k) or None;
    ``logits`` is (n, classes) or None, as the file's ``logits`` option says."""

    name: str
    pred: np.ndarray
    labels: np.ndarray
    classes: int
    topk_values: np.ndarray | None = None
    topk_indices: np.ndarray | None = None
    logits: np.ndarray | None = None

    @property
    def correct(self) -> np.ndarray:
        """Boolean (n,): the prediction is right. The input of McNemar and the bootstrap."""
        return self.pred == self.labels

    def topk_correct(self, k: int) -> np.ndarray:
        """Boolean (n,): the label is among the ``k`` highest logits (needs k <= the stored k,
        or the full logits)."""
        if self.logits is not None:
            order = np.argsort(-self.logits.astype(np.float32), axis=1, kind="stable")[:, :k]
        elif self.topk_indices is not None and k <= self.topk_indices.shape[1]:
            order = self.topk_indices[:, :k]
        else:
            stored = 0 if self.topk_indices is None else self.topk_indices.shape[1]
            raise PredictionsError(f"top-{k} needs the top {k} logits; the file has {stored}")
        return (order == self.labels[:, None]).any(axis=1)


def predictions_path(record_path) -> Path:
    """Where the predictions of the record at ``record_path`` go (``.json`` -> ``.pred.npz``)."""
    p = Path(record_path)
    stem = p.name[:-len(".json")] if p.name.endswith(".json") else p.name
    return p.with_name(stem + SUFFIX)


def parse_logits_option(option: str) -> tuple[str, int | None]:
    """``"top5"`` -> ("topk", 5); ``"full16"``/``"full32"``/``"none"`` -> (option, None)."""
    if option in ("full16", "full32", "none"):
        return option, None
    m = _TOPK.match(str(option))
    if m is None:
        raise ValueError(f"logits option {option!r}: use topK (top5, top10, ...), full16, full32 "
                         f"or none")
    return "topk", int(m.group(1))


def _index_dtype(classes: int):
    return np.uint8 if classes <= 1 << 8 else np.uint16 if classes <= 1 << 16 else np.uint32


def _as_array(x) -> np.ndarray:
    """A numpy array from a numpy array, a list or a (CPU or GPU) torch tensor."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def labels_sha256(labels) -> str:
    """Hash of a label vector, independent of its dtype (as little-endian int64)."""
    return hashlib.sha256(np.ascontiguousarray(_as_array(labels), dtype="<i8").tobytes()) \
        .hexdigest()


def content_sha256(arrays: Mapping[str, np.ndarray]) -> str:
    """Hash of named arrays in name order: each name, dtype, shape and C-order bytes."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(json.dumps([name, a.dtype.str, list(a.shape)]).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def encode(evaluations: Mapping[str, tuple], logits: str = DEFAULT_LOGITS) -> tuple[dict, dict]:
    """The arrays of a predictions file and its ``meta``, from ``{name: (logits, labels)}`` in
    scoring order; logits (n, classes) float, labels (n,) ints (torch or numpy)."""
    kind, k = parse_logits_option(logits)
    arrays: dict[str, np.ndarray] = {}
    meta = {"format": FORMAT, "version": VERSION, "logits": logits, "evaluations": []}
    for j, (name, (lg, lb)) in enumerate(evaluations.items()):
        lg = _as_array(lg).astype(np.float32, copy=False)
        lb = _as_array(lb)
        if lg.ndim != 2 or lb.shape != (lg.shape[0],):
            raise ValueError(f"evaluation {name!r}: logits of shape {lg.shape} and labels of "
                             f"shape {lb.shape}; need (images, classes) and (images,)")
        n, classes = lg.shape
        idx = _index_dtype(classes)
        arrays[f"e{j}.pred"] = lg.argmax(axis=1).astype(idx)
        arrays[f"e{j}.labels"] = lb.astype(idx)
        if kind == "topk":
            kk = min(k, classes)
            order = np.argsort(-lg, axis=1, kind="stable")[:, :kk]
            arrays[f"e{j}.topk_indices"] = order.astype(idx)
            arrays[f"e{j}.topk_values"] = np.take_along_axis(lg, order, 1).astype(np.float16)
        elif kind in ("full16", "full32"):
            arrays[f"e{j}.logits"] = lg.astype(np.float16 if kind == "full16" else np.float32)
        meta["evaluations"].append({"name": str(name), "n": int(n), "classes": int(classes)})
    return arrays, meta


def to_bytes(arrays: Mapping[str, np.ndarray], meta: dict, *, compress: bool = True) -> bytes:
    """An ``.npz`` archive of ``arrays`` plus ``meta``, byte-identical for equal input."""
    buf = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    members = {"meta": np.frombuffer(json.dumps(meta, sort_keys=True).encode(), np.uint8),
               **arrays}
    with zipfile.ZipFile(buf, "w", compression=method) as zf:
        for name, arr in members.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
            info.compress_type = method
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def write_predictions(path, evaluations: Mapping[str, tuple], *, logits: str = DEFAULT_LOGITS,
                      compress: bool = True) -> dict:
    """Write the predictions file at ``path`` (atomically) and return the record's block.

    ``evaluations``: ``{name: (logits, labels)}`` in the order the cell scored them, the names
    those of the record's metrics (few-shot: the dataset; else ``record["evaluations"]``'s keys);
    logits are the ones accuracy was computed from (float32, the target's columns only for a
    domain target scored over some of the source's classes)."""
    arrays, meta = encode(evaluations, logits)
    data = to_bytes(arrays, meta, compress=compress)
    path = Path(path)
    atomic_write_bytes(path, data)
    return {
        "file": path.name, "format": f"{FORMAT}/{VERSION}", "logits": logits,
        "bytes": len(data), "sha256": content_sha256(arrays),
        "evaluations": {e["name"]: {"n": e["n"], "classes": e["classes"],
                                    "labels_sha256": labels_sha256(arrays[f"e{j}.labels"])}
                        for j, e in enumerate(meta["evaluations"])},
    }


# ----------------------------------------------------------------------------- reading
def _fail(path, why: str):
    raise PredictionsError(f"predictions file {path} {why}; compute its cell again to rewrite "
                           f"it (its record stays usable for tables)")


def read_predictions(record_path, block: dict) -> dict[str, EvalPredictions]:
    """The predictions named by ``block`` (a record's ``predictions``) of the record at
    ``record_path``, checked: :class:`PredictionsError` when the file is missing, truncated,
    damaged, replaced by another's, or of an unknown format. ``{name: EvalPredictions}`` in
    scoring order."""
    if not isinstance(block, dict) or not isinstance(block.get("file"), str):
        raise PredictionsError(f"record {record_path} has no predictions block (its run did not "
                               f"write per-image predictions)")
    path = Path(record_path).parent / block["file"]
    if block.get("format") != f"{FORMAT}/{VERSION}":
        _fail(path, f"is of format {block.get('format')!r}, which this bench does not read "
                    f"({FORMAT}/{VERSION})")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        _fail(path, "is missing")
    except OSError as exc:
        _fail(path, f"cannot be read ({exc.strerror or exc})")
    if "bytes" in block and len(data) != block["bytes"]:
        _fail(path, f"has {len(data)} bytes, not the {block['bytes']} its record says "
                    f"({'truncated' if len(data) < block['bytes'] else 'replaced or appended to'})")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
    except Exception as exc:  # noqa: BLE001 - zip, CRC, npy header: all mean damaged
        _fail(path, f"is damaged ({type(exc).__name__}: {exc})")
    meta_raw = arrays.pop("meta", None)
    if content_sha256(arrays) != block.get("sha256"):
        _fail(path, "does not hold the predictions its record names (content sha256 differs: "
                    "damaged, or another cell's file)")
    try:
        meta = json.loads(bytes(meta_raw).decode()) if meta_raw is not None else None
    except ValueError:
        meta = None
    if not isinstance(meta, dict) or meta.get("version") != VERSION:
        _fail(path, "has no readable meta entry")
    return _unpack(path, arrays, meta, block)


def _unpack(path, arrays: dict, meta: dict, block: dict) -> dict[str, EvalPredictions]:
    kind, _ = parse_logits_option(meta["logits"])
    names = [e["name"] for e in meta["evaluations"]]
    if list(block.get("evaluations") or {}) != names:
        _fail(path, f"holds evaluations {names}, not {list(block.get('evaluations') or {})}")
    out = {}
    for j, e in enumerate(meta["evaluations"]):
        get = arrays.get
        ev = EvalPredictions(e["name"], get(f"e{j}.pred"), get(f"e{j}.labels"), e["classes"],
                             get(f"e{j}.topk_values"), get(f"e{j}.topk_indices"),
                             get(f"e{j}.logits"))
        if ev.pred is None or ev.labels is None or ev.pred.shape != (e["n"],) \
                or ev.labels.shape != (e["n"],):
            _fail(path, f"evaluation {e['name']!r} lacks its {e['n']} predictions or labels")
        if kind == "topk" and (ev.topk_values is None or ev.topk_indices is None):
            _fail(path, f"evaluation {e['name']!r} lacks its top-k logits")
        if kind.startswith("full") and (ev.logits is None
                                        or ev.logits.shape != (e["n"], e["classes"])):
            _fail(path, f"evaluation {e['name']!r} lacks its logits")
        out[e["name"]] = ev
    return out


# ----------------------------------------------------------------------------- checks
def accuracy(ev: EvalPredictions) -> dict:
    """``top1`` and ``mean_per_class`` (percent, rounded as records are) and ``n_test``."""
    correct = ev.correct
    per_class = [correct[ev.labels == c].mean() for c in np.unique(ev.labels)]
    return {"top1": round(100.0 * float(correct.mean()), 6),
            "mean_per_class": round(100.0 * float(np.mean(per_class)), 6),
            "n_test": int(correct.size)}


def record_metrics(record: dict) -> dict[str, dict]:
    """``{evaluation name: metrics}`` of a record: ``evaluations`` for the protocols that have
    them, else ``{dataset: metrics}``."""
    if isinstance(record.get("evaluations"), dict):
        return record["evaluations"]
    return {record["dataset"]: record.get("metrics") or {}}


def check_record(record: dict, predictions: Mapping[str, EvalPredictions],
                 tol: float = 2e-6) -> list[str]:
    """What in ``record`` its predictions contradict (empty: nothing). Every evaluation's
    top-1, mean per-class accuracy and n_test are recomputed from the file; with ``full32``
    logits the record's ``logits_sha256`` is recomputed too."""
    problems = []
    metrics = record_metrics(record)
    if list(metrics) != list(predictions):
        return [f"the record scores {list(metrics)}, the file holds {list(predictions)}"]
    for name, ev in predictions.items():
        got, want = accuracy(ev), metrics[name]
        if got["n_test"] != want.get("n_test"):
            problems.append(f"{name}: {got['n_test']} test images, the record says "
                            f"{want.get('n_test')}")
            continue
        for key in ("top1", "mean_per_class"):
            if key in want and not math.isclose(got[key], want[key], abs_tol=tol):
                problems.append(f"{name}: {key} {got[key]} from the file, {want[key]} recorded")
    full = [ev.logits for ev in predictions.values()]
    if record.get("logits_sha256") and all(a is not None and a.dtype == np.float32 for a in full):
        digest = hashlib.sha256()
        for a in full:
            digest.update(np.ascontiguousarray(a).tobytes())
        if digest.hexdigest() != record["logits_sha256"]:
            problems.append("the file's float32 logits do not hash to the record's logits_sha256")
    return problems


def same_test_images(block_a: dict, block_b: dict) -> list[str]:
    """Evaluations both blocks have whose labels differ (not the same test images in the same
    order, so not pairable image by image)."""
    ea, eb = block_a.get("evaluations") or {}, block_b.get("evaluations") or {}
    return [n for n in ea if n in eb and ea[n].get("labels_sha256") != eb[n].get("labels_sha256")]
