"""Food101 (CoOp layout): `food-101/images/<class>/<id>.jpg` plus `split_zhou_Food101.json`.

Class names are the folder names (`apple_pie`); prompts show `_` as a space.
"""

from datasets_registry import COOP_TAG, register
from datasets_registry.base import Expected
from datasets_registry.split_file import SplitFileDataset

DESCRIPTION = "101 food dishes"

register(
    SplitFileDataset(
        name="food101",
        display_name="Food101",
        folder="food-101",
        image_subdir="images",
        split_file="split_zhou_Food101.json",
        templates=["a photo of {}, a type of food."],
        expected=Expected(classes=101, train=50500, val=20200, test=30300),
        description=DESCRIPTION,
        image_source="food-101.tar.gz from https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/, "
                     "extracted into the data root (it creates food-101/)",
        split_source="https://drive.google.com/file/d/1QK0tGi096I0Ba6kggatX1ee6dJFIcEJl (CoOp DATASETS.md, section Food101)",
        source="CoOp DATASETS.md, section Food101",
    ),
    order=6, tags=(COOP_TAG,),
)
