"""DTD (CoOp layout): `dtd/images/<texture>/<texture>_<n>.jpg` plus
`split_zhou_DescribableTextures.json`.
"""

from datasets_registry import COOP_TAG, register
from datasets_registry.base import Expected
from datasets_registry.split_file import SplitFileDataset

DESCRIPTION = "47 describable textures"

register(
    SplitFileDataset(
        name="dtd",
        display_name="DTD",
        folder="dtd",
        image_subdir="images",
        split_file="split_zhou_DescribableTextures.json",
        templates=["{} texture."],
        expected=Expected(classes=47, train=2820, val=1128, test=1692),
        description=DESCRIPTION,
        image_source="https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz, "
                     "extracted into the data root (it creates dtd/)",
        split_source="https://drive.google.com/file/d/1u3_QfB467jqHgNXC00UIzbLZRQCg2S7x (CoOp DATASETS.md, section DTD)",
        source="CoOp DATASETS.md, section DTD",
    ),
    order=9, tags=(COOP_TAG,),
)
