"""Flowers102 (CoOp layout): `oxford_flowers/jpg/image_<nnnnn>.jpg`, `imagelabels.mat`,
`cat_to_name.json` and `split_zhou_OxfordFlowers.json`.

Class names come from `cat_to_name.json` (`"pink primrose"`, ...), already in the split file.
"""

from datasets_registry import COOP_TAG, register
from datasets_registry.base import Expected
from datasets_registry.split_file import SplitFileDataset

DESCRIPTION = "102 flower species"

register(
    SplitFileDataset(
        name="oxford_flowers",
        display_name="Flowers102",
        folder="oxford_flowers",
        image_subdir="jpg",
        split_file="split_zhou_OxfordFlowers.json",
        templates=["a photo of a {}, a type of flower."],
        expected=Expected(classes=102, train=4093, val=1633, test=2463),
        description=DESCRIPTION,
        image_source="https://www.robots.ox.ac.uk/~vgg/data/flowers/102/102flowers.tgz, extracted "
                     "into oxford_flowers/ (it contains jpg/); labels: .../flowers/102/imagelabels.mat",
        split_source="https://drive.google.com/file/d/1Pp0sRXzZFZq15zVOzKjKBu4A9i01nozT (CoOp DATASETS.md, section Flowers102; "
                     "cat_to_name.json: https://drive.google.com/file/d/1AkcxCXeK_RCGCEC_GvmWxjcjaNhu-at0)",
        source="CoOp DATASETS.md, section Flowers102",
    ),
    order=5, tags=(COOP_TAG,),
)
