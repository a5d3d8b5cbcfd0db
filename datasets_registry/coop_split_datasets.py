"""The nine CoOp datasets described by a split file (``split_zhou_*.json``), one table row each.

Layouts under the data root (``<folder>/<image dir>/<path in the split file>``)::

    caltech-101/101_ObjectCategories/<class>/image_<n>.jpg      split_zhou_Caltech101.json
    oxford_pets/images/<Breed>_<n>.jpg, annotations/            split_zhou_OxfordPets.json
    stanford_cars/cars_train/<n>.jpg, cars_test/<n>.jpg         split_zhou_StanfordCars.json
    oxford_flowers/jpg/image_<nnnnn>.jpg, cat_to_name.json      split_zhou_OxfordFlowers.json
    food-101/images/<class>/<id>.jpg                            split_zhou_Food101.json
    sun397/SUN397/<letter>/<category>[/<sub>]/sun_<id>.jpg      split_zhou_SUN397.json
    dtd/images/<texture>/<texture>_<n>.jpg                      split_zhou_DescribableTextures.json
    eurosat/2750/<Class>/<Class>_<n>.jpg                        split_zhou_EuroSAT.json
    ucf101/UCF-101-midframes/<Action_Name>/v_<Action>_gXX_cYY.jpg  split_zhou_UCF101.json

Class names are the split files' (CoOp cleaned them): Caltech101 drops ``BACKGROUND_Google`` and
``Faces_easy`` and renames ``airplanes``/``Faces``/``Leopards``/``Motorbikes``; Pets lower-cases
the breed; SUN397 names ``s/shopping_mall/indoor`` ``indoor shopping_mall``; UCF101 splits
CamelCase with ``_``; EuroSAT expands ``AnnualCrop`` to ``Annual Crop Land``. StanfordCars' paths
are relative to its folder itself. The ``extra`` renames are what ``make_split`` uses to create a
missing file; ``split_maker`` says which of CoOp's rules creates it (None: download only).
"""

from __future__ import annotations

from datasets_registry import COOP_TAG, register
from datasets_registry.base import Expected
from datasets_registry.make_split import class_folders, pets_lists, sun_lists, ucf_lists
from datasets_registry.split_file import SplitFileDataset

CALTECH_IGNORED = ("BACKGROUND_Google", "Faces_easy")
CALTECH_NEW_CNAMES = {"airplanes": "airplane", "Faces": "face", "Leopards": "leopard",
                      "Motorbikes": "motorbike"}
EUROSAT_NEW_CNAMES = {
    "AnnualCrop": "Annual Crop Land", "Forest": "Forest",
    "HerbaceousVegetation": "Herbaceous Vegetation Land", "Highway": "Highway or Road",
    "Industrial": "Industrial Buildings", "Pasture": "Pasture Land",
    "PermanentCrop": "Permanent Crop Land", "Residential": "Residential Buildings",
    "River": "River", "SeaLake": "Sea or Lake",
}


def _row(order, name, display_name, folder, image_subdir, split_file, template, sizes,
         description, image_source, split_drive_id, split_note="", **more):
    """Register one dataset; its split file's source is CoOp's Google-drive link."""
    section = f"CoOp DATASETS.md, section {display_name}"
    register(
        SplitFileDataset(
            name=name, display_name=display_name, folder=folder, image_subdir=image_subdir,
            split_file=split_file, templates=[template], expected=Expected(*sizes),
            description=description, image_source=image_source,
            split_source=f"https://drive.google.com/file/d/{split_drive_id} ({section}{split_note})",
            source=section, **more),
        order=order, tags=(COOP_TAG,))


#    order, name, display name, folder, image dir, split file, template (CoOp CUSTOM_TEMPLATES),
#    (classes, train, val, test), description, image source, split file's drive id, ...
_row(2, "caltech101", "Caltech101", "caltech-101", "101_ObjectCategories",
     "split_zhou_Caltech101.json", "a photo of a {}.", (100, 4128, 1649, 2465),
     "objects in 100 categories (no background class)",
     "101_ObjectCategories.tar.gz, extracted into caltech-101/ (CoOp's link "
     "http://www.vision.caltech.edu/Image_Datasets/Caltech101/ is dead; the "
     "archive is inside caltech-101.zip at https://data.caltech.edu/records/mzrjq-6wc02)",
     "1hyarUivQE36mY6jSomru6Fjd-JzwcCzN", split_maker=class_folders,
     extra={"ignored": CALTECH_IGNORED, "new_cnames": CALTECH_NEW_CNAMES})
_row(3, "oxford_pets", "OxfordPets", "oxford_pets", "images", "split_zhou_OxfordPets.json",
     "a photo of a {}, a type of pet.", (37, 2944, 736, 3669), "37 cat and dog breeds",
     "https://www.robots.ox.ac.uk/~vgg/data/pets/data/images.tar.gz, extracted "
     "into oxford_pets/ (annotations: .../pets/data/annotations.tar.gz)",
     "1501r8Ber4nNKvmlFVQZ8SeUHTcdTTEqs", split_maker=pets_lists)
_row(4, "stanford_cars", "StanfordCars", "stanford_cars", "", "split_zhou_StanfordCars.json",
     "a photo of a {}.", (196, 6509, 1635, 8041), "196 car models (make, model, year)",
     "cars_train.tgz and cars_test.tgz from http://ai.stanford.edu/~jkrause/car196/ "
     "(often offline; mirrors of the Stanford Cars dataset exist, e.g. on Kaggle), extracted "
     "into stanford_cars/",
     "1ObCFbaAgVu0I-k_Au-gIUcefirdAuizT", image_folders=("cars_train", "cars_test"))
_row(5, "oxford_flowers", "Flowers102", "oxford_flowers", "jpg", "split_zhou_OxfordFlowers.json",
     "a photo of a {}, a type of flower.", (102, 4093, 1633, 2463), "102 flower species",
     "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/102flowers.tgz, extracted "
     "into oxford_flowers/ (it contains jpg/); labels: .../flowers/102/imagelabels.mat",
     "1Pp0sRXzZFZq15zVOzKjKBu4A9i01nozT",
     split_note="; cat_to_name.json: https://drive.google.com/file/d/1AkcxCXeK_RCGCEC_GvmWxjcjaNhu-at0")
_row(6, "food101", "Food101", "food-101", "images", "split_zhou_Food101.json",
     "a photo of {}, a type of food.", (101, 50500, 20200, 30300), "101 food dishes",
     "food-101.tar.gz from https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/, "
     "extracted into the data root (it creates food-101/)",
     "1QK0tGi096I0Ba6kggatX1ee6dJFIcEJl", split_maker=class_folders)
_row(8, "sun397", "SUN397", "sun397", "SUN397", "split_zhou_SUN397.json", "a photo of a {}.",
     (397, 15880, 3970, 19850), "397 scene categories",
     "http://vision.princeton.edu/projects/2010/SUN/SUN397.tar.gz, extracted into "
     "sun397/ (partitions: https://vision.princeton.edu/projects/2010/SUN/download/Partitions.zip)",
     "1y2RD81BYuiyvebdN-JymPfyWYcd8_MUq", split_maker=sun_lists)
_row(9, "dtd", "DTD", "dtd", "images", "split_zhou_DescribableTextures.json", "{} texture.",
     (47, 2820, 1128, 1692), "47 describable textures",
     "https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz, "
     "extracted into the data root (it creates dtd/)",
     "1u3_QfB467jqHgNXC00UIzbLZRQCg2S7x", split_maker=class_folders)
_row(10, "eurosat", "EuroSAT", "eurosat", "2750", "split_zhou_EuroSAT.json",
     "a centered satellite photo of {}.", (10, 13500, 5400, 8100),
     "Sentinel-2 land-use tiles, 10 classes",
     "EuroSAT.zip from http://madm.dfki.de/files/sentinel/EuroSAT.zip, "
     "extracted into eurosat/ (it contains 2750/)",
     "1Ip7yaCWFi0eaOFUGga0lUdVi_DDQth1o", split_maker=class_folders,
     extra={"new_cnames": EUROSAT_NEW_CNAMES})
_row(11, "ucf101", "UCF101", "ucf101", "UCF-101-midframes", "split_zhou_UCF101.json",
     "a photo of a person doing {}.", (101, 7639, 1898, 3783),
     "101 human actions (middle video frames)",
     "UCF-101-midframes.zip from https://drive.google.com/file/d/10Jqome3vtUA2keJkNanAiFpgbyC9Hc2O "
     "(CoOp DATASETS.md, section UCF101), extracted into ucf101/",
     "1I0S0q91hJfsV9Gf4xDIjgDq4AqBNJb1y", split_maker=ucf_lists)
