"""Datasets described by a CoOp split file (``split_zhou_*.json``).

The file is an object with keys ``train``, ``val`` and ``test``, each a list of
``[relative_path, label, classname]`` with 0-based labels; paths are relative to the dataset's
image folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import Callable

from bench.base.errors import BenchError
from datasets_registry.base import Dataset, DatasetSplits, Item


def read_split_file(path: Path) -> tuple[dict[str, list[Item]], list[str]]:
    """Parse a CoOp split file into lists of (path, label) and the class names by label."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise BenchError(f"split file {path} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BenchError(f"split file {path} is not valid JSON ({exc}); download it again") from None
    if not isinstance(data, dict) or not all(k in data for k in ("train", "val", "test")):
        raise BenchError(f"split file {path} must be a JSON object with keys 'train', 'val' "
                         f"and 'test'")
    splits: dict[str, list[Item]] = {}
    names: dict[int, str] = {}
    first: dict[int, str] = {}  # label -> where it first occurs ("entry 3 of 'test'")
    for split in ("train", "val", "test"):
        rows = data[split]
        if not isinstance(rows, list):
            raise BenchError(f"split file {path}: '{split}' must be a list of "
                             f"[relative_path, label, classname]")
        items = []
        for i, row in enumerate(rows):
            if (not isinstance(row, (list, tuple)) or len(row) != 3 or not isinstance(row[0], str)
                    or not isinstance(row[1], int) or isinstance(row[1], bool)
                    or not isinstance(row[2], str)):
                raise BenchError(f"split file {path}: entry {i} of '{split}' is {row!r}; "
                                 f"expected [relative_path, label, classname]")
            rel, label, cname = row
            where = f"entry {i} of '{split}'"
            if label < 0:
                raise BenchError(f"split file {path}: {where} has a negative label {label}")
            problem = outside_problem(rel)
            if problem:
                raise BenchError(f"split file {path}: {where} has the path {rel!r}, which "
                                 f"{problem}; paths must be relative to the dataset's image "
                                 f"folder and stay inside it (the file is damaged or not a "
                                 f"CoOp split file)")
            if names.setdefault(label, cname) != cname:
                raise BenchError(f"split file {path}: label {label} is named both "
                                 f"{names[label]!r} and {cname!r}")
            first.setdefault(label, where)
            items.append((rel, label))
        splits[split] = items
    if not names:
        raise BenchError(f"split file {path} lists no images")
    if sorted(names) != list(range(len(names))):
        raise BenchError(_label_range_message(path, names, first))
    return splits, [names[i] for i in range(len(names))]


def outside_problem(rel: str) -> str | None:
    """Why the list path ``rel`` would leave its image folder (or name none), else None.

    Lexical on purpose: an image folder that is a symlink to scratch space is fine, a path
    with ``..`` or an absolute path is not (it could read any file the user can read).
    """
    if not rel.strip():
        return "is empty"
    if rel.startswith(("/", "\\")) or PureWindowsPath(rel).drive:
        return "is absolute"
    depth = 0
    for part in rel.replace("\\", "/").split("/"):
        depth += -1 if part == ".." else (0 if part in ("", ".") else 1)
        if depth < 0:
            return "leaves the image folder ('..')"
    return None


def _label_range_message(path: Path, names: dict[int, str], first: dict[int, str]) -> str:
    """Labels are not 0..n-1. The classes are counted by their names: a damaged label keeps
    its class name, so a 10-class file with one label changed to 12 still names 10 classes."""
    n = len(set(names.values()))
    bad = [label for label in sorted(names) if label >= n]
    top = bad[-1]
    same = [other for other, name in names.items() if name == names[top] and other != top]
    also = f", which is also the name of label {same[0]}" if same else ""
    unused = [label for label in range(n) if label not in names][:5]
    gaps = f", and labels {unused} never occur" if unused else ""
    return (f"split file {path}: label {top} ({names[top]!r}{also}; first at {first[top]}) "
            f"is out of range for {n} classes: labels must be 0..{n - 1} without gaps{gaps}; "
            f"the file is damaged or not a CoOp split file")


@dataclass
class SplitFileDataset(Dataset):
    """A dataset whose lists come from one split file in its folder.

    ``split_maker(dataset, data_root)`` returns the rows of a missing split file made by CoOp's
    rules ({train, val, test: [[path, label, classname]]}); `bench data split` calls it with
    ``random`` seeded (``datasets_registry/make_split.py`` has CoOp's makers). None when the file
    can only be downloaded.
    """

    image_subdir: str = ""  # images are relative to <root>/<image_subdir>
    split_file: str = ""
    image_source: str = ""  # where the images come from (shown when they are missing)
    split_source: str = ""  # where the split file comes from
    image_folders: tuple[str, ...] = ()  # folders that must exist (default: image_subdir)
    split_maker: Callable[["SplitFileDataset", Path], dict] | None = None

    def requirements(self) -> list[tuple[str, str]]:
        folders = self.image_folders or ((self.image_subdir,) if self.image_subdir else ())
        need = [(f.rstrip("/") + "/", self.image_source or self.source) for f in folders]
        need.append((self.split_file, (self.split_source or self.source) + self._create_hint()))
        return need

    def _create_hint(self) -> str:
        return (f" (or create a non-official one with `bench data split {self.name} "
                f"--data-root ...`)" if self.split_maker is not None else "")

    def image_dir(self, data_root: Path) -> Path:
        return self.root(data_root) / self.image_subdir if self.image_subdir else self.root(data_root)

    def load(self, data_root: Path) -> DatasetSplits:
        root = self.existing_root(data_root)
        split_path = root / self.split_file
        if not split_path.is_file():
            raise BenchError(f"dataset {self.display_name}: split file {split_path} not found; "
                             f"get it from {self.split_source or self.source or 'CoOp DATASETS.md'}"
                             f"{self._create_hint()}")
        splits, classnames = read_split_file(split_path)
        return DatasetSplits(self.name, classnames, self.image_dir(data_root),
                             splits["train"], splits["val"], splits["test"])
