"""FGVCAircraft (CoOp layout): the ``data/`` folder of fgvc-aircraft-2013b renamed ``fgvc_aircraft/``.

No split file: the classes are the lines of ``variants.txt`` (label = line index), and the lists
come from ``images_variant_{train,val,test}.txt`` whose lines read ``<imageid> <variant name>``
(the name may contain spaces); the image is ``images/<imageid>.jpg``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.base.errors import BenchError
from datasets_registry import COOP_TAG, register
from datasets_registry.base import Dataset, DatasetSplits, Expected, Item

DESCRIPTION = "100 aircraft model variants"
ARCHIVE = ("fgvc-aircraft-2013b.tar.gz from "
           "https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz: "
           "keep its data/ folder and rename it to fgvc_aircraft/")


@dataclass
class FGVCAircraftDataset(Dataset):
    def requirements(self) -> list[tuple[str, str]]:
        files = ["images/", "variants.txt"] + [f"images_variant_{s}.txt" for s in
                                               ("train", "val", "test")]
        return [(f, ARCHIVE) for f in files]

    def load(self, data_root: Path) -> DatasetSplits:
        root = self.existing_root(data_root)
        vpath = root / "variants.txt"
        classnames = [line.strip() for line in _read_lines(vpath, self) if line.strip()]
        if not classnames:
            raise BenchError(f"dataset {self.display_name}: {vpath} lists no variants")
        if len(set(classnames)) != len(classnames):
            dup = sorted({c for c in classnames if classnames.count(c) > 1})[:3]
            raise BenchError(f"dataset {self.display_name}: {vpath} repeats variants {dup}")
        label_of = {c: i for i, c in enumerate(classnames)}
        lists: dict[str, list[Item]] = {}
        for split in ("train", "val", "test"):
            path = root / f"images_variant_{split}.txt"
            items: list[Item] = []
            for n, line in enumerate(_read_lines(path, self), 1):
                parts = line.strip().split(" ")
                if not parts or not parts[0]:
                    continue
                if len(parts) < 2:
                    raise BenchError(f"dataset {self.display_name}: line {n} of {path} is "
                                     f"{line.strip()!r}; expected '<imageid> <variant name>'")
                variant = " ".join(parts[1:])
                if variant not in label_of:
                    raise BenchError(f"dataset {self.display_name}: line {n} of {path} names "
                                     f"variant {variant!r}, which is not in {vpath}")
                items.append((f"{parts[0]}.jpg", label_of[variant]))
            lists[split] = items
        return DatasetSplits(self.name, classnames, root / "images",
                             lists["train"], lists["val"], lists["test"])


def _read_lines(path: Path, ds: Dataset) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise BenchError(f"dataset {ds.display_name}: {path} not found; get it from "
                         f"{ARCHIVE}") from None
    except UnicodeDecodeError:
        raise BenchError(f"dataset {ds.display_name}: {path} is not a text file; "
                         f"re-extract it from {ARCHIVE}") from None


register(
    FGVCAircraftDataset(
        name="fgvc_aircraft",
        display_name="FGVCAircraft",
        folder="fgvc_aircraft",
        templates=["a photo of a {}, a type of aircraft."],
        expected=Expected(classes=100, train=3334, val=3333, test=3333),
        description=DESCRIPTION,
        source=ARCHIVE,
    ),
    order=7, tags=(COOP_TAG,),
)
