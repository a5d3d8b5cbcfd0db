"""One validation of result records, shared by the planner (``ResultStore.exists``), `bench status`
and `bench report`, so that all three agree on which records count.

A record is *damaged* when a field is missing, of the wrong type or out of range: accuracies that
are not finite numbers in [0, 100], shots or seed that are not positive integers, an ``n_test``
that is not a positive integer, a top-1 that is no whole number of correct predictions out of
``n_test``, a status other than ``ok``/``failed``, or fields that no longer match the record's own
``cell_id`` (edited after it was written). A damaged record never reaches a table, counts as not
done, and its cell is run again; :func:`warn_damaged` says so once per file and process.
"""

from __future__ import annotations

import math
import sys

from results.records import cell_id

STATUSES = ("ok", "failed")
PROTOCOLS = ("fewshot", "base2novel", "domain", "crossdataset")  # bench.protocols.PROTOCOLS
ACCURACIES = ("top1", "mean_per_class")

_warned: set[str] = set()


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _text(rec: dict, key: str, optional: bool = False) -> str | None:
    value = rec.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        return f"{key} is {value!r}, not a name" if key in rec else f"no {key}"
    return None


def _metrics_problem(metrics) -> str | None:
    if not isinstance(metrics, dict):
        return "status ok but no metrics"
    for key in ACCURACIES:
        value = metrics.get(key)
        if key not in metrics:
            return f"no metrics.{key}"
        if not _is_number(value) or not math.isfinite(value) or not 0 <= value <= 100:
            return f"metrics.{key} is {value!r}, not a percentage in [0, 100]"
    n = metrics.get("n_test")
    if not _is_int(n) or n <= 0:
        return f"metrics.n_test is {n!r}, not a positive whole number"
    correct = metrics["top1"] * n / 100
    # the runner rounds top1 to 6 decimals: |error| <= 5e-9 * n correct predictions
    if abs(correct - round(correct)) > 1e-6 + 1e-8 * n:
        return (f"metrics.top1 {metrics['top1']} of n_test {n} is not a whole number of correct "
                f"predictions")
    return None


def _evaluations_problem(rec: dict, protocol) -> str | None:
    """The other protocols' records hold every evaluation (base/novel, or each target)."""
    evals = rec.get("evaluations")
    if evals is None:
        return None if protocol in (None, "fewshot") else f"protocol {protocol} but no evaluations"
    if not isinstance(evals, dict) or not evals:
        return f"evaluations is {evals!r}, not a mapping of metrics"
    if protocol == "base2novel" and set(evals) != {"base", "novel"}:
        return f"base2novel evaluations are {sorted(evals)}, not base and novel"
    for name, metrics in evals.items():
        if (why := _metrics_problem(metrics)) is not None:
            return f"evaluations.{name}: {why.replace('metrics.', '')}"
    return None


def record_problem(rec) -> str | None:
    """Why ``rec`` (a parsed record) is damaged, in a few words; None when it is sound."""
    if not isinstance(rec, dict):
        return f"not a JSON object but {type(rec).__name__}"
    status = rec.get("status")
    if status not in STATUSES:
        return f"status is {status!r}, not 'ok' or 'failed'"
    for key in ("backbone", "dataset", "method"):
        if (why := _text(rec, key)) is not None:
            return why
    for key in ("variant", "pretrained"):
        if (why := _text(rec, key, optional=True)) is not None:
            return why
    if not isinstance(rec.get("config"), dict):
        return f"config is {rec.get('config')!r}, not a mapping" if "config" in rec \
            else "no config"
    if "inputs" in rec and not isinstance(rec["inputs"], dict):
        return f"inputs is {rec['inputs']!r}, not a mapping"
    for key in ("shots", "seed"):
        value = rec.get(key)
        if not _is_int(value) or value <= 0:
            return f"{key} is {value!r}, not a positive whole number" if key in rec \
                else f"no {key}"
    protocol = rec.get("protocol")
    if protocol is not None and protocol not in PROTOCOLS:
        return f"protocol is {protocol!r}, not one of {', '.join(PROTOCOLS)}"
    if status == "ok":
        if (why := _metrics_problem(rec.get("metrics"))) is not None:
            return why
        if (why := _evaluations_problem(rec, protocol)) is not None:
            return why
        fewshot = rec.get("fewshot")
        if fewshot is not None:
            if not isinstance(fewshot, dict):
                return f"fewshot is {fewshot!r}, not a mapping"
            for key, least in (("n_train", 1), ("n_val", 0)):
                if key in fewshot and (not _is_int(fewshot[key]) or fewshot[key] < least):
                    return f"fewshot.{key} is {fewshot[key]!r}, not a count"
    if "cell_id" in rec and rec["cell_id"] != cell_id(rec):
        return "its fields do not match its cell_id (edited after it was written?)"
    return None


def warn_damaged(path, why: str) -> None:
    """One line on stderr per damaged file and process (planner, status and report all call it)."""
    key = str(path)
    if key in _warned:
        return
    _warned.add(key)
    print(f"bench: warning: result {path} is damaged ({why}); it is left out of reports and "
          f"`bench run` computes its cell again", file=sys.stderr)
