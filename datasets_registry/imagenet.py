"""ImageNet (CoOp layout): ``imagenet/images/train/<wnid>/*.JPEG``, ``imagenet/images/val/<wnid>/*``
and optionally ``imagenet/classnames.txt`` (``<wnid> <class name>`` per line).

Choices, following CoOp's ``datasets/imagenet.py``:

- Labels are indices into the sorted list of wnid folders of ``images/train``; ``images/val``
  must hold the same folders.
- The official val set (``images/val``) is the **test** set, as in CoOp.
- There is no separate val split. CoOp's ``datasets/imagenet.py`` passes the test set as ``val``
  too but samples only train (``generate_fewshot_dataset(train)``); CoOp itself never selects
  anything on val (last-epoch model). CoOp's ``lpclip`` is the one that draws its few-shot val
  subset from those test images, and so searches the linear probe's C on test. bench never lets
  a method select on test images: ImageNet's ``val`` list is the **train** list
  (``val_from_train=True``), and the samplers (``datasets_registry/fewshot.py``) draw the few-shot
  val subset (min(K, 4) per class) from the train images outside that cell's few-shot train
  subset. The train subsets are unchanged by this (they are drawn first, from the same stream).
- Class names come from ``classnames.txt`` when present; otherwise from open_clip's
  ``IMAGENET_CLASSNAMES`` (CLIP's notebook names, the same as CoOp's file) in sorted-wnid order,
  which needs exactly the 1000 standard class folders.
- Within a class, files are taken in sorted name order. (CoOp uses ``os.listdir`` order, which
  depends on the file system, so its exact ImageNet subsets cannot be reproduced anywhere.)

Listing 1.28M files is slow, so the listing is cached in a JSON file (written atomically) and
reused while the modification times of ``images/train``, ``images/val`` and every class folder are
unchanged (adding or removing a file changes its folder's mtime). The cache lives in
``$BENCH_DATA_CACHE`` when set, else ``imagenet/.bench_listing.json``, else (read-only data)
``~/.cache/bench/``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from bench.base.errors import BenchError
from datasets_registry import COOP_TAG, register
from datasets_registry.base import Dataset, DatasetSplits, Expected

DESCRIPTION = "ILSVRC-2012, 1000 classes; official val = test; few-shot val from train"
IMAGES = ("ILSVRC2012 train and val archives from https://image-net.org/ (login needed), extracted "
          "so that images/train and images/val each hold 1000 wnid folders (n01440764, ...)")
CLASSNAMES = ("https://drive.google.com/file/d/1-61f_ol79pViBFDG_IDlUQSwoLcn2XXF "
              "(CoOp DATASETS.md, section ImageNet), or leave it out to use open_clip's names")
VALPREP = ("sort them into wnid folders, e.g. with "
           "https://raw.githubusercontent.com/soumith/imagenetloader.torch/master/valprep.sh "
           "run inside images/val")
LISTING_FORMAT = 1
CACHE_NAME = ".bench_listing.json"


def read_classnames_file(path: Path) -> dict[str, str]:
    """``<wnid> <name with spaces>`` per line -> {wnid: name}."""
    names: dict[str, str] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise BenchError(f"{path} is not a UTF-8 text file; get it from {CLASSNAMES}") from None
    for n, line in enumerate(lines, 1):
        parts = line.strip().split(" ")
        if not parts[0]:
            continue
        if len(parts) < 2:
            raise BenchError(f"line {n} of {path} is {line.strip()!r}; expected "
                             f"'<wnid> <class name>'")
        names[parts[0]] = " ".join(parts[1:])
    return names


def imagenet_classnames(wnids: list[str], classnames_path: Path | None) -> list[str]:
    """Class names for the sorted ``wnids``, from ``classnames.txt`` or open_clip."""
    if classnames_path is not None and classnames_path.is_file():
        table = read_classnames_file(classnames_path)
        missing = [w for w in wnids if w not in table]
        if missing:
            raise BenchError(f"{classnames_path} has no name for {len(missing)} class folder(s), "
                             f"e.g. {', '.join(missing[:3])}; get the complete file from "
                             f"{CLASSNAMES}")
        return [table[w] for w in wnids]
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    if len(wnids) != len(IMAGENET_CLASSNAMES):
        raise BenchError(f"classnames.txt is missing and there are {len(wnids)} class folders, "
                         f"not {len(IMAGENET_CLASSNAMES)}, so open_clip's ImageNet names cannot "
                         f"be matched to them; put classnames.txt in the imagenet folder "
                         f"(get it from {CLASSNAMES})")
    return list(IMAGENET_CLASSNAMES)


def imagenet_class_table(candidates: list[Path]) -> tuple[list[str], list[str], str]:
    """ImageNet's classes in label order (sorted wnids), their names, and where both came from.

    From the first ``classnames.txt`` of ``candidates`` that exists; else the 1000 standard wnids
    (timm's list, a dependency of open_clip) with open_clip's names, in the same order. The
    ImageNet variants use this to find each of their folders' ImageNet label.
    """
    for path in candidates:
        if path.is_file():
            table = read_classnames_file(path)
            if not table:
                raise BenchError(f"{path} lists no classes; get the complete file from "
                                 f"{CLASSNAMES}")
            wnids = sorted(table)
            return wnids, [table[w] for w in wnids], str(path)
    try:
        from timm.data import ImageNetInfo

        wnids = list(ImageNetInfo("imagenet-1k").label_names())
    except Exception:  # noqa: BLE001 - timm missing or changed: the file is the way out
        raise BenchError(f"no classnames.txt found ({', '.join(map(str, candidates))}) and timm's "
                         f"ImageNet wnid list is unavailable; put classnames.txt in one of those "
                         f"folders (get it from {CLASSNAMES})") from None
    return wnids, imagenet_classnames(wnids, None), "timm's wnids with open_clip's names"


def _signature(split_dir: Path) -> dict[str, int]:
    sig = {"": split_dir.stat().st_mtime_ns}
    with os.scandir(split_dir) as it:
        for entry in it:
            if not entry.name.startswith(".") and entry.is_dir():
                sig[entry.name] = entry.stat().st_mtime_ns
    return sig


def list_class_folders(split_dir: Path) -> tuple[dict[str, list[str]], int]:
    """{wnid: sorted file names} and the number of loose files directly in ``split_dir``."""
    classes: dict[str, list[str]] = {}
    loose = 0
    with os.scandir(split_dir) as it:
        entries = [e for e in it if not e.name.startswith(".")]
    for entry in entries:
        if entry.is_dir():
            with os.scandir(entry.path) as it2:
                classes[entry.name] = sorted(e.name for e in it2
                                             if not e.name.startswith(".") and e.is_file())
        else:
            loose += 1
    return classes, loose


def _cache_candidates(root: Path) -> list[Path]:
    key = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:16]
    env = os.environ.get("BENCH_DATA_CACHE")
    if env:
        return [Path(env) / f"imagenet_listing_{key}.json"]
    return [root / CACHE_NAME,
            Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "bench"
            / f"imagenet_listing_{key}.json"]


def list_imagenet(root: Path) -> dict:
    """The listing of ``root/images/{train,val}``, from the cache when it is still valid."""
    dirs = {s: root / "images" / s for s in ("train", "val")}
    signature = {s: _signature(d) for s, d in dirs.items()}
    for path in _cache_candidates(root):
        try:
            cached = json.loads(path.read_text())
            if (cached.get("format") == LISTING_FORMAT and cached.get("signature") == signature):
                return cached
        except (OSError, ValueError, AttributeError):
            continue
    listing = {"format": LISTING_FORMAT, "signature": signature, "files": {}, "loose": {}}
    for s, d in dirs.items():
        listing["files"][s], listing["loose"][s] = list_class_folders(d)
    from results.atomic import atomic_write_json

    for path in _cache_candidates(root):
        try:
            atomic_write_json(path, listing)
            break
        except OSError:
            continue
    return listing


@dataclass
class ImageNetDataset(Dataset):
    def requirements(self) -> list[tuple[str, str]]:
        return [("images/train/", IMAGES), ("images/val/", IMAGES)]

    def load(self, data_root: Path) -> DatasetSplits:
        root = self.existing_root(data_root)
        for s in ("train", "val"):
            if not (root / "images" / s).is_dir():
                raise BenchError(f"dataset {self.display_name}: folder {root / 'images' / s} not "
                                 f"found; get it from {IMAGES}")
        listing = list_imagenet(root)
        files, loose = listing["files"], listing["loose"]
        if loose["val"] and not files["val"]:
            raise BenchError(f"dataset {self.display_name}: {root / 'images/val'} holds "
                             f"{loose['val']} loose files and no class folders; {VALPREP}")
        if loose["val"]:
            raise BenchError(f"dataset {self.display_name}: {root / 'images/val'} holds "
                             f"{loose['val']} loose files next to its class folders; {VALPREP}")
        wnids = sorted(files["train"])
        if not wnids:
            raise BenchError(f"dataset {self.display_name}: {root / 'images/train'} has no class "
                             f"folders; get them from {IMAGES}")
        if set(files["val"]) != set(wnids):
            only_train = sorted(set(wnids) - set(files["val"]))
            only_val = sorted(set(files["val"]) - set(wnids))
            detail = "; ".join(x for x in (
                f"missing in images/val: {', '.join(only_train[:3])}" if only_train else "",
                f"missing in images/train: {', '.join(only_val[:3])}" if only_val else "") if x)
            raise BenchError(f"dataset {self.display_name}: images/train and images/val must hold "
                             f"the same class folders ({detail}); re-extract from {IMAGES}")
        classnames = imagenet_classnames(wnids, root / "classnames.txt")
        items = {s: [(f"{s}/{w}/{f}", label) for label, w in enumerate(wnids)
                     for f in files[s][w]] for s in ("train", "val")}
        # val is the train list itself (no copy): see the module docstring
        return DatasetSplits(self.name, classnames, root / "images", items["train"],
                             items["train"], items["val"], val_from_train=True)

    def check_paths(self, data_root: Path, splits: DatasetSplits) -> list[str]:
        return []  # the lists are the directory listing itself

    def check_notes(self, data_root: Path, splits: DatasetSplits) -> list[str]:
        notes = ["test is the official ILSVRC val, as in CoOp; there is no val split: few-shot "
                 "val subsets come from train images outside the few-shot train subset, so "
                 "nothing is selected on test images (docs/datasets.md)"]
        if not (self.root(data_root) / "classnames.txt").is_file():
            notes.append("classnames.txt not found: using open_clip's IMAGENET_CLASSNAMES "
                         f"(the same names); to pin them, get {CLASSNAMES}")
        return notes


register(
    ImageNetDataset(
        name="imagenet",
        display_name="ImageNet",
        folder="imagenet",
        templates=["a photo of a {}."],
        expected=Expected(classes=1000, train=1281167, val=1281167, test=50000),  # val = train
        description=DESCRIPTION,
        source="CoOp DATASETS.md, section ImageNet",
    ),
    order=1, tags=(COOP_TAG,),
)
