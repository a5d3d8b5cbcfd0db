"""A result's protocol facts: what decides whether two numbers may be ranked against each other.

Three facts, beside the config labels and approximations the tables show already:

* ``selection``: how the evaluated model was chosen. ``none`` (nothing trained or chosen:
  zero-shot CLIP, Tip-Adapter with fixed α, β), ``last`` (the model after the last epoch, nothing
  chosen), ``val`` (a value or an epoch chosen on the few-shot val set), ``test`` (chosen on the
  test set: optimistic; Tip-Adapter's release does it for ImageNet and Tip-Adapter-F's for every
  dataset, bench does not).
* ``label_set_dependent``: inference depends on which label set is evaluated beyond scoring its
  class names (MMRL and 2SFS use another branch for base than for novel classes in base-to-novel).
  Among the built-in methods 2SFS does; it counts only under base-to-novel, the one protocol
  that evaluates trained and new classes apart (:data:`MIXED_LABEL_SETS`).
* ``extra_data``: data beyond the few-shot images and the backbone: any of ``llm_text``
  (LLM-written class descriptions), ``unlabeled_images``, ``teacher`` (another model distilled
  from). Empty for every built-in (ProGrad's and KgCoOp's zero-shot "teacher" is the frozen
  backbone itself with hand-written prompts: no extra data).

**Where methods declare them**: a registration extra,
``@METHODS.register("my_method", ..., facts={"selection": "val"})`` or a function of the resolved
config (``facts=lambda config: {...}``); keys left out take :data:`DEFAULTS`. The runner records
:func:`record_facts` as ``record["facts"]`` (the declaration, else :data:`BUILTIN`). Records
without one (written before, or by a plugin that declares nothing) get :data:`BUILTIN` for the
built-in methods, and ``selection: val`` whenever the record's ``selected`` holds a
``val_selection`` entry (every searching method writes one, docs/methods.md); otherwise the facts
are ``unknown``.

**The rule** (:func:`incomparable`): two rows are rankable only when they agree on whether the
test set was used for selection, on ``label_set_dependent`` and on ``extra_data``; ``none``,
``last`` and ``val`` are one class by default (none reads test labels, and the protocol gives
every method the same few-shot val set), ``strict=True`` makes them three. Unknown facts agree
with nothing.
"""

from __future__ import annotations

import fnmatch
from typing import Callable, Mapping

SELECTIONS = ("none", "last", "val", "test")
EXTRA_DATA = ("llm_text", "unlabeled_images", "teacher")
UNKNOWN = "unknown"
DEFAULTS = {"selection": "last", "label_set_dependent": False, "extra_data": []}


def _search_selection(config: dict) -> dict:
    """Selection ``val`` when the config asks for a search on val (a value set to ``search``,
    or ``search: true``), else ``last``."""
    if config.get("search") is True or any(v == "search" for v in config.values()):
        return {"selection": "val"}
    return {"selection": "last"}


# What the built-in methods do (docs/methods.md), for records that carry no facts.
BUILTIN: dict[str, Callable[[dict], dict] | dict] = {
    "zero_shot": {"selection": "none"},
    "linear_probe": {"selection": "val"},  # C on val
    "lp_pp": lambda c: {"selection": c.get("select_epoch", "val")},  # the epoch on val, or last
    "clap": {"selection": "last"},  # no val search
    "gda": {"selection": "val"},  # alpha on val
    "clip_adapter_*": _search_selection,  # the ratio fixed (last epoch) or searched on val
    "taskres": {"selection": "last"},
    "tip_adapter": lambda c: {"selection": "val" if c.get("search", True) else "none"},
    "tip_adapter_f": lambda c: {"selection": "val" if c.get("search", True) else "last"},
    "coop": {"selection": "last"}, "cocoop": {"selection": "last"},
    "kgcoop": {"selection": "last"}, "prograd": {"selection": "last"},
    # encoder tuning (docs/methods.md): the last iteration; PromptSRC's Gaussian prompt
    # aggregation weighs epochs by a fixed schedule, not by val. 2SFS scores trained classes
    # with its head and others with the tuned text encoder (selective inference).
    "clip_lora": {"selection": "last"}, "promptsrc": {"selection": "last"},
    "maple": {"selection": "last"},
    "two_stage": {"selection": "last", "label_set_dependent": True},
}
# Where every evaluated class is scored by the same branch, label-set-dependent inference
# changes nothing: only base-to-novel evaluates trained and new classes separately.
MIXED_LABEL_SETS = ("base2novel",)


def facts_for(declared, config: dict | None) -> dict:
    """Complete, checked facts from a declaration (a dict, or a function of the config)."""
    config = config if isinstance(config, dict) else {}
    given = declared(config) if callable(declared) else dict(declared or {})
    facts = {**DEFAULTS, **given}
    unknown = set(facts) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown protocol facts {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    if facts["selection"] not in SELECTIONS:
        raise ValueError(f"selection {facts['selection']!r}: use one of {', '.join(SELECTIONS)}")
    if not isinstance(facts["label_set_dependent"], bool):
        raise ValueError("label_set_dependent must be true or false")
    extra = facts["extra_data"]
    extra = [extra] if isinstance(extra, str) else list(extra or [])
    bad = [e for e in extra if e not in EXTRA_DATA]
    if bad:
        raise ValueError(f"extra_data {bad}: use any of {', '.join(EXTRA_DATA)}")
    return {"selection": facts["selection"], "label_set_dependent": facts["label_set_dependent"],
            "extra_data": sorted(set(extra))}


def _has_val_selection(obj) -> bool:
    if isinstance(obj, Mapping):
        return "val_selection" in obj or any(_has_val_selection(v) for v in obj.values())
    if isinstance(obj, list):
        return any(_has_val_selection(v) for v in obj)
    return False


def _builtin(method: str):
    for pattern, declared in BUILTIN.items():
        if fnmatch.fnmatchcase(method, pattern):
            return declared
    return None


def record_facts(method: str, declared, config: dict | None) -> dict | None:
    """The facts the runner writes into a cell's record (``record["facts"]``): the method's
    registration extra ``facts=`` (a dict or a function of the config) when it has one, else the
    built-in table; None for a method that declares nothing (reported as undeclared)."""
    declared = declared if declared is not None else _builtin(method)
    return None if declared is None else facts_for(declared, config)


def facts_of(record: dict) -> dict:
    """The facts of a record: its own ``facts`` when it has them, else derived (module doc).
    ``selection`` is ``unknown`` for a method bench knows nothing about."""
    unknown = {"selection": UNKNOWN, "label_set_dependent": UNKNOWN, "extra_data": UNKNOWN}
    if isinstance(record.get("facts"), dict):
        try:
            facts = facts_for(record["facts"], None)
        except ValueError:
            return unknown  # garbage: treated as undeclared, never a crash of a report
    else:
        declared = _builtin(str(record.get("method", "")))
        facts = unknown if declared is None else facts_for(declared, record.get("config"))
        if facts["selection"] in ("last", "none", UNKNOWN) and \
                _has_val_selection(record.get("selected")):
            facts["selection"] = "val"
    if facts["label_set_dependent"] is True and (record.get("protocol") or "fewshot") \
            not in MIXED_LABEL_SETS:
        facts["label_set_dependent"] = False
    return facts


def is_unknown(facts: dict) -> bool:
    return UNKNOWN in (facts.get("selection"), facts.get("label_set_dependent"),
                       facts.get("extra_data"))


def incomparable(a: dict, b: dict, *, strict: bool = False, names=("A", "B")) -> list[str]:
    """Why rows with facts ``a`` and ``b`` may not be ranked (empty: they may), one phrase each."""
    na, nb = names
    for facts, name in ((a, na), (b, nb)):
        if is_unknown(facts):
            return [f"{name} declares no protocol facts"]
    why = []
    if strict and a["selection"] != b["selection"]:
        why.append(f"{na} selects by {a['selection']}, {nb} by {b['selection']}")
    elif (a["selection"] == "test") != (b["selection"] == "test"):
        who = na if a["selection"] == "test" else nb
        why.append(f"{who} selects on the test set")
    if a["label_set_dependent"] != b["label_set_dependent"]:
        who = na if a["label_set_dependent"] else nb
        why.append(f"{who}'s inference depends on the evaluated label set")
    if sorted(a["extra_data"]) != sorted(b["extra_data"]):
        why.append(f"extra data: {na} {', '.join(a['extra_data']) or 'none'}, "
                   f"{nb} {', '.join(b['extra_data']) or 'none'}")
    return why


def facts_tag(facts: dict) -> str:
    """A row label for facts outside the common class ("" for test-free selection,
    label-set-independent inference, no extra data)."""
    if is_unknown(facts):
        return "facts undeclared"
    parts = []
    if facts["selection"] == "test":
        parts.append("selected on test")
    if facts["label_set_dependent"]:
        parts.append("label-set-dependent inference")
    if facts["extra_data"]:
        parts.append("extra data: " + ", ".join(facts["extra_data"]))
    return ", ".join(parts)
