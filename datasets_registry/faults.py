"""Faults of a dataset's lists that no single entry shows: empty splits, an image listed in two
splits (test leakage when one is test), an entry listed twice in a split, an image listed with
two labels, and classes without a train image.

``split_faults(splits)`` finds them from the lists alone (relative paths, no file is read);
`bench data check` reports them all and adds, when it decodes the images, the same bytes under
two paths (``datasets_registry/check.py``); the planner refuses a run on :meth:`SplitFaults.refusal`
(bench/identity.py), and the few-shot samplers count each image once (``fewshot.py``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from datasets_registry.base import DatasetSplits

SPLITS = ("train", "val", "test")
SHOW = 3  # examples per line
MOST_SHOTS = 16  # the protocol's largest shot count (docs/protocol.md §2)


def _examples(paths, counts: dict | None = None) -> str:
    paths = list(paths)
    shown = ", ".join(repr(p) + (f" {counts[p]} times" if counts else "") for p in paths[:SHOW])
    more = f" and {len(paths) - SHOW} more" if len(paths) > SHOW else ""
    return shown + more


@dataclass
class SplitFaults:
    empty: list[str] = field(default_factory=list)  # splits that hold nothing but must
    overlaps: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # paths in both
    duplicates: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> path -> n
    relabelled: dict[str, dict[str, list[int]]] = field(default_factory=dict)  # path -> labels
    no_train: list[str] = field(default_factory=list)  # class names without a train image
    few_train: dict[str, int] = field(default_factory=dict)  # class -> distinct train images,
    # for classes with some but fewer than MOST_SHOTS

    def errors(self) -> list[str]:
        """Faults that make the dataset's results wrong: each one line."""
        out = [f"'{s}' lists no images (the file is truncated or not a split file)"
               for s in self.empty]
        for (a, b), paths in self.overlaps.items():
            if b == "test":
                why = ("methods would train on" if a == "train"
                       else "methods would choose their settings on")
                out.append(f"{len(paths)} image(s) of '{a}' are also in 'test' (test leakage: "
                           f"{why} test images), e.g. {_examples(paths)}")
        for split, paths in self.relabelled.items():
            first = next(iter(paths))
            out.append(f"{len(paths)} image(s) of '{split}' are listed with two or more labels, "
                       f"e.g. {first!r} with labels {paths[first]}")
        return out

    def warnings(self) -> list[str]:
        """Faults bench copes with (and says how)."""
        out = []
        for (a, b), paths in self.overlaps.items():
            if b != "test":
                out.append(f"{len(paths)} image(s) of '{a}' are also in '{b}', e.g. "
                           f"{_examples(paths)}; the few-shot val subset never takes an image "
                           f"of the train subset")
        for split, counts in self.duplicates.items():
            extra = sum(n - 1 for n in counts.values())
            how = ("each counts once in the few-shot subsets (recorded as fewshot.duplicates)"
                   if split != "test" else "each is scored as often as it is listed")
            out.append(f"'{split}' lists {len(counts)} image(s) more than once ({extra} extra "
                       f"entries), e.g. {_examples(counts, counts)}; {how}")
        if self.no_train:
            out.append(f"{len(self.no_train)} class(es) have no train image, e.g. "
                       f"{_examples(self.no_train)}: no shot of them can be drawn (recorded in "
                       f"fewshot.short_classes with 0)")
        return out

    def notes(self) -> list[str]:
        """What a few-shot run will do differently (not a fault of the lists)."""
        if not self.few_train:
            return []
        shown = ", ".join(f"{name!r} {n}" for name, n in list(self.few_train.items())[:SHOW])
        more = f" and {len(self.few_train) - SHOW} more" if len(self.few_train) > SHOW else ""
        return [f"{len(self.few_train)} class(es) have fewer than {MOST_SHOTS} distinct train "
                f"images ({shown}{more}): a K-shot subset with K above a class's count takes "
                f"all of its images (CoOp's rule; recorded as fewshot.short_classes)"]


def _index(items) -> tuple[dict[str, int], dict[str, int], dict[str, list[int]]]:
    """(path -> its first label, path -> times listed if more than once, path -> its labels if
    more than one), in one pass and one dict the size of the list (ImageNet's has 1.28M)."""
    first: dict[str, int] = {}
    repeats: dict[str, int] = {}
    relabelled: dict[str, list[int]] = {}
    for rel, label in items:
        if rel not in first:
            first[rel] = label
            continue
        repeats[rel] = repeats.get(rel, 1) + 1
        if label != first[rel]:
            seen = relabelled.setdefault(rel, [first[rel]])
            if label not in seen:
                seen.append(label)
    return first, repeats, relabelled


def split_faults(splits: DatasetSplits) -> SplitFaults:
    """The faults of ``splits``'s lists (see the module docstring)."""
    faults = SplitFaults()
    evaluation_only = splits.source is not None  # ImageNet's variants: test only, by design
    lists = {s: splits.split(s) for s in SPLITS}
    for s in SPLITS:
        if not lists[s] and (s == "test" or not evaluation_only):
            faults.empty.append(s)
    indexed: dict[int, tuple] = {}  # by list: ImageNet's val list is its train list
    paths: dict[str, dict[str, int]] = {}
    for s in SPLITS:
        key = id(lists[s])
        if key not in indexed:
            indexed[key] = _index(lists[s])
        first, repeats, relabelled = indexed[key]
        paths[s] = first
        if repeats:
            faults.duplicates[s] = repeats
        if relabelled:
            faults.relabelled[s] = {rel: sorted(ls) for rel, ls in relabelled.items()}
    pairs = [("train", "test"), ("val", "test")]
    if not splits.val_from_train:  # ImageNet: val is the train list, on purpose
        pairs.insert(0, ("train", "val"))
    for a, b in pairs:
        both = [rel for rel in paths[a] if rel in paths[b]]
        if both:
            faults.overlaps[(a, b)] = both
    if lists["train"]:
        distinct = Counter(paths["train"].values())  # images per class, each path once
        faults.no_train = [name for i, name in enumerate(splits.classnames) if not distinct[i]]
        faults.few_train = {name: distinct[i] for i, name in enumerate(splits.classnames)
                            if 0 < distinct[i] < MOST_SHOTS}
    return faults
