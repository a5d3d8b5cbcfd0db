"""SUN397 (CoOp layout): `sun397/SUN397/<letter>/<category>[/<sub>]/sun_<id>.jpg` plus
`split_zhou_SUN397.json` (and the Partitions .txt files).

CoOp names a class by its folder path without the letter, words reversed
(`s/shopping_mall/indoor` -> `indoor shopping_mall`); the split file already carries them.
"""

from datasets_registry import COOP_TAG, register
from datasets_registry.base import Expected
from datasets_registry.split_file import SplitFileDataset

DESCRIPTION = "397 scene categories"

register(
    SplitFileDataset(
        name="sun397",
        display_name="SUN397",
        folder="sun397",
        image_subdir="SUN397",
        split_file="split_zhou_SUN397.json",
        templates=["a photo of a {}."],
        expected=Expected(classes=397, train=15880, val=3970, test=19850),
        description=DESCRIPTION,
        image_source="http://vision.princeton.edu/projects/2010/SUN/SUN397.tar.gz, extracted into "
                     "sun397/ (partitions: https://vision.princeton.edu/projects/2010/SUN/download/Partitions.zip)",
        split_source="https://drive.google.com/file/d/1y2RD81BYuiyvebdN-JymPfyWYcd8_MUq (CoOp DATASETS.md, section SUN397)",
        source="CoOp DATASETS.md, section SUN397",
    ),
    order=8, tags=(COOP_TAG,),
)
