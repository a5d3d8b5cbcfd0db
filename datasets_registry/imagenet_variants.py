"""ImageNet-V2, -Sketch, -A and -R (CoOp layout): the targets of the domain-generalization
protocol (train on ImageNet, evaluate here). Evaluation only: ``test`` holds every image,
``train`` and ``val`` are empty.

Layout (CoOp ``DATASETS.md``; ``classnames.txt`` is a copy of ``imagenet/classnames.txt``)::

    imagenetv2/imagenetv2-matched-frequency-format-val/<ImageNet label 0..999>/*.jpeg
    imagenet-sketch/images/<wnid>/*.JPEG           # 1000 wnid folders
    imagenet-adversarial/imagenet-a/<wnid>/*.jpg   # 200 wnid folders (and a README.txt)
    imagenet-rendition/imagenet-r/<wnid>/*.jpg     # 200 wnid folders (and a README.txt)

Labels follow CoOp's ``datasets/imagenet{v2,_sketch,_a,_r}.py``: V2's folder ``k`` is ImageNet
class ``k``; the others' labels are indices into their sorted wnid folders, so A and R have 200
classes. ``DatasetSplits.source_classes`` maps each class to its ImageNet label by wnid (identity
for V2 and a complete Sketch): a classifier trained on ImageNet is scored over those classes
only, as CoOp restricts it for A and R (bench.evaluate.source_subset_model: the method's
``for_classes`` over those ImageNet classes, or the 1000-way logits' columns). Class names and the wnid -> ImageNet label table come from
the dataset's own ``classnames.txt``, else ``imagenet/classnames.txt``, else the standard 1000
wnids with open_clip's names (``datasets_registry/imagenet.py``). Files within a class are
taken in sorted name order; loose files (README.txt) are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.base.errors import BenchError
from datasets_registry import DOMAIN_TAG, register
from datasets_registry.base import Dataset, DatasetSplits, Expected
from datasets_registry.imagenet import imagenet_class_table, list_class_folders

SOURCE = "imagenet"


@dataclass
class ImageNetVariant(Dataset):
    """An evaluation-only ImageNet test set whose class folders are wnids (or, for V2, labels)."""

    image_subdir: str = ""
    folders_are_labels: bool = False  # V2: folder "k" is ImageNet class k
    image_source: str = ""

    def requirements(self) -> list[tuple[str, str]]:
        return [(self.image_subdir + "/", self.image_source)]

    def _class_table(self, data_root: Path):
        return imagenet_class_table([self.root(data_root) / "classnames.txt",
                                     Path(data_root) / SOURCE / "classnames.txt"])

    def load(self, data_root: Path) -> DatasetSplits:
        root = self.existing_root(data_root)
        image_dir = root / self.image_subdir
        if not image_dir.is_dir():
            raise BenchError(f"dataset {self.display_name}: folder {image_dir} not found; get it "
                             f"from {self.image_source}")
        files, _ = list_class_folders(image_dir)
        if not files:
            raise BenchError(f"dataset {self.display_name}: {image_dir} has no class folders; "
                             f"get them from {self.image_source}")
        wnids, names, origin = self._class_table(data_root)
        folders, source_classes = self._source_labels(sorted(files), wnids, image_dir, origin)
        test = [(f"{folder}/{f}", label) for label, folder in enumerate(folders)
                for f in files[folder]]
        return DatasetSplits(self.name, [names[s] for s in source_classes], image_dir, [], [],
                             test, source=SOURCE, source_classes=source_classes)

    def _source_labels(self, folders: list[str], wnids: list[str], image_dir: Path,
                       origin: str) -> tuple[list[str], list[int]]:
        """The class folders in label order and the ImageNet label of each."""
        if self.folders_are_labels:
            bad = [f for f in folders if not (f.isdigit() and int(f) < len(wnids))]
            if bad:
                raise BenchError(f"dataset {self.display_name}: class folder(s) "
                                 f"{', '.join(bad[:3])} in {image_dir} are not ImageNet labels "
                                 f"0..{len(wnids) - 1}; re-extract from {self.image_source}")
            folders = sorted(folders, key=int)
            return folders, [int(f) for f in folders]
        label_of = {w: i for i, w in enumerate(wnids)}
        bad = [f for f in folders if f not in label_of]
        if bad:
            raise BenchError(f"dataset {self.display_name}: class folder(s) {', '.join(bad[:3])} "
                             f"in {image_dir} are not ImageNet classes of {origin}; the folders "
                             f"must be wnids (n01440764, ...): re-extract from {self.image_source}")
        return folders, [label_of[f] for f in folders]

    def check_paths(self, data_root: Path, splits: DatasetSplits) -> list[str]:
        return []  # the list is the directory listing itself

    def check_notes(self, data_root: Path, splits: DatasetSplits) -> list[str]:
        _, _, origin = self._class_table(data_root)
        return [f"evaluation only (domain generalization: train on ImageNet, test here); "
                f"{len(splits.classnames)} classes mapped to ImageNet labels by wnid; class "
                f"names from {origin}"]


def _variant(name, display_name, folder, image_subdir, classes, test, image_source, order,
             folders_are_labels=False, description=""):
    register(
        ImageNetVariant(
            name=name, display_name=display_name, folder=folder, image_subdir=image_subdir,
            folders_are_labels=folders_are_labels, templates=["a photo of a {}."],  # CoOp zsclip
            expected=Expected(classes=classes, train=0, val=0, test=test),
            description=description, image_source=image_source,
            source=f"CoOp DATASETS.md, section {display_name}",
        ),
        order=order, tags=(DOMAIN_TAG,),
    )


_variant("imagenet_v2", "ImageNetV2", "imagenetv2", "imagenetv2-matched-frequency-format-val",
         1000, 10000, order=21, folders_are_labels=True,
         description="ImageNetV2 matched-frequency, 1000 classes; evaluation only",
         image_source="imagenetv2-matched-frequency.tar.gz from https://s3-us-west-2.amazonaws.com/"
                      "imagenetv2public/imagenetv2-matched-frequency.tar.gz "
                      "(https://github.com/modestyachts/ImageNetV2), extracted into imagenetv2/")
_variant("imagenet_sketch", "ImageNet-Sketch", "imagenet-sketch", "images", 1000, 50889,
         order=22, description="sketches of the 1000 ImageNet classes; evaluation only",
         image_source="https://github.com/HaohanWang/ImageNet-Sketch, extracted into "
                      "imagenet-sketch/ so that images/ holds the 1000 wnid folders")
_variant("imagenet_a", "ImageNet-A", "imagenet-adversarial", "imagenet-a", 200, 7500, order=23,
         description="natural adversarial examples, 200 ImageNet classes; evaluation only",
         image_source="imagenet-a.tar from https://github.com/hendrycks/natural-adv-examples, "
                      "extracted into imagenet-adversarial/ (it creates imagenet-a/)")
_variant("imagenet_r", "ImageNet-R", "imagenet-rendition", "imagenet-r", 200, 30000, order=24,
         description="renditions (art, cartoons, ...) of 200 ImageNet classes; evaluation only",
         image_source="imagenet-r.tar from https://github.com/hendrycks/imagenet-r, extracted "
                      "into imagenet-rendition/ (it creates imagenet-r/)")
