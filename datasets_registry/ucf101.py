"""UCF101 (CoOp layout): `ucf101/UCF-101-midframes/<Action_Name>/v_<Action>_gXX_cYY.jpg` (the
middle frame of each video, prepared by CoOp) plus `split_zhou_UCF101.json`.

Class names split the CamelCase action at capitals with `_` (`ApplyEyeMakeup` ->
`Apply_Eye_Makeup`); prompts show `_` as a space.
"""

from datasets_registry import COOP_TAG, register
from datasets_registry.base import Expected
from datasets_registry.split_file import SplitFileDataset

DESCRIPTION = "101 human actions (middle video frames)"

register(
    SplitFileDataset(
        name="ucf101",
        display_name="UCF101",
        folder="ucf101",
        image_subdir="UCF-101-midframes",
        split_file="split_zhou_UCF101.json",
        templates=["a photo of a person doing {}."],
        expected=Expected(classes=101, train=7639, val=1898, test=3783),
        description=DESCRIPTION,
        image_source="UCF-101-midframes.zip from https://drive.google.com/file/d/10Jqome3vtUA2keJkNanAiFpgbyC9Hc2O "
                     "(CoOp DATASETS.md, section UCF101), extracted into ucf101/",
        split_source="https://drive.google.com/file/d/1I0S0q91hJfsV9Gf4xDIjgDq4AqBNJb1y (CoOp DATASETS.md, section UCF101)",
        source="CoOp DATASETS.md, section UCF101",
    ),
    order=11, tags=(COOP_TAG,),
)
