"""Data faults that no single list entry shows (issue 27): test leakage, repeated entries, a class
without train images, an empty split. `bench data check` reports them; `bench run` refuses the
ones that make results wrong at plan time (one line, exit 2, nothing written) and copes with the
others (each image counted once, short classes recorded)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tests.conftest import TINY

SPLIT = ("eurosat", "split_zhou_EuroSAT.json")
RUN = ["run", "--backbone", TINY, "--pretrained", "none", "--quiet", "--device", "cpu",
       "--datasets", "eurosat", "--methods", "zero_shot", "--seeds", "1"]


@pytest.fixture()
def root(tmp_path) -> Path:
    from tests.miniroot import make_miniroot

    return make_miniroot(tmp_path / "data")


def edit_split(root: Path, change) -> dict:
    path = root / SPLIT[0] / SPLIT[1]
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return data


def check(run_cli, root, *extra):
    return run_cli("data", "check", "--data-root", root, "--datasets", "eurosat", *extra)


def test_train_image_in_test_is_an_error_in_check_and_refused_by_run(run_cli, root, tmp_path):
    data = edit_split(root, lambda d: d["test"].append(list(d["train"][0])))
    leaked = data["train"][0][0]
    for fast in ([], ["--fast"]):
        code, out, _ = check(run_cli, root, *fast)
        assert code == 1 and "EuroSAT [eurosat] in eurosat/: UNUSABLE" in out
        assert (f"error: 1 image(s) of 'train' are also in 'test' (test leakage: methods would "
                f"train on test images), e.g. {leaked!r}") in out
    out_dir = tmp_path / "out"
    for dry in (["--dry-run"], []):
        code, _, err = run_cli(*RUN, "--data-root", root, "--shots", "1", "--output", out_dir, *dry)
        assert code == 2 and "Traceback" not in err
        assert err.count("bench: error:") == 1 and "test leakage" in err
        assert "nothing was run: fix its lists (`bench data check --data-root" in err
        assert "or leave eurosat out of --datasets" in err
        assert not out_dir.exists()


def test_val_image_in_test_is_leakage_too(run_cli, root):
    edit_split(root, lambda d: d["test"].append(list(d["val"][0])))
    code, out, _ = check(run_cli, root, "--fast")
    assert code == 1 and "1 image(s) of 'val' are also in 'test' (test leakage: methods would " \
                         "choose their settings on test images)" in out


def test_same_bytes_under_another_name_is_a_warning_when_images_are_decoded(run_cli, root):
    data = json.loads((root / SPLIT[0] / SPLIT[1]).read_text())
    image_dir = root / "eurosat" / "2750"
    # make every image distinct, then give one test image the bytes of a train image
    for split in ("train", "val", "test"):
        for i, (rel, _, _) in enumerate(data[split]):
            path = image_dir / rel
            path.write_bytes(path.read_bytes() + f"{split}{i}".encode())
    train_rel, test_rel = data["train"][0][0], data["test"][0][0]
    (image_dir / test_rel).write_bytes((image_dir / train_rel).read_bytes())
    code, out, _ = check(run_cli, root)
    assert code == 0 and "EuroSAT [eurosat] in eurosat/: OK (with warnings)" in out
    assert (f"warning: 1 test image(s) have the same bytes as a train image under another name "
            f"(test leakage by content), e.g. {test_rel!r} = {train_rel!r}") in out
    code, out, _ = check(run_cli, root, "--fast")  # no file is read: paths only
    assert code == 0 and "same bytes" not in out


def test_empty_split_is_refused_at_plan_time(run_cli, root, tmp_path):
    edit_split(root, lambda d: d.update(test=[]))
    code, out, _ = check(run_cli, root, "--fast")
    assert code == 1 and "error: 'test' lists no images" in out
    code, _, err = run_cli(*RUN, "--data-root", root, "--shots", "1", "--output", tmp_path / "o")
    assert code == 2 and "Traceback" not in err and "torch.cat" not in err
    assert "bench: error: EuroSAT: 'test' lists no images" in err
    assert not (tmp_path / "o").exists()


def _forest_only_in_val_and_test(d):
    d["train"] = [row for row in d["train"] if row[2] != "Forest"]


def test_class_without_train_images_is_short_and_warned(run_cli, root, tmp_path):
    edit_split(root, _forest_only_in_val_and_test)
    code, out, _ = check(run_cli, root, "--fast")
    assert code == 0 and "OK (with warnings)" in out
    assert "warning: 1 class(es) have no train image, e.g. 'Forest'" in out
    out_dir = tmp_path / "out"
    code, _, err = run_cli(*RUN, "--data-root", root, "--shots", "2", "--output", out_dir)
    assert code == 0, err
    assert "bench: warning: EuroSAT: 1 class(es) have no train image, e.g. 'Forest'" in err
    assert "1 class(es) of train have fewer than 2 distinct images ('Forest' 0)" in err
    rec = json.loads(next((out_dir / "results").rglob("*.json")).read_text())
    assert rec["fewshot"]["short_classes"] == {"train": {"1": 0}}
    assert rec["fewshot"]["n_train"] == 4


def test_repeated_train_entry_counts_once(run_cli, root, tmp_path):
    """Class 2 has 3 train images; one of them listed 3 times made 4 "shots" from 3 images."""
    def repeat(d):
        row = next(r for r in d["train"] if r[1] == 2)
        d["train"] += [list(row), list(row)]

    edit_split(root, repeat)
    code, out, _ = check(run_cli, root, "--fast")
    assert code == 0 and "warning: 'train' lists 1 image(s) more than once (2 extra entries)" in out
    assert ("note: 3 class(es) have fewer than 16 distinct train images ('Annual Crop Land' 4, "
            "'Forest' 4, 'Herbaceous Vegetation Land' 3): a K-shot subset with K above a "
            "class's count takes all of its images") in out  # 3 distinct, not 5 entries
    out_dir = tmp_path / "out"
    code, _, err = run_cli(*RUN, "--data-root", root, "--shots", "4", "--output", out_dir)
    assert code == 0, err
    assert "each counts once in the few-shot subsets" in err
    rec = json.loads(next((out_dir / "results").rglob("*.json")).read_text())
    few = rec["fewshot"]
    assert few["n_train"] == 11 and few["short_classes"]["train"] == {"2": 3}
    assert few["duplicates"] == {"train": 2}
    subset = json.loads((out_dir / few["path"]).read_text())
    assert len({tuple(x) for x in subset["train"]}) == len(subset["train"]) == 11


def test_image_listed_with_two_labels_is_an_error(run_cli, root):
    edit_split(root, lambda d: d["train"].append([d["train"][0][0], (d["train"][0][1] + 1) % 3,
                                                  {0: "Annual Crop Land", 1: "Forest",
                                                   2: "Herbaceous Vegetation Land"}[
                                                      (d["train"][0][1] + 1) % 3]]))
    code, out, _ = check(run_cli, root, "--fast")
    assert code == 1 and "image(s) of 'train' are listed with two or more labels" in out


# --- the samplers ----------------------------------------------------------------------------

def _items(n_classes=4, per_class=6):
    return [(f"c{c}/{i}.jpg", c) for c in range(n_classes) for i in range(per_class)]


@pytest.mark.parametrize("sampler", ["dassl", "lpclip"])
def test_samplers_count_repeated_entries_once_and_leave_clean_lists_alone(sampler):
    from datasets_registry.fewshot import SAMPLERS

    draw = SAMPLERS[sampler]
    train, val = _items(), _items(per_class=3)
    val = [(p.replace(".jpg", "v.jpg"), c) for p, c in val]
    random.Random(0).shuffle(train)
    clean = draw(train, val, 4, 1)
    assert clean.duplicates == {} and "duplicates" not in clean.to_json()
    assert draw(train, val, 4, 1, n_classes=4).to_json() == clean.to_json()  # nothing missing
    repeated = train + train[:5] + [train[0]] * 3
    sub = draw(repeated, val, 4, 1, n_classes=4)
    assert sub.duplicates == {"train": 8}
    assert (sub.train, sub.val) == (clean.train, clean.val)  # the subsets of the list without repeats
    assert len(set(sub.train)) == len(sub.train) == 16


@pytest.mark.parametrize("sampler", ["dassl", "lpclip"])
def test_samplers_report_a_class_without_items(sampler):
    from datasets_registry.fewshot import SAMPLERS

    train = [it for it in _items() if it[1] != 2]
    val = [(p.replace(".jpg", "v.jpg"), c) for p, c in _items(per_class=3)]
    sub = SAMPLERS[sampler](train, val, 2, 1, n_classes=4)
    assert sub.short_classes["train"] == {2: 0}
    assert [x for x in sub.train if x[1] == 2] == []
    without = SAMPLERS[sampler](train, val, 2, 1)
    assert (sub.train, sub.val) == (without.train, without.val)
