"""EuroSAT (CoOp layout): `eurosat/2750/<Class>/<Class>_<n>.jpg` plus `split_zhou_EuroSAT.json`.

Class names in CoOp's split file are already expanded (`AnnualCrop` -> `Annual Crop Land`).
"""

from datasets_registry import COOP_TAG, register
from datasets_registry.base import Expected
from datasets_registry.split_file import SplitFileDataset

DESCRIPTION = "Sentinel-2 land-use tiles, 10 classes"
# CoOp's names for the folders (used when creating the split file)
NEW_CNAMES = {
    "AnnualCrop": "Annual Crop Land", "Forest": "Forest",
    "HerbaceousVegetation": "Herbaceous Vegetation Land", "Highway": "Highway or Road",
    "Industrial": "Industrial Buildings", "Pasture": "Pasture Land",
    "PermanentCrop": "Permanent Crop Land", "Residential": "Residential Buildings",
    "River": "River", "SeaLake": "Sea or Lake",
}

register(
    SplitFileDataset(
        name="eurosat",
        display_name="EuroSAT",
        folder="eurosat",
        image_subdir="2750",
        split_file="split_zhou_EuroSAT.json",
        templates=["a centered satellite photo of {}."],
        expected=Expected(classes=10, train=13500, val=5400, test=8100),
        description=DESCRIPTION,
        image_source="EuroSAT.zip from http://madm.dfki.de/files/sentinel/EuroSAT.zip, "
                     "extracted into eurosat/ (it contains 2750/)",
        split_source="https://drive.google.com/file/d/1Ip7yaCWFi0eaOFUGga0lUdVi_DDQth1o "
                     "(CoOp DATASETS.md, section EuroSAT)",
        source="CoOp DATASETS.md, section EuroSAT",
        extra={"new_cnames": NEW_CNAMES},
    ),
    order=10, tags=(COOP_TAG,),
)
