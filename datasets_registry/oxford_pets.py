"""OxfordPets (CoOp layout): `oxford_pets/images/<Breed>_<n>.jpg`, `annotations/` and
`split_zhou_OxfordPets.json`.

Class names are the lower-cased breed part of the file name (`Abyssinian_100` -> `abyssinian`,
`american_bulldog_1` -> `american_bulldog`); prompts show `_` as a space.
"""

from datasets_registry import COOP_TAG, register
from datasets_registry.base import Expected
from datasets_registry.split_file import SplitFileDataset

DESCRIPTION = "37 cat and dog breeds"

register(
    SplitFileDataset(
        name="oxford_pets",
        display_name="OxfordPets",
        folder="oxford_pets",
        image_subdir="images",
        split_file="split_zhou_OxfordPets.json",
        templates=["a photo of a {}, a type of pet."],
        expected=Expected(classes=37, train=2944, val=736, test=3669),
        description=DESCRIPTION,
        image_source="https://www.robots.ox.ac.uk/~vgg/data/pets/data/images.tar.gz, extracted "
                     "into oxford_pets/ (annotations: .../pets/data/annotations.tar.gz)",
        split_source="https://drive.google.com/file/d/1501r8Ber4nNKvmlFVQZ8SeUHTcdTTEqs (CoOp DATASETS.md, section OxfordPets)",
        source="CoOp DATASETS.md, section OxfordPets",
    ),
    order=3, tags=(COOP_TAG,),
)
