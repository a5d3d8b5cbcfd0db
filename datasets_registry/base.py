"""What a dataset is: its name, class names, prompt templates and train/val/test lists.

Paths in the lists are relative to ``DatasetSplits.image_dir`` (exactly as in CoOp's split files),
so few-shot subsets written by the harness are portable between machines.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

from bench.base.errors import BenchError

Item = tuple[str, int]  # (path relative to image_dir, 0-based label)


@dataclass
class DatasetSplits:
    name: str
    classnames: list[str]  # index = label, cleaned as CoOp cleans them
    image_dir: Path
    train: list[Item]
    val: list[Item]
    test: list[Item]
    # True for ImageNet: ``val`` is the train list (there is no val split); the few-shot samplers
    # draw the val subset from train images outside the few-shot train subset, never from test.
    val_from_train: bool = False
    # Evaluation-only targets of the domain-generalization protocol (ImageNet-V2, -Sketch, -A,
    # -R): ``source`` names the dataset the classifier is trained on ("imagenet"), and
    # ``source_classes[i]`` is the label of this dataset's class ``i`` in the source dataset (by
    # wnid), so a classifier over the source classes is restricted to these columns, in this order.
    source: str | None = None
    source_classes: list[int] | None = None

    @property
    def prompt_classnames(self) -> list[str]:
        """Class names as they go into prompts (CoOp replaces ``_`` by a space)."""
        return [c.replace("_", " ") for c in self.classnames]

    def split(self, name: str) -> list[Item]:
        return {"train": self.train, "val": self.val, "test": self.test}[name]


@dataclass
class Expected:
    """Published sizes of the dataset (docs/protocol.md §3), used by `bench data check`."""

    classes: int
    train: int
    val: int
    test: int


@dataclass
class Dataset(ABC):
    """A registered dataset. ``folder`` is its directory under the data root."""

    name: str
    display_name: str
    folder: str
    templates: list[str]
    expected: Expected | None = None
    description: str = ""
    source: str = ""  # where users get the data (shown by `bench data check`)
    extra: dict = field(default_factory=dict)

    def root(self, data_root: Path) -> Path:
        return Path(data_root) / self.folder

    def existing_root(self, data_root: Path) -> Path:
        """The dataset folder; a BenchError pointing at `bench data check` when it is missing."""
        root = self.root(data_root)
        if not root.is_dir():
            raise BenchError(f"dataset {self.display_name}: folder {root} not found (run "
                             f"`bench data check --data-root {data_root}` for what is expected)")
        return root

    def requirements(self) -> list[tuple[str, str]]:
        """What must exist under the dataset folder to load it: (relative path, where to get it).

        A path ending in ``/`` is a folder. `bench data check` reports each missing one with its
        source.
        """
        return []

    def check_paths(self, data_root: Path, splits: DatasetSplits) -> list[str]:
        """Image paths (relative to ``splits.image_dir``) whose existence `bench data check`
        verifies. Datasets whose lists come from a directory listing return [] (nothing can
        be missing)."""
        seen: dict[str, None] = {}
        for items in (splits.train, splits.val, splits.test):
            for rel, _ in items:
                seen.setdefault(rel, None)
        return list(seen)

    def check_notes(self, data_root: Path, splits: DatasetSplits) -> list[str]:
        """Remarks `bench data check` prints for a loadable dataset (not errors)."""
        return []

    @abstractmethod
    def load(self, data_root: Path) -> DatasetSplits:
        """Read the train/val/test lists from the on-disk layout; raise BenchError if missing."""
