"""Create a missing CoOp split file (``split_zhou_*.json``) from the official data, by CoOp's rules.

- Caltech101, DTD, EuroSAT, Food101: class folders sorted by name (Caltech101 without
  ``BACKGROUND_Google`` and ``Faces_easy``); each class's images shuffled and cut 50/20/30
  (n_train = round(0.5 n), n_val = round(0.2 n), the rest test).
- OxfordPets, SUN397, UCF101: the official train(+val) list split per class 80/20
  (n_val = round(0.2 n), after a shuffle); the official test list kept.

Python's ``random`` is seeded with ``seed`` first (CoOp uses its run seed). Files within a class
folder are sorted before the shuffle (CoOp takes ``os.listdir`` order), so a created file is
reproducible here but is *not* the published one: download the published file to compare with
published numbers. Flowers102 and StanfordCars (labels in MATLAB files) are not supported.

Each dataset names its maker (``SplitFileDataset.split_maker``, set in
``datasets_registry/coop_split_datasets.py``): ``class_folders``, ``pets_lists``, ``ucf_lists`` or
``sun_lists`` below; a plugin dataset can pass its own.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

from bench.base.errors import BenchError, UsageError
from datasets_registry.base import Dataset

Row = list  # [relative path, label, classname]


def _listdir(path: Path) -> list[str]:
    return sorted(n for n in os.listdir(path) if not n.startswith("."))


def split_folders(image_dir: Path, ignored=(), new_cnames=None, p_train=0.5, p_val=0.2):
    new_cnames = new_cnames or {}
    cats = [c for c in _listdir(image_dir) if c not in ignored and (image_dir / c).is_dir()]
    if not cats:
        raise BenchError(f"{image_dir} has no class folders")
    out: dict[str, list[Row]] = {"train": [], "val": [], "test": []}
    for label, cat in enumerate(cats):
        images = [f"{cat}/{n}" for n in _listdir(image_dir / cat)]
        random.shuffle(images)
        n = len(images)
        n_train, n_val = round(n * p_train), round(n * p_val)
        if n_train < 1 or n_val < 1 or n - n_train - n_val < 1:
            raise BenchError(f"class folder {image_dir / cat} has {n} images: too few to split "
                             f"50/20/30 (each part needs at least one)")
        name = new_cnames.get(cat, cat)
        out["train"] += [[p, label, name] for p in images[:n_train]]
        out["val"] += [[p, label, name] for p in images[n_train:n_train + n_val]]
        out["test"] += [[p, label, name] for p in images[n_train + n_val:]]
    return out


def split_trainval(trainval: list[Row], p_val=0.2) -> tuple[list[Row], list[Row]]:
    groups: dict[int, list[int]] = {}
    for i, row in enumerate(trainval):
        groups.setdefault(row[1], []).append(i)
    train, val = [], []
    for label, idxs in groups.items():
        n_val = round(len(idxs) * p_val)
        if n_val < 1:
            raise BenchError(f"label {label} has {len(idxs)} train+val images: too few for an "
                             f"80/20 split")
        random.shuffle(idxs)
        val += [trainval[i] for i in idxs[:n_val]]
        train += [trainval[i] for i in idxs[n_val:]]
    return train, val


def _lines(path: Path) -> list[str]:
    try:
        return [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    except FileNotFoundError:
        raise BenchError(f"{path} not found: it is needed to create the split file") from None


def class_folders(ds, data_root: Path) -> dict:
    """Caltech101, DTD, EuroSAT, Food101: each class folder of the image folder cut 50/20/30
    (``ds.extra``: ``ignored`` folders, ``new_cnames`` renames)."""
    return split_folders(ds.image_dir(data_root), ignored=ds.extra.get("ignored", ()),
                         new_cnames=ds.extra.get("new_cnames"))


def pets_lists(ds, data_root: Path) -> dict:
    """OxfordPets: ``annotations/trainval.txt`` split 80/20, ``annotations/test.txt`` kept."""
    root = ds.root(data_root)

    def read(fname):
        rows = []
        for line in _lines(root / "annotations" / fname):
            imname, label = line.split(" ")[:2]
            breed = "_".join(imname.split("_")[:-1]).lower()
            rows.append([f"{imname}.jpg", int(label) - 1, breed])
        return rows

    train, val = split_trainval(read("trainval.txt"))
    return {"train": train, "val": val, "test": read("test.txt")}


def ucf_lists(ds, data_root: Path) -> dict:
    """UCF101: ``ucfTrainTestlist/trainlist01.txt`` split 80/20, ``testlist01.txt`` kept."""
    root = ds.root(data_root)
    lab = {}
    for line in _lines(root / "ucfTrainTestlist" / "classInd.txt"):
        idx, cname = line.split(" ")
        lab[cname] = int(idx) - 1

    def read(fname):
        rows = []
        for line in _lines(root / "ucfTrainTestlist" / fname):
            action, video = line.split(" ")[0].split("/")
            renamed = "_".join(re.findall("[A-Z][^A-Z]*", action))
            rows.append([f"{renamed}/{video.replace('.avi', '.jpg')}", lab[action], renamed])
        return rows

    train, val = split_trainval(read("trainlist01.txt"))
    return {"train": train, "val": val, "test": read("testlist01.txt")}


def sun_lists(ds, data_root: Path) -> dict:
    """SUN397: ``Training_01.txt`` split 80/20, ``Testing_01.txt`` kept."""
    root = ds.root(data_root)
    lab = {c[1:]: i for i, c in enumerate(_lines(root / "ClassName.txt"))}

    def read(fname):
        rows = []
        for line in _lines(root / fname):
            rel = line[1:]
            cdir = os.path.dirname(rel)
            rows.append([rel, lab[cdir], " ".join(cdir.split("/")[1:][::-1])])
        return rows

    train, val = split_trainval(read("Training_01.txt"))
    return {"train": train, "val": val, "test": read("Testing_01.txt")}


def make_split(ds: Dataset, data_root: Path, seed: int = 1, force: bool = False) -> Path:
    """Write ``ds``'s split file, made by its ``split_maker`` hook with ``random`` seeded."""
    from results.atomic import atomic_write_json

    split_file = getattr(ds, "split_file", "")
    if not split_file:
        raise UsageError(f"dataset {ds.name} has no split file: its lists come from its own "
                         f"folders and text files")
    maker = getattr(ds, "split_maker", None)
    if maker is None:
        raise UsageError(f"creating the split file of {ds.display_name} is not supported; "
                         f"download it: {getattr(ds, 'split_source', '') or ds.source}")
    path = ds.root(data_root) / split_file
    if path.exists() and not force:
        raise UsageError(f"{path} already exists; pass --force to overwrite it")
    image_dir = ds.image_dir(data_root)
    if not image_dir.is_dir():
        raise BenchError(f"image folder {image_dir} not found; get it from {ds.image_source}")
    random.seed(seed)
    atomic_write_json(path, maker(ds, data_root))
    return path
