"""The evaluation protocols a cell can follow (docs/protocol.md §12).

* ``fewshot`` (default): train on K shots of every class, test on the dataset's test set.
* ``base2novel`` (CoCoOp): the classes are split in two by label, base = the first
  ``ceil(C / 2)``, novel = the rest. The few-shot subset is drawn over all classes as in the
  few-shot protocol and then cut to the base classes (CoCoOp's datasets draw, then
  ``subsample_classes``), so no novel-class image reaches training. The model is evaluated on the
  base test images over the base classes and on the novel test images over the novel classes
  (through ``Fitted.for_classes``); reports give base, novel and their harmonic mean.
* ``domain`` (CoOp/CoCoOp domain generalization): train on the source (ImageNet), evaluate on
  its test set and on each target (ImageNet-V2, -Sketch, -A, -R). A target whose classes are a
  subset of the source's (A and R: 200) is scored over those classes only, named by the target's
  ``source_classes``: through ``Fitted.for_classes`` with those source classes where the method
  has it, else the source classifier's columns (bench.evaluate.source_subset_model).
* ``crossdataset`` (CoCoOp cross-dataset transfer): train on the source, evaluate on other
  datasets' test sets over their own classes (through ``Fitted.for_classes``).

A cell carries ``protocol`` (absent for ``fewshot``, so few-shot records keep their identity)
and, for ``domain``/``crossdataset``, ``targets``; a record keeps every evaluation in
``evaluations`` (``base``/``novel``, or the source and target dataset keys) and its primary one
(base, or the source) in ``metrics``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bench.base.errors import UsageError

PROTOCOLS = ("fewshot", "base2novel", "domain", "crossdataset")
TRANSFER = ("domain", "crossdataset")  # protocols with a source and targets
# Methods must score classes they never trained on under these (Fitted.for_classes).
NEEDS_NEW_CLASSES = ("base2novel", "crossdataset")
DEFAULT_SOURCE = "imagenet"
DOMAIN_TAG = "domain_target"  # the tag of ImageNet-V2/-Sketch/-A/-R (test-only datasets)


def protocol_of(cell: dict) -> str:
    return cell.get("protocol") or "fewshot"


def check_protocol(name: str) -> str:
    if name not in PROTOCOLS:
        from bench.base.errors import did_you_mean

        raise UsageError(f"--protocol {name!r}: choose one of {', '.join(PROTOCOLS)}."
                         f"{did_you_mean(name, PROTOCOLS)}")
    return name


def cell_fields(protocol: str, targets: list[str] | None = None) -> dict:
    """The keys a cell of ``protocol`` carries (nothing for the few-shot protocol)."""
    if protocol == "fewshot":
        return {}
    fields = {"protocol": protocol}
    if protocol in TRANSFER:
        fields["targets"] = list(targets or [])
    return fields


def supports_new_classes(method: str, config: dict | None = None) -> bool:
    """Whether ``method`` (with ``config``, when given) scores classes it did not train on: its
    registration's ``new_classes`` is True, or a function of the config (CoOp: not with a
    class-specific context); without a config such a function counts as yes."""
    from methods import METHODS

    flag = METHODS.entry(method).extra.get("new_classes")
    if callable(flag):
        return config is None or bool(flag(config))
    return bool(flag)


def split_methods(protocol: str, names: list[str]) -> tuple[list[str], list[str]]:
    """(methods that can run ``protocol``, those that cannot)."""
    if protocol not in NEEDS_NEW_CLASSES:
        return list(names), []
    ok = [n for n in names if supports_new_classes(n)]
    return ok, [n for n in names if n not in ok]


def config_refusals(protocol: str, cells: list[dict]) -> list[str]:
    """Method labels whose resolved config cannot follow ``protocol`` (``coop:csc``)."""
    if protocol not in NEEDS_NEW_CLASSES:
        return []
    bad = {}
    for cell in cells:
        if not supports_new_classes(cell["method"], cell["config"]):
            label = f"{cell['method']}:{cell['variant']}" if cell.get("variant") else cell["method"]
            bad[label] = None
    return list(bad)


def refusal(protocol: str, refused: list[str]) -> str:
    from methods import METHODS

    able = [e.name for e in METHODS.entries() if e.extra.get("new_classes")]
    return (f"--protocol {protocol} scores classes a method never trained on; "
            f"{', '.join(refused)} learn{'s' if len(refused) == 1 else ''} per-class weights and "
            f"cannot (docs/protocol.md §12). Methods that can: {', '.join(able)}")


# ----------------------------------------------------------------------------- base-to-novel
@dataclass(frozen=True)
class BaseNovel:
    """CoCoOp's class split of a dataset with ``n_classes`` classes: base = labels [0, m),
    novel = labels [m, C) relabeled to [0, C - m), m = ceil(C / 2)."""

    n_classes: int

    @property
    def m(self) -> int:
        return math.ceil(self.n_classes / 2)

    def is_base(self, label: int) -> bool:
        return label < self.m

    def base_items(self, items):
        return [it for it in items if it[1] < self.m]

    def test_parts(self, test_items) -> dict[str, tuple[list[int], list[int]]]:
        """{"base"/"novel": (positions in the test list, labels in that part's own space)}."""
        parts: dict[str, tuple[list[int], list[int]]] = {"base": ([], []), "novel": ([], [])}
        for i, (_, label) in enumerate(test_items):
            part = "base" if label < self.m else "novel"
            parts[part][0].append(i)
            parts[part][1].append(label if part == "base" else label - self.m)
        return parts

    def classnames(self, names: list[str]) -> dict[str, list[str]]:
        return {"base": list(names[:self.m]), "novel": list(names[self.m:])}


def base_subset(subset, split: BaseNovel):
    """The few-shot subset cut to the base classes (drawn over all classes first, as CoCoOp)."""
    from datasets_registry.fewshot import FewShotSubset

    short = {s: {k: v for k, v in d.items() if split.is_base(k)}
             for s, d in subset.short_classes.items()}
    return FewShotSubset(split.base_items(subset.train), split.base_items(subset.val),
                         subset.shots, subset.seed, {s: d for s, d in short.items() if d},
                         dict(subset.duplicates))
