from datasets_registry import COOP_TAG, DATASETS
from datasets_registry.base import Expected
from datasets_registry.split_file import SplitFileDataset

DATASETS.add(
    "eurosat",
    SplitFileDataset(
        name="eurosat",
        display_name="EuroSAT",
        folder="eurosat",
        image_subdir="2750",
        split_file="split_zhou_EuroSAT.json",
        templates=["a centered satellite photo of {}."],
        expected=Expected(classes=10, train=13500, val=5400, test=8100),
        description="Sentinel-2 land-use tiles, 10 classes",
        source="images: http://madm.dfki.de/files/sentinel/EuroSAT.zip; split file: CoOp DATASETS.md (split_zhou_EuroSAT.json)",
    ),
    display_name="EuroSAT", description="Sentinel-2 land-use tiles, 10 classes",
    order=10, tags=("coop",),
)
