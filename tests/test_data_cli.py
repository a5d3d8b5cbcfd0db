"""`bench data check | fewshot | split` through the CLI entry point: output and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.cli import main
from datasets_registry import DATASETS
from datasets_registry.fewshot import sample_fewshot

try:
    from tests.miniroot import make_miniroot
except ImportError:
    from miniroot import make_miniroot

DISPLAY = ["ImageNet", "Caltech101", "OxfordPets", "StanfordCars", "Flowers102", "Food101",
           "FGVCAircraft", "SUN397", "DTD", "EuroSAT", "UCF101"]


@pytest.fixture
def root(tmp_path) -> Path:
    return make_miniroot(tmp_path / "data")


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_check_complete_root(root, capsys):
    code, out, err = run(capsys, "data", "check", "--data-root", str(root))
    assert code == 0, out + err
    for name in DISPLAY:
        assert f"\n{name} [" in out
    assert out.count(": OK") == 11
    assert "summary: 11 of 11 usable" in out
    assert "classes 3 (published 1,000)" in out  # sizes compared with the published ones


def test_check_reports_removed_image_and_split_file_with_the_fix(root, capsys):
    image = root / "dtd/images/banded/banded_0001.jpg"
    image.unlink()
    (root / "eurosat/split_zhou_EuroSAT.json").unlink()
    code, out, _ = run(capsys, "data", "check", "--data-root", str(root),
                       "--datasets", "dtd,eurosat,ucf101")
    assert code == 1
    assert "DTD [dtd] in dtd/: UNUSABLE" in out
    assert "1 of 23 image files listed for DTD are missing" in out
    assert f"missing: {image}" in out
    assert "dtd-r1.0.1.tar.gz" in out  # where to get the images
    assert "EuroSAT [eurosat] in eurosat/: UNUSABLE" in out
    assert f"missing file {root / 'eurosat/split_zhou_EuroSAT.json'}" in out
    assert "1Ip7yaCWFi0eaOFUGga0lUdVi_DDQth1o" in out  # CoOp's link to the split file
    assert "bench data split eurosat" in out
    assert "UCF101 [ucf101] in ucf101/: OK" in out
    assert "summary: 1 of 3 usable; unusable: DTD, EuroSAT" in out


def test_check_missing_dataset_lists_what_to_create(root, capsys):
    import shutil

    shutil.rmtree(root / "food-101")
    code, out, _ = run(capsys, "data", "check", "--data-root", str(root), "--datasets", "food101")
    assert code == 1
    assert "Food101 [food101] in food-101/: MISSING" in out
    assert f"{root / 'food-101/images'}/  <- food-101.tar.gz" in out
    assert f"{root / 'food-101/split_zhou_Food101.json'}  <- https://drive.google.com" in out


def test_check_bad_split_file_is_unusable(root, capsys):
    (root / "oxford_pets/split_zhou_OxfordPets.json").write_text('{"train": 1}')
    code, out, _ = run(capsys, "data", "check", "--data-root", str(root),
                       "--datasets", "oxford_pets")
    assert code == 1
    assert "must be a JSON object with keys 'train', 'val' and 'test'" in out


def test_check_imagenet_notes(root, capsys):
    (root / "imagenet/classnames.txt").unlink()
    code, out, _ = run(capsys, "data", "check", "--data-root", str(root), "--datasets", "imagenet")
    assert code == 1  # 3 folders cannot be matched to open_clip's 1000 names
    assert "classnames.txt is missing and there are 3 class folders" in out


@pytest.mark.parametrize("make", ["missing", "file"])
def test_bad_data_root_is_a_usage_error(tmp_path, capsys, make):
    path = tmp_path / "nowhere"
    if make == "file":
        path.write_text("x")
    code, out, err = run(capsys, "data", "check", "--data-root", str(path))
    assert code == 2
    assert ("does not exist" if make == "missing" else "is a file, not a folder") in err
    assert "Traceback" not in err


def test_unknown_dataset_is_a_usage_error(root, capsys):
    code, _, err = run(capsys, "data", "check", "--data-root", str(root), "--datasets", "dtdd")
    assert code == 2 and "unknown dataset 'dtdd'" in err


def test_fewshot_prints_the_coop_subset(root, capsys):
    code, out, _ = run(capsys, "data", "fewshot", "--dataset", "oxford_pets", "--shots", "2",
                       "--seed", "3", "--data-root", str(root))
    assert code == 0
    got = json.loads(out)
    splits = DATASETS.get("oxford_pets").load(root)
    want = sample_fewshot(splits.train, splits.val, 2, 3)
    assert got == {"train": [list(x) for x in want.train], "val": [list(x) for x in want.val]}
    assert len(got["train"]) == 6 and len(got["val"]) == 6


def test_fewshot_bad_input(root, capsys):
    code, _, err = run(capsys, "data", "fewshot", "--dataset", "dtd", "--shots", "0", "--seed",
                       "1", "--data-root", str(root))
    assert code == 2 and "--shots must be at least 1" in err
    (root / "dtd/split_zhou_DescribableTextures.json").write_text("nope")
    code, _, err = run(capsys, "data", "fewshot", "--dataset", "dtd", "--shots", "1", "--seed",
                       "1", "--data-root", str(root))
    assert code == 1 and "is not valid JSON" in err and "Traceback" not in err


def test_split_command(root, capsys):
    code, _, err = run(capsys, "data", "split", "dtd", "--data-root", str(root))
    assert code == 2 and "already exists; pass --force" in err
    (root / "dtd/split_zhou_DescribableTextures.json").unlink()
    code, out, _ = run(capsys, "data", "split", "dtd", "--data-root", str(root), "--seed", "2")
    assert code == 0 and "wrote" in out
    code, out, _ = run(capsys, "data", "check", "--data-root", str(root), "--datasets", "dtd")
    assert code == 0


def _tree_state(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_check_decodes_every_image_and_lists_every_bad_one(root, capsys):
    images = root / "eurosat/2750"
    empty = images / "Forest/Forest_12.jpg"
    html = images / "AnnualCrop/AnnualCrop_1.jpg"
    half = images / "AnnualCrop/AnnualCrop_2.jpg"
    assert empty.is_file() and html.is_file() and half.is_file()
    empty.write_bytes(b"")
    html.write_text("<!DOCTYPE html><html><body>Quota exceeded</body></html>")
    half.write_bytes(half.read_bytes()[:len(half.read_bytes()) // 2])
    before = _tree_state(root)
    code, out, err = run(capsys, "data", "check", "--data-root", str(root),
                         "--datasets", "eurosat,dtd", "--workers", "3")
    assert code == 1 and "Traceback" not in err
    assert "EuroSAT [eurosat] in eurosat/: UNUSABLE" in out
    assert "3 of 23 image files listed for EuroSAT cannot be decoded" in out
    for bad in (empty, html, half):  # every bad file, each with why
        assert f"cannot decode: {bad} (" in out
    assert f"cannot decode: {half} (OSError: " in out
    assert f"cannot decode: {empty} (UnidentifiedImageError: " in out
    assert "DTD [dtd] in dtd/: OK" in out and "all 23 image files decode" in out
    assert "summary: 1 of 2 usable; unusable: EuroSAT" in out
    assert _tree_state(root) == before  # the check changes nothing

    code, out, _ = run(capsys, "data", "check", "--data-root", str(root), "--datasets",
                       "eurosat", "--fast")  # existence only: passes as before
    assert code == 0 and "all 23 listed image files present" in out
    assert "cannot decode" not in out and "files decode" not in out


def test_check_decodes_imagenet_listed_by_folders(root, capsys):
    victim = next((root / "imagenet").rglob("*.JPEG"), None) or next(
        p for p in (root / "imagenet").rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    victim.write_bytes(b"")
    code, out, _ = run(capsys, "data", "check", "--data-root", str(root), "--datasets", "imagenet")
    assert code == 1 and f"cannot decode: {victim} (" in out


def test_check_workers_must_be_positive(root, capsys):
    code, _, err = run(capsys, "data", "check", "--data-root", str(root), "--workers", "0")
    assert code == 2 and "--workers must be at least 1, got 0" in err


@pytest.mark.parametrize("bad, why", [
    ("../../../../etc/passwd", "leaves the image folder ('..')"),
    ("Forest/../../../secret.jpg", "leaves the image folder ('..')"),
    ("/etc/passwd", "is absolute"),
])
def test_split_paths_must_stay_inside_the_dataset(root, capsys, bad, why):
    path = root / "eurosat/split_zhou_EuroSAT.json"
    data = json.loads(path.read_text())
    data["train"][2][0] = bad
    path.write_text(json.dumps(data))
    code, out, err = run(capsys, "data", "check", "--data-root", str(root), "--datasets", "eurosat")
    assert code == 1 and "Traceback" not in err
    assert (f"split file {path}: entry 2 of 'train' has the path {bad!r}, which {why}; paths "
            f"must be relative to the dataset's image folder and stay inside it") in out
    assert path.read_text() == json.dumps(data)
    code, _, err = run(capsys, "data", "fewshot", "--dataset", "eurosat", "--shots", "1",
                       "--seed", "1", "--data-root", str(root))
    assert code == 1 and f"has the path {bad!r}, which {why}" in err


def test_harmless_dots_in_split_paths_are_accepted():
    from datasets_registry.split_file import outside_problem

    assert outside_problem("a/./b/../c.jpg") is None
    assert outside_problem("a..b/c...jpg") is None
    assert outside_problem("a/../../c.jpg") == "leaves the image folder ('..')"
    assert outside_problem("") == "is empty"
