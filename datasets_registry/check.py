"""`bench data check`: is each dataset where it should be, complete, and the published size?

``check_dataset`` never raises for bad data: every problem becomes a line in the result, naming
the exact path expected and where to get it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from bench.errors import BenchError
from datasets_registry.base import Dataset, DatasetSplits

SHOW_MISSING = 5  # how many missing image paths to print


@dataclass
class DatasetCheck:
    name: str
    display_name: str
    folder: Path
    found: bool = False  # the dataset folder exists
    counts: dict[str, int] | None = None  # classes, train, val, test as loaded
    problems: list[str] = field(default_factory=list)  # each makes the dataset unusable
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    missing_images: int = 0
    images_checked: int = 0
    missing_examples: list[str] = field(default_factory=list)
    splits: DatasetSplits | None = None

    @property
    def usable(self) -> bool:
        return self.found and not self.problems

    @property
    def status(self) -> str:
        if not self.found:
            return "MISSING"
        if self.problems:
            return "UNUSABLE"
        return "OK" if not self.warnings else "OK (with warnings)"


def _exists(root: Path, rel: str) -> bool:
    p = root / rel.rstrip("/")
    return p.is_dir() if rel.endswith("/") else p.is_file()


def missing_files(image_dir: Path, rels: list[str]) -> list[str]:
    """The paths in ``rels`` (relative to ``image_dir``) that are not files; one listing per folder."""
    listed: dict[str, set[str] | None] = {}
    missing = []
    for rel in rels:
        folder, _, name = rel.rpartition("/")
        if folder not in listed:
            try:
                with os.scandir(image_dir / folder if folder else image_dir) as it:
                    listed[folder] = {e.name for e in it if e.is_file()}
            except OSError:  # folder missing or not a folder
                listed[folder] = None
        names = listed[folder]
        if names is None or name not in names:
            missing.append(rel)
    return missing


def check_dataset(ds: Dataset, data_root: Path) -> DatasetCheck:
    data_root = Path(data_root)
    root = ds.root(data_root)
    res = DatasetCheck(ds.name, ds.display_name, root, found=root.is_dir())
    if not res.found:
        if root.exists():
            res.found = True
            res.problems.append(f"{root} is not a folder; remove it and put the dataset there")
        else:
            res.problems.append(f"folder {root} not found; create it and add:")
        for rel, source in ds.requirements():
            res.problems.append(f"  {root / rel.rstrip('/')}{'/' if rel.endswith('/') else ''}"
                                f"  <- {source}")
        return res
    for rel, source in ds.requirements():
        if not _exists(root, rel):
            kind = "folder" if rel.endswith("/") else "file"
            res.problems.append(f"missing {kind} {root / rel.rstrip('/')}"
                                f"{'/' if rel.endswith('/') else ''}  <- {source}")
    needs_files = [rel for rel, _ in ds.requirements() if not rel.endswith("/")]
    if any(not _exists(root, rel) for rel in needs_files):
        return res  # cannot read the lists without their files
    try:
        splits = ds.load(data_root)
    except BenchError as exc:
        res.problems.append(str(exc))
        return res
    res.splits = splits
    res.counts = {"classes": len(splits.classnames), "train": len(splits.train),
                  "val": len(splits.val), "test": len(splits.test)}
    rels = ds.check_paths(data_root, splits)
    res.images_checked = len(rels)
    if rels:
        gone = missing_files(splits.image_dir, rels)
        res.missing_images = len(gone)
        res.missing_examples = [str(splits.image_dir / r) for r in gone[:SHOW_MISSING]]
        if gone:
            image_source = next((src for rel, src in ds.requirements() if rel.endswith("/")),
                                ds.source)
            res.problems.append(f"{len(gone)} of {len(rels)} image files listed for "
                                f"{ds.display_name} are missing under {splits.image_dir}; "
                                f"get the images again: {image_source}")
    exp = ds.expected
    if exp is not None:
        published = {"classes": exp.classes, "train": exp.train, "val": exp.val,
                     "test": exp.test}
        diff = [k for k in published if res.counts[k] != published[k]]
        if diff:
            res.warnings.append(f"{', '.join(diff)} differ from the published sizes (partial "
                                f"copy, other version or other split file?): results are not "
                                f"comparable with published numbers")
    res.notes.extend(ds.check_notes(data_root, splits))
    return res


def _fmt_count(n: int, published: int | None) -> str:
    if published is None or n == published:
        return f"{n:,}"
    return f"{n:,} (published {published:,})"


def format_check(res: DatasetCheck, expected=None) -> str:
    folder = f"{res.folder.name}/"
    lines = [f"{res.display_name} [{res.name}] in {folder}: {res.status}"]
    if res.counts is not None:
        pub = ({"classes": expected.classes, "train": expected.train, "val": expected.val,
                "test": expected.test} if expected is not None else {})
        lines.append("  " + ", ".join(f"{k} {_fmt_count(v, pub.get(k))}"
                                      for k, v in res.counts.items()))
        if res.images_checked and not res.missing_images:
            lines.append(f"  all {res.images_checked:,} listed image files present")
    for p in res.problems:
        lines.append(f"  error: {p}" if not p.startswith("  ") else f"  {p}")
    for ex in res.missing_examples:
        lines.append(f"    missing: {ex}")
    if res.missing_images > len(res.missing_examples):
        lines.append(f"    ... and {res.missing_images - len(res.missing_examples)} more")
    for w in res.warnings:
        lines.append(f"  warning: {w}")
    for n in res.notes:
        lines.append(f"  note: {n}")
    return "\n".join(lines)
