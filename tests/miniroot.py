"""A complete miniature data root for the eleven CoOp datasets (and the ImageNet variants), for tests.

``make_miniroot(root)`` writes, for every dataset, tiny real JPEG images (8x8) at the real
relative paths and the real list formats (CoOp split files, FGVCAircraft's variant lists,
ImageNet's class folders and ``classnames.txt``, OxfordPets', UCF101's and
SUN397's partition lists), with three classes per dataset: 4, 4 and 3 train images, 2 val and 2 test per class. Rows in the lists
are shuffled (seeded), as in a real split file labels do not appear in order.

``MINI_CLASSNAMES[name]`` gives the cleaned class names by label, ``MINI_COUNTS`` the sizes.
"""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

from PIL import Image

TRAIN_PER_CLASS = (4, 4, 3)
VAL_PER_CLASS = 2
TEST_PER_CLASS = 2
MINI_COUNTS = {"classes": 3, "train": sum(TRAIN_PER_CLASS), "val": 3 * VAL_PER_CLASS,
               "test": 3 * TEST_PER_CLASS}

# name -> (dataset folder, image subfolder, split file, [(class folder or key, clean name)])
SPLIT_DATASETS = {
    "caltech101": ("caltech-101", "101_ObjectCategories", "split_zhou_Caltech101.json",
                   [("Faces", "face"), ("airplanes", "airplane"), ("accordion", "accordion")]),
    "oxford_pets": ("oxford_pets", "images", "split_zhou_OxfordPets.json",
                    [("Abyssinian", "abyssinian"), ("american_bulldog", "american_bulldog"),
                     ("Bengal", "bengal")]),
    "stanford_cars": ("stanford_cars", "", "split_zhou_StanfordCars.json",
                      [("", "2012 Audi TTS Coupe"), ("", "2012 BMW M3 coupe"),
                       ("", "AM General Hummer SUV 2000")]),
    "oxford_flowers": ("oxford_flowers", "jpg", "split_zhou_OxfordFlowers.json",
                       [("", "pink primrose"), ("", "hard-leaved pocket orchid"),
                        ("", "canterbury bells")]),
    "food101": ("food-101", "images", "split_zhou_Food101.json",
                [("apple_pie", "apple_pie"), ("baby_back_ribs", "baby_back_ribs"),
                 ("baklava", "baklava")]),
    "sun397": ("sun397", "SUN397", "split_zhou_SUN397.json",
               [("a/abbey", "abbey"), ("a/airplane_cabin", "airplane_cabin"),
                ("s/shopping_mall/indoor", "indoor shopping_mall")]),
    "dtd": ("dtd", "images", "split_zhou_DescribableTextures.json",
            [("banded", "banded"), ("blotchy", "blotchy"), ("braided", "braided")]),
    "eurosat": ("eurosat", "2750", "split_zhou_EuroSAT.json",
                [("AnnualCrop", "Annual Crop Land"), ("Forest", "Forest"),
                 ("HerbaceousVegetation", "Herbaceous Vegetation Land")]),
    "ucf101": ("ucf101", "UCF-101-midframes", "split_zhou_UCF101.json",
               [("Apply_Eye_Makeup", "Apply_Eye_Makeup"), ("Apply_Lipstick", "Apply_Lipstick"),
                ("Archery", "Archery")]),
}
FGVC_VARIANTS = ["707-320", "Cessna 172", "A300B4"]
IMAGENET = [("n01440764", "tench"), ("n01443537", "goldfish"),
            ("n01484850", "great white shark")]

# The ImageNet variants (evaluation only): name -> (folder, image subfolder, the mini ImageNet
# labels it holds). V2's class folders are the labels, the others' the wnids; A and R hold a
# subset, as the real ones hold 200 of the 1000 classes.
IMAGENET_VARIANTS = {
    "imagenet_v2": ("imagenetv2", "imagenetv2-matched-frequency-format-val", [0, 1, 2]),
    "imagenet_sketch": ("imagenet-sketch", "images", [0, 1, 2]),
    "imagenet_a": ("imagenet-adversarial", "imagenet-a", [0, 2]),
    "imagenet_r": ("imagenet-rendition", "imagenet-r", [1, 2]),
}
VARIANT_TEST_PER_CLASS = 2

MINI_CLASSNAMES = {name: [c for _, c in spec[3]] for name, spec in SPLIT_DATASETS.items()}
MINI_CLASSNAMES["fgvc_aircraft"] = list(FGVC_VARIANTS)
MINI_CLASSNAMES["imagenet"] = [n for _, n in IMAGENET]
# Kept apart from MINI_CLASSNAMES: these have no train split, and tests that load every entry of
# MINI_CLASSNAMES expect one.
MINI_VARIANT_CLASSNAMES = {name: [IMAGENET[i][1] for i in spec[2]]
                           for name, spec in IMAGENET_VARIANTS.items()}

_COLORS = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]


def _jpeg(label: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), _COLORS[label % 3]).save(buf, format="JPEG")
    return buf.getvalue()


def _counts(split: str, label: int) -> int:
    return {"train": TRAIN_PER_CLASS[label], "val": VAL_PER_CLASS, "test": TEST_PER_CLASS}[split]


def _rel_path(name: str, folder: str, label: int, split: str, n: int, serial: int) -> str:
    """The real-looking relative path of image ``n`` of class ``label`` in ``split``."""
    if name == "caltech101":
        return f"{folder}/image_{serial:04d}.jpg"
    if name == "oxford_pets":
        return f"{folder}_{serial}.jpg"
    if name == "stanford_cars":
        return f"{'cars_test' if split == 'test' else 'cars_train'}/{serial:05d}.jpg"
    if name == "oxford_flowers":
        return f"image_{serial:05d}.jpg"
    if name == "food101":
        return f"{folder}/{100000 + serial}.jpg"
    if name == "sun397":
        return f"{folder}/sun_{'abcdefgh'[label]}{serial:05d}.jpg"
    if name == "dtd":
        return f"{folder}/{folder}_{serial:04d}.jpg"
    if name == "eurosat":
        return f"{folder}/{folder}_{serial}.jpg"
    if name == "ucf101":
        action = folder.replace("_", "")
        return f"{folder}/v_{action}_g{serial:02d}_c01.jpg"
    raise KeyError(name)


def _write_split_dataset(root: Path, name: str, rng: random.Random) -> None:
    folder, image_subdir, split_file, classes = SPLIT_DATASETS[name]
    ds_dir = root / folder
    image_dir = ds_dir / image_subdir if image_subdir else ds_dir
    rows: dict[str, list] = {"train": [], "val": [], "test": []}
    serial = 1
    for label, (cfolder, cname) in enumerate(classes):
        data = _jpeg(label)
        for split in rows:
            for n in range(_counts(split, label)):
                rel = _rel_path(name, cfolder, label, split, n, serial)
                serial += 1
                path = image_dir / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                rows[split].append([rel, label, cname])
    for split in rows:
        rng.shuffle(rows[split])
    (ds_dir / split_file).write_text(json.dumps(rows, indent=1))
    if name == "oxford_pets":  # annotations/{trainval,test}.txt: "<name> <class 1..> <species> <id>"
        ann = ds_dir / "annotations"
        ann.mkdir(exist_ok=True)
        label_of = {c: i for i, (_, c) in enumerate(classes)}
        for fname, splits in (("trainval.txt", ("train", "val")), ("test.txt", ("test",))):
            lines = [f"{rel[:-4]} {label_of[c] + 1} {1 if rel[0].isupper() else 2} 1"
                     for s in splits for rel, _, c in rows[s]]
            (ann / fname).write_text("\n".join(lines) + "\n")
    if name == "sun397":  # ClassName.txt, Training_01.txt, Testing_01.txt (paths start with /)
        (ds_dir / "ClassName.txt").write_text("".join(f"/{f}\n" for f, _ in classes))
        for fname, splits in (("Training_01.txt", ("train", "val")), ("Testing_01.txt", ("test",))):
            (ds_dir / fname).write_text("".join(f"/{rel}\n" for s in splits
                                                for rel, _, _ in rows[s]))
    if name == "ucf101":  # ucfTrainTestlist/{classInd,trainlist01,testlist01}.txt
        lists = ds_dir / "ucfTrainTestlist"
        lists.mkdir(exist_ok=True)
        actions = [f.replace("_", "") for f, _ in classes]
        (lists / "classInd.txt").write_text("".join(f"{i + 1} {a}\n" for i, a in enumerate(actions)))
        for fname, splits in (("trainlist01.txt", ("train", "val")), ("testlist01.txt", ("test",))):
            lines = []
            for s in splits:
                for rel, label, _ in rows[s]:
                    video = rel.split("/")[1].replace(".jpg", ".avi")
                    lines.append(f"{actions[label]}/{video}" + (f" {label + 1}" if s != "test" else ""))
            (lists / fname).write_text("\n".join(lines) + "\n")


def _write_fgvc(root: Path, rng: random.Random) -> None:
    ds_dir = root / "fgvc_aircraft"
    (ds_dir / "images").mkdir(parents=True, exist_ok=True)
    (ds_dir / "variants.txt").write_text("".join(f"{v}\n" for v in FGVC_VARIANTS))
    serial = 1000001
    lines: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for label, variant in enumerate(FGVC_VARIANTS):
        data = _jpeg(label)
        for split in lines:
            for _ in range(_counts(split, label)):
                (ds_dir / "images" / f"{serial:07d}.jpg").write_bytes(data)
                lines[split].append(f"{serial:07d} {variant}")
                serial += 1
    for split, rows in lines.items():
        rng.shuffle(rows)
        (ds_dir / f"images_variant_{split}.txt").write_text("\n".join(rows) + "\n")


def _write_imagenet(root: Path) -> None:
    ds_dir = root / "imagenet"
    val_serial = 1
    for label, (wnid, _) in enumerate(IMAGENET):
        data = _jpeg(label)
        train_dir = ds_dir / "images" / "train" / wnid
        train_dir.mkdir(parents=True, exist_ok=True)
        for n in range(TRAIN_PER_CLASS[label]):
            (train_dir / f"{wnid}_{1000 + n}.JPEG").write_bytes(data)
        val_dir = ds_dir / "images" / "val" / wnid
        val_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(VAL_PER_CLASS):
            (val_dir / f"ILSVRC2012_val_{val_serial:08d}.JPEG").write_bytes(data)
            val_serial += 1
    (ds_dir / "classnames.txt").write_text("".join(f"{w} {n}\n" for w, n in IMAGENET))


def _write_imagenet_variants(root: Path) -> None:
    """CoOp's layout, ``classnames.txt`` copied from imagenet/; A and R get the README.txt
    their archives have next to the class folders."""
    for name, (folder, image_subdir, labels) in IMAGENET_VARIANTS.items():
        ds_dir = root / folder
        for label in labels:
            wnid = IMAGENET[label][0]
            cdir = ds_dir / image_subdir / (str(label) if name == "imagenet_v2" else wnid)
            cdir.mkdir(parents=True, exist_ok=True)
            for n in range(VARIANT_TEST_PER_CLASS):
                (cdir / f"{name}_{wnid}_{n}.jpg").write_bytes(_jpeg(label))
        if name in ("imagenet_a", "imagenet_r"):
            (ds_dir / image_subdir / "README.txt").write_text("class folders are wnids\n")
        (ds_dir / "classnames.txt").write_text("".join(f"{w} {n}\n" for w, n in IMAGENET))


def make_miniroot(root: Path, seed: int = 0) -> Path:
    """Write the miniature data root for the eleven datasets and the four ImageNet variants
    under ``root``; returns ``root``.

    ImageNet's val (= test) has ``VAL_PER_CLASS`` images per class, so its val and test counts
    are both ``MINI_COUNTS["val"]``.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    for name in SPLIT_DATASETS:
        _write_split_dataset(root, name, rng)
    _write_fgvc(root, rng)
    _write_imagenet(root)
    _write_imagenet_variants(root)
    return root
