"""An external dataset in CoOp's split-file layout, registered from outside the repository.

Data root layout (the same as CoOp's datasets):

    DATA_ROOT/shapes/images/<class folder>/<image>.jpg
    DATA_ROOT/shapes/split_shapes.json   {"train": [[relative_path, label, classname], ...],
                                          "val": [...], "test": [...]}

Use it with `bench run --include examples/plugins --datasets shapes --data-root DATA_ROOT ...`.
"""

from datasets_registry import register
from datasets_registry.base import Expected
from datasets_registry.split_file import SplitFileDataset

register(
    SplitFileDataset(
        name="shapes",
        display_name="Shapes",
        folder="shapes",                       # DATA_ROOT/shapes
        image_subdir="images",                 # split file paths are relative to shapes/images
        split_file="split_shapes.json",
        templates=["a drawing of a {}."],      # the prompt, {} = the class name
        expected=Expected(classes=3, train=11, val=6, test=6),  # checked by `bench data check`
        description="coloured shapes (example plugin dataset)",
        source="examples/plugins/shapes.py",
    ),
    order=100,  # after the built-in datasets in `bench ls datasets` and reports
    tags=(),    # no "coop" tag: `--datasets all` keeps meaning the eleven CoOp datasets
)
