"""StanfordCars (CoOp layout): `stanford_cars/cars_train/<n>.jpg`, `cars_test/<n>.jpg`, `devkit/`,
`cars_test_annos_withlabels.mat` and `split_zhou_StanfordCars.json`.

Paths in the split file are relative to the dataset folder itself
(`["cars_train/05266.jpg", 13, "2012 Audi TTS Coupe"]`).
"""

from datasets_registry import COOP_TAG, register
from datasets_registry.base import Expected
from datasets_registry.split_file import SplitFileDataset

DESCRIPTION = "196 car models (make, model, year)"
IMAGES = ("cars_train.tgz and cars_test.tgz from http://ai.stanford.edu/~jkrause/car196/ "
          "(often offline; mirrors of the Stanford Cars dataset exist, e.g. on Kaggle), extracted "
          "into stanford_cars/")


class StanfordCarsDataset(SplitFileDataset):
    def requirements(self) -> list[tuple[str, str]]:
        return [("cars_train/", IMAGES), ("cars_test/", IMAGES),
                (self.split_file, self.split_source)]


register(
    StanfordCarsDataset(
        name="stanford_cars",
        display_name="StanfordCars",
        folder="stanford_cars",
        image_subdir="",
        split_file="split_zhou_StanfordCars.json",
        templates=["a photo of a {}."],
        expected=Expected(classes=196, train=6509, val=1635, test=8041),
        description=DESCRIPTION,
        image_source=IMAGES,
        split_source="https://drive.google.com/file/d/1ObCFbaAgVu0I-k_Au-gIUcefirdAuizT (CoOp DATASETS.md, section StanfordCars)",
        source="CoOp DATASETS.md, section StanfordCars",
    ),
    order=4, tags=(COOP_TAG,),
)
