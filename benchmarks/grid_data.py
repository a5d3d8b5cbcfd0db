"""The eleven datasets of the paper grid as generated stand-ins (used by grid.py).

``GRID`` holds each dataset's real class count, split sizes (docs/protocol.md §3) and a typical
image size of the real files (approximate: real datasets mix sizes). ``scaled(spec, scale, cap)``
gives the sizes of a stand-in; ``write_dataset`` writes it in the dataset's CoOp layout so bench
loads it through the registered dataset (split file, FGVC's variant lists, ImageNet's folders).

Per class, ``distinct`` JPEGs are generated (smooth colour pattern + noise, encoded by PIL) and
every other file of the class is a hard link to one of them (a copy where links fail): the files
are cheap to make, and bench still opens and decodes every listed file. The train (and val) pool
of a class is its real size capped at ``cap`` images: the sweep samples at most 16 train + 4 val
per class per seed, so a pool of 200 gives nearly the same overlaps between seeds and shot counts
as 500 or 1,300 (the projection counts on the same capped pools, see grid.plan_counts).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class GridDataset:
    name: str
    classes: int
    train: int
    val: int  # 0: no val split (ImageNet: val is drawn from train)
    test: int
    size: tuple[int, int]  # typical (width, height) of the real images


GRID = [
    GridDataset("imagenet", 1000, 1281167, 0, 50000, (500, 375)),
    GridDataset("caltech101", 100, 4128, 1649, 2465, (300, 200)),
    GridDataset("oxford_pets", 37, 2944, 736, 3669, (500, 375)),
    GridDataset("stanford_cars", 196, 6509, 1635, 8041, (640, 427)),
    GridDataset("oxford_flowers", 102, 4093, 1633, 2463, (667, 500)),
    GridDataset("food101", 101, 50500, 20200, 30300, (512, 512)),
    GridDataset("fgvc_aircraft", 100, 3334, 3333, 3333, (1024, 700)),
    GridDataset("sun397", 397, 15880, 3970, 19850, (640, 480)),
    GridDataset("dtd", 47, 2820, 1128, 1692, (640, 480)),
    GridDataset("eurosat", 10, 13500, 5400, 8100, (64, 64)),
    GridDataset("ucf101", 101, 7639, 1898, 3783, (320, 240)),
]
BY_NAME = {d.name: d for d in GRID}


@dataclass(frozen=True)
class Scaled:
    """Sizes of one stand-in: classes, per-class train/val pools, test images in all."""

    name: str
    classes: int
    train_per_class: int
    val_per_class: int
    test: int
    size: tuple[int, int]

    @property
    def files(self) -> int:
        return self.classes * (self.train_per_class + self.val_per_class) + self.test


def scaled(d: GridDataset, scale: float, cap: int = 200) -> Scaled:
    """Classes and test images scaled by ``scale`` (at least 2 classes, one test image per
    class); per-class pools are the real per-class sizes, capped at ``cap``."""
    if not 0 < scale <= 1:
        raise ValueError(f"scale must be in (0, 1], not {scale}")
    classes = max(2, round(d.classes * scale))
    test = max(classes, round(d.test * scale))
    return Scaled(d.name, classes, min(cap, math.ceil(d.train / d.classes)),
                  min(cap, math.ceil(d.val / d.classes)), test, d.size)


def _image(size: tuple[int, int], seed: int):
    import numpy as np
    from PIL import Image

    w, h = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    freq, angle = rng.uniform(2, 12), rng.uniform(0, 3.14)
    wave = np.sin(2 * np.pi * freq * (xx * np.cos(angle) + yy * np.sin(angle)) / max(w, h))
    img = rng.uniform(40, 215, size=3)[None, None, :] + 50 * wave[..., None]
    img = img + rng.normal(0, 12, size=(h, w, 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def _write_base(job) -> None:
    path, size, seed = job
    _image(size, seed).save(path, quality=90)


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


class _Writer:
    """Writes one class's files: ``distinct`` generated JPEGs, then links to them."""

    def __init__(self, s: Scaled, distinct: int, seed: int):
        self.s, self.distinct, self.seed = s, distinct, seed
        self.bases: dict[int, list[Path]] = {}
        self.jobs: list[tuple] = []
        self.links: list[tuple[Path, Path]] = []

    def add(self, label: int, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        bases = self.bases.setdefault(label, [])
        if len(bases) < self.distinct:
            bases.append(path)
            self.jobs.append((str(path), self.s.size, self.seed * 1_000_003 + label * 101
                              + len(bases)))
        else:
            self.links.append((bases[len(self.links) % len(bases)], path))

    def flush(self, processes: int) -> None:
        if processes > 1 and len(self.jobs) > 64:
            from multiprocessing import Pool

            with Pool(processes) as pool:
                pool.map(_write_base, self.jobs, chunksize=16)
        else:
            for job in self.jobs:
                _write_base(job)
        for src, dst in self.links:
            _link(src, dst)


def _layout(s: Scaled) -> dict[str, list[tuple[str, int]]]:
    """The (relative path, label) lists of the stand-in, relative to its image folder."""
    c = s.classes
    lists: dict[str, list] = {"train": [], "val": [], "test": []}
    for label in range(c):
        for i in range(s.train_per_class):
            lists["train"].append((f"class{label:04d}/tr{i:04d}.jpg", label))
        for i in range(s.val_per_class):
            lists["val"].append((f"class{label:04d}/va{i:04d}.jpg", label))
    for i in range(s.test):
        label = i % c
        lists["test"].append((f"class{label:04d}/te{i:06d}.jpg", label))
    return lists


def class_names(n: int) -> list[str]:
    """Real class names, so prompts have real token lengths (the text encoder's sequence and
    the part of it after CoOp's shared prefix): ImageNet's as open_clip ships them, in order,
    a repeated name made unique with a number."""
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    names, seen = [], set()
    for i in range(n):
        name = IMAGENET_CLASSNAMES[i % len(IMAGENET_CLASSNAMES)]
        while name in seen:
            name += " 2"
        seen.add(name)
        names.append(name)
    return names


def write_dataset(root: Path, s: Scaled, distinct: int = 4, seed: int = 0,
                  processes: int = 1) -> int:
    """Write the stand-in ``s`` under ``root`` in its CoOp layout; returns the files written
    (0 when a complete copy with the same sizes is already there)."""
    from datasets_registry import DATASETS

    ds = DATASETS.get(s.name)
    folder = Path(root) / ds.folder
    marker = folder / f".grid-{s.classes}-{s.train_per_class}-{s.val_per_class}-{s.test}-" \
                      f"{s.size[0]}x{s.size[1]}-{distinct}-{seed}-realnames"
    if marker.exists():
        return 0
    shutil.rmtree(folder, ignore_errors=True)
    lists = _layout(s)
    names = class_names(s.classes)
    writer = _Writer(s, distinct, seed)
    if s.name == "imagenet":  # images/train/<wnid>/, images/val/<wnid>/ (= test), classnames.txt
        for split, sub in (("train", "train"), ("test", "val")):
            for rel, label in lists[split]:
                writer.add(label, folder / "images" / sub / rel.replace(".jpg", ".JPEG"))
        (folder / "classnames.txt").write_text(
            "".join(f"class{label:04d} {n}\n" for label, n in enumerate(names)))
    elif s.name == "fgvc_aircraft":  # images/<id>.jpg + variants.txt + images_variant_*.txt
        (folder / "images").mkdir(parents=True, exist_ok=True)
        (folder / "variants.txt").write_text("".join(f"{n}\n" for n in names))
        for split, items in lists.items():
            lines = []
            for rel, label in items:
                image_id = rel.replace("/", "_")[:-4]
                writer.add(label, folder / "images" / f"{image_id}.jpg")
                lines.append(f"{image_id} {names[label]}\n")
            (folder / f"images_variant_{split}.txt").write_text("".join(lines))
    else:  # a CoOp split file over <image_subdir>/<class>/<file>
        image_dir = ds.image_dir(Path(root))
        prefix = {"stanford_cars": {"train": "cars_train/", "val": "cars_train/",
                                    "test": "cars_test/"}}.get(s.name, {})
        split = {}
        for name, items in lists.items():
            rows = []
            for rel, label in items:
                rel = prefix.get(name, "") + rel
                writer.add(label, image_dir / rel)
                rows.append([rel, label, names[label]])
            split[name] = rows
        (folder / ds.split_file).write_text(json.dumps(split))
    writer.flush(processes)
    marker.touch()
    return len(writer.jobs) + len(writer.links)
