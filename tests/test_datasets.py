"""The eleven CoOp datasets load from the miniature root; split files, ImageNet, sampler."""

from __future__ import annotations

import os
import random
from collections import Counter
from pathlib import Path

import pytest

from bench.base.errors import BenchError, UsageError
from datasets_registry import COOP_TAG, DATASETS
from datasets_registry.fewshot import sample_fewshot
from datasets_registry.split_file import read_split_file

try:
    from tests.miniroot import MINI_CLASSNAMES, MINI_COUNTS, TRAIN_PER_CLASS, make_miniroot
except ImportError:  # tests/ is on sys.path (pytest's rootdir-less import mode)
    from miniroot import MINI_CLASSNAMES, MINI_COUNTS, TRAIN_PER_CLASS, make_miniroot

CANONICAL = ["imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers",
             "food101", "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101"]
DISPLAY = ["ImageNet", "Caltech101", "OxfordPets", "StanfordCars", "Flowers102", "Food101",
           "FGVCAircraft", "SUN397", "DTD", "EuroSAT", "UCF101"]
TEMPLATES = {  # docs/protocol.md §4 (CoOp CUSTOM_TEMPLATES)
    "oxford_pets": "a photo of a {}, a type of pet.",
    "oxford_flowers": "a photo of a {}, a type of flower.",
    "fgvc_aircraft": "a photo of a {}, a type of aircraft.",
    "dtd": "{} texture.",
    "eurosat": "a centered satellite photo of {}.",
    "stanford_cars": "a photo of a {}.",
    "sun397": "a photo of a {}.",
    "caltech101": "a photo of a {}.",
    "imagenet": "a photo of a {}.",
    "food101": "a photo of {}, a type of food.",
    "ucf101": "a photo of a person doing {}.",
}


@pytest.fixture(scope="module")
def miniroot(tmp_path_factory) -> Path:
    """A complete miniature data root, shared read-only by the tests of this module."""
    return make_miniroot(tmp_path_factory.mktemp("data"))


@pytest.fixture
def fresh_root(tmp_path) -> Path:
    """A miniature data root a test may damage."""
    return make_miniroot(tmp_path / "data")


def test_registry_lists_the_eleven_in_canonical_order():
    entries = DATASETS.entries(COOP_TAG)
    assert [e.name for e in entries] == CANONICAL
    assert [e.display_name for e in entries] == DISPLAY
    assert [e.obj.display_name for e in entries] == DISPLAY


@pytest.mark.parametrize("name", CANONICAL)
def test_template_and_published_sizes(name):
    ds = DATASETS.get(name)
    assert ds.templates == [TEMPLATES[name]]
    assert ds.expected is not None and ds.expected.classes > 0
    assert ds.source


def test_published_sizes_match_protocol_table():
    sizes = {n: (e.classes, e.train, e.val, e.test)
             for n in CANONICAL for e in [DATASETS.get(n).expected]}
    assert sizes["caltech101"] == (100, 4128, 1649, 2465)
    assert sizes["food101"] == (101, 50500, 20200, 30300)
    assert sizes["fgvc_aircraft"] == (100, 3334, 3333, 3333)
    assert sizes["imagenet"] == (1000, 1281167, 1281167, 50000)  # val = the train list
    assert sizes["ucf101"] == (101, 7639, 1898, 3783)


@pytest.mark.parametrize("name", CANONICAL)
def test_every_dataset_loads_from_the_miniature_root(miniroot, name):
    splits = DATASETS.get(name).load(miniroot)
    assert splits.classnames == MINI_CLASSNAMES[name]
    assert len(splits.train) == MINI_COUNTS["train"]
    assert len(splits.val) == (MINI_COUNTS["train"] if name == "imagenet" else MINI_COUNTS["val"])
    expected_test = MINI_COUNTS["val"] if name == "imagenet" else MINI_COUNTS["test"]
    assert len(splits.test) == expected_test
    per_class = Counter(label for _, label in splits.train)
    assert [per_class[i] for i in range(3)] == list(TRAIN_PER_CLASS)
    for items in (splits.train, splits.val, splits.test):
        for rel, label in items:
            assert 0 <= label < 3
            assert not os.path.isabs(rel)
            assert (splits.image_dir / rel).is_file(), rel


def test_classname_cleanups(miniroot):
    prompt = {n: DATASETS.get(n).load(miniroot).prompt_classnames for n in
              ("ucf101", "sun397", "caltech101", "food101", "eurosat", "oxford_pets")}
    assert prompt["ucf101"][0] == "Apply Eye Makeup"
    assert prompt["sun397"][2] == "indoor shopping mall"
    assert prompt["caltech101"][:2] == ["face", "airplane"]
    assert prompt["food101"][0] == "apple pie"
    assert prompt["eurosat"][0] == "Annual Crop Land"
    assert prompt["oxford_pets"][1] == "american bulldog"


def test_stanford_cars_paths_are_relative_to_the_dataset_folder(miniroot):
    splits = DATASETS.get("stanford_cars").load(miniroot)
    assert splits.image_dir == miniroot / "stanford_cars"
    assert {rel.split("/")[0] for rel, _ in splits.train} == {"cars_train"}
    assert {rel.split("/")[0] for rel, _ in splits.test} == {"cars_test"}


def test_fgvc_labels_follow_variants_txt_and_names_keep_spaces(miniroot):
    splits = DATASETS.get("fgvc_aircraft").load(miniroot)
    lines = (miniroot / "fgvc_aircraft/images_variant_train.txt").read_text().splitlines()
    imageid, variant = lines[0].split(" ", 1)
    assert (f"{imageid}.jpg", splits.classnames.index(variant)) == splits.train[0]
    assert splits.classnames[1] == "Cessna 172"


def test_fgvc_unknown_variant_is_a_clear_error(fresh_root):
    path = fresh_root / "fgvc_aircraft/images_variant_val.txt"
    path.write_text(path.read_text() + "1234567 Boeing 999\n")
    with pytest.raises(BenchError, match="'Boeing 999', which is not in .*variants.txt"):
        DATASETS.get("fgvc_aircraft").load(fresh_root)


def test_imagenet_labels_by_sorted_wnid_test_is_official_val_val_is_train(miniroot):
    splits = DATASETS.get("imagenet").load(miniroot)
    assert splits.val_from_train and splits.val == splits.train
    assert splits.image_dir == miniroot / "imagenet/images"
    wnids = sorted(p.name for p in (miniroot / "imagenet/images/train").iterdir())
    for rel, label in splits.train + splits.test:
        split, wnid, _ = rel.split("/")
        assert split in ("train", "val") and wnids.index(wnid) == label
    assert {r.split("/")[0] for r, _ in splits.train} == {"train"}
    assert {r.split("/")[0] for r, _ in splits.test} == {"val"}


@pytest.mark.parametrize("sampler", ["dassl", "lpclip"])
def test_imagenet_fewshot_val_never_uses_test_images(miniroot, sampler):
    """CoOp's lpclip drew ImageNet's val subset from the test images (its C search saw test);
    bench draws it from train images outside the few-shot train subset."""
    from datasets_registry.fewshot import SAMPLERS

    splits = DATASETS.get("imagenet").load(miniroot)
    test = set(splits.test)
    for shots, seed in ((1, 1), (2, 2), (1, 3)):
        sub = SAMPLERS[sampler](splits.train, splits.val, shots, seed)
        assert sub.val and not set(sub.val) & test
        assert not set(sub.val) & set(sub.train)
        assert all(rel.startswith("train/") for rel, _ in sub.train + sub.val)


def test_imagenet_listing_is_cached_and_invalidated(fresh_root, monkeypatch):
    import datasets_registry.imagenet as inet

    ds = DATASETS.get("imagenet")
    first = ds.load(fresh_root)
    assert (fresh_root / "imagenet" / inet.CACHE_NAME).is_file()

    def no_listing(*a, **k):
        raise AssertionError("listed the folders although the cache is valid")

    monkeypatch.setattr(inet, "list_class_folders", no_listing)
    assert ds.load(fresh_root).train == first.train  # served from the cache
    monkeypatch.undo()
    new = fresh_root / "imagenet/images/train/n01443537/n01443537_9999.JPEG"
    new.write_bytes(b"x")
    os.utime(new.parent, ns=(1, 1))  # a different mtime, whatever the clock resolution
    again = ds.load(fresh_root)
    assert ("train/n01443537/n01443537_9999.JPEG", 1) in again.train
    assert len(again.train) == len(first.train) + 1


def test_imagenet_unsorted_val_is_explained(fresh_root):
    val = fresh_root / "imagenet/images/val"
    for folder in list(val.iterdir()):
        for f in folder.iterdir():
            f.rename(val / f.name)
        folder.rmdir()
    with pytest.raises(BenchError, match="loose files and no class folders.*valprep"):
        DATASETS.get("imagenet").load(fresh_root)


def test_imagenet_classnames_fallback_to_open_clip(tmp_path):
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    from datasets_registry.imagenet import imagenet_classnames

    wnids = [f"n{i:08d}" for i in range(1000)]
    assert imagenet_classnames(wnids, tmp_path / "classnames.txt") == list(IMAGENET_CLASSNAMES)
    with pytest.raises(BenchError, match="classnames.txt is missing and there are 3 class"):
        imagenet_classnames(wnids[:3], tmp_path / "classnames.txt")
    (tmp_path / "classnames.txt").write_text("n00000000 tench\nn00000001 gold fish\n")
    assert imagenet_classnames(wnids[:2], tmp_path / "classnames.txt") == ["tench", "gold fish"]
    with pytest.raises(BenchError, match="no name for 1 class folder.*n00000002"):
        imagenet_classnames(wnids[:3], tmp_path / "classnames.txt")


# --- split files ---------------------------------------------------------------------------

@pytest.mark.parametrize("content, message", [
    ("{not json", "is not valid JSON"),
    ("[1, 2, 3]", "must be a JSON object with keys 'train', 'val' and 'test'"),
    ('{"train": [], "val": []}', "must be a JSON object with keys"),
    ('{"train": {}, "val": [], "test": []}', "'train' must be a list"),
    ('{"train": [["a.jpg", 0]], "val": [], "test": []}', "entry 0 of 'train'"),
    ('{"train": [["a.jpg", "0", "x"]], "val": [], "test": []}', "entry 0 of 'train'"),
    ('{"train": [["a.jpg", -1, "x"]], "val": [], "test": []}', "negative label"),
    ('{"train": [["a.jpg", 0, "x"], ["b.jpg", 5, "y"]], "val": [], "test": []}',
     "labels must be 0..1 without gaps"),
    ('{"train": [["a.jpg", 0, "x"], ["b.jpg", 0, "y"]], "val": [], "test": []}',
     "named both 'x' and 'y'"),
    ('{"train": [], "val": [], "test": []}', "lists no images"),
])
def test_bad_split_files_give_clear_errors(tmp_path, content, message):
    path = tmp_path / "split.json"
    path.write_text(content)
    with pytest.raises(BenchError, match=message):
        read_split_file(path)


def test_missing_split_file_names_the_file_and_the_source(fresh_root):
    (fresh_root / "dtd/split_zhou_DescribableTextures.json").unlink()
    with pytest.raises(BenchError) as info:
        DATASETS.get("dtd").load(fresh_root)
    msg = str(info.value)
    assert "split_zhou_DescribableTextures.json not found" in msg
    assert "drive.google.com" in msg and "bench data split dtd" in msg


def test_unknown_dataset_suggests_a_name():
    with pytest.raises(UsageError, match="Did you mean 'eurosat'"):
        DATASETS.get("eurosta")


# --- few-shot sampler ----------------------------------------------------------------------

def reference_fewshot(train, val, k, seed):
    """An independent re-implementation of Dassl's generate_fewshot_dataset as CoOp calls it."""
    random.seed(seed)
    result = []
    for items, n in ((train, k), (val, min(k, 4))):
        order, groups = [], {}
        for item in items:
            if item[1] not in groups:
                order.append(item[1])
                groups[item[1]] = []
            groups[item[1]].append(item)
        chosen = []
        for label in order:
            g = groups[label]
            chosen.extend(random.sample(g, n) if len(g) >= n else g)
        result.append(chosen)
    return result


def _toy(n_per_label: dict[int, int], prefix: str) -> list[tuple[str, int]]:
    rng = random.Random(123)
    items = [(f"{prefix}/{label}/{i}.jpg", label) for label, n in n_per_label.items()
             for i in range(n)]
    rng.shuffle(items)
    return items


@pytest.mark.parametrize("k", [1, 2, 4, 8, 16])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sampler_matches_independent_reimplementation(k, seed):
    train = _toy({0: 20, 1: 5, 2: 17, 3: 30}, "tr")
    val = _toy({0: 6, 1: 2, 2: 9, 3: 4}, "va")
    sub = sample_fewshot(train, val, k, seed)
    ref_train, ref_val = reference_fewshot(train, val, k, seed)
    assert sub.train == ref_train
    assert sub.val == ref_val


def test_sampler_counts_order_and_determinism():
    train = _toy({2: 10, 0: 3, 1: 10}, "tr")
    val = _toy({0: 10, 1: 10, 2: 1}, "va")
    first_seen = list(dict.fromkeys(label for _, label in train))
    a = sample_fewshot(train, val, 8, seed=1)
    assert a == sample_fewshot(train, val, 8, seed=1)
    assert a.train != sample_fewshot(train, val, 8, seed=2).train
    counts = Counter(label for _, label in a.train)
    assert counts[0] == 3 and counts[1] == 8 and counts[2] == 8  # fewer than K -> all of them
    assert list(dict.fromkeys(label for _, label in a.train)) == first_seen
    assert Counter(label for _, label in a.val) == {0: 4, 1: 4, 2: 1}  # min(K, 4)
    assert a.short_classes == {"train": {0: 3}, "val": {2: 1}}
    assert set(a.train) <= set(train) and len(set(a.train)) == len(a.train)


def test_sampler_on_a_miniature_dataset(miniroot):
    splits = DATASETS.get("eurosat").load(miniroot)
    sub = sample_fewshot(splits.train, splits.val, 4, seed=1)
    assert Counter(l for _, l in sub.train) == {0: 4, 1: 4, 2: 3}
    assert Counter(l for _, l in sub.val) == {0: 2, 1: 2, 2: 2}
    assert (sub.train, sub.val) == tuple(reference_fewshot(splits.train, splits.val, 4, 1))


def test_sampler_rejects_zero_shots():
    with pytest.raises(ValueError):
        sample_fewshot([("a", 0)], [], 0, 1)


# --- creating split files ------------------------------------------------------------------

def test_make_split_folder_datasets_50_20_30(fresh_root):
    from datasets_registry.make_split import make_split

    ds = DATASETS.get("caltech101")
    (fresh_root / "caltech-101/101_ObjectCategories/BACKGROUND_Google").mkdir()
    (fresh_root / "caltech-101/101_ObjectCategories/BACKGROUND_Google/image_0001.jpg").write_bytes(b"x")
    with pytest.raises(UsageError, match="already exists"):
        make_split(ds, fresh_root)
    path = make_split(ds, fresh_root, seed=1, force=True)
    first = path.read_text()
    splits = ds.load(fresh_root)
    # folders sorted: Faces, accordion, airplanes (8, 7, 8 images); BACKGROUND_Google ignored
    assert splits.classnames == ["face", "accordion", "airplane"]
    sizes = {s: Counter(l for _, l in splits.split(s)) for s in ("train", "val", "test")}
    assert sizes["train"] == {0: 4, 1: 4, 2: 4} and sizes["val"] == {0: 2, 1: 1, 2: 2}
    assert sizes["test"] == {0: 2, 1: 2, 2: 2}
    make_split(ds, fresh_root, seed=1, force=True)
    assert path.read_text() == first  # same seed, same file


def test_make_split_trainval_datasets_80_20(fresh_root):
    from datasets_registry.make_split import make_split

    for name in ("oxford_pets", "ucf101", "sun397"):
        ds = DATASETS.get(name)
        make_split(ds, fresh_root, seed=3, force=True)
        splits = ds.load(fresh_root)
        assert splits.classnames == MINI_CLASSNAMES[name]
        # 6, 6, 5 train+val images per class -> 1 val each, official test kept
        assert Counter(l for _, l in splits.val) == {0: 1, 1: 1, 2: 1}
        assert len(splits.train) == 17 - 3 and len(splits.test) == MINI_COUNTS["test"]
        assert all((splits.image_dir / r).is_file() for r, _ in splits.train + splits.test)


def test_make_split_refuses_unsupported(fresh_root):
    from datasets_registry.make_split import make_split

    with pytest.raises(UsageError, match="not supported; download it"):
        make_split(DATASETS.get("oxford_flowers"), fresh_root, force=True)
    with pytest.raises(UsageError, match="has no split file"):
        make_split(DATASETS.get("imagenet"), fresh_root)
