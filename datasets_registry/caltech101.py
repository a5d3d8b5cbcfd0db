"""Caltech101 (CoOp layout): `caltech-101/101_ObjectCategories/<class>/image_<n>.jpg` plus
`split_zhou_Caltech101.json`.

CoOp drops `BACKGROUND_Google` and `Faces_easy` (100 classes remain) and renames
`airplanes`, `Faces`, `Leopards`, `Motorbikes` to `airplane`, `face`, `leopard`,
`motorbike`; its split file already carries those names.
"""

from datasets_registry import COOP_TAG, register
from datasets_registry.base import Expected
from datasets_registry.split_file import SplitFileDataset

DESCRIPTION = "objects in 100 categories (no background class)"
IGNORED = ("BACKGROUND_Google", "Faces_easy")
NEW_CNAMES = {"airplanes": "airplane", "Faces": "face", "Leopards": "leopard",
              "Motorbikes": "motorbike"}

register(
    SplitFileDataset(
        name="caltech101",
        display_name="Caltech101",
        folder="caltech-101",
        image_subdir="101_ObjectCategories",
        split_file="split_zhou_Caltech101.json",
        templates=["a photo of a {}."],
        expected=Expected(classes=100, train=4128, val=1649, test=2465),
        description=DESCRIPTION,
        image_source="101_ObjectCategories.tar.gz, extracted into caltech-101/ (CoOp's link "
                     "http://www.vision.caltech.edu/Image_Datasets/Caltech101/ is dead; the "
                     "archive is inside caltech-101.zip at https://data.caltech.edu/records/mzrjq-6wc02)",
        split_source="https://drive.google.com/file/d/1hyarUivQE36mY6jSomru6Fjd-JzwcCzN (CoOp DATASETS.md, section Caltech101)",
        source="CoOp DATASETS.md, section Caltech101",
        extra={"ignored": IGNORED, "new_cnames": NEW_CNAMES},
    ),
    order=2, tags=(COOP_TAG,),
)
