"""A result is tied to its inputs (issue 14): an edited split file or a replaced image makes its
cells run again (the old records move aside), an untouched rerun runs nothing."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
from PIL import Image


def _root(tmp_path, miniroot):
    shutil.copytree(miniroot / "eurosat", tmp_path / "data" / "eurosat")
    return tmp_path / "data"


def _run(run_cli, root, out, methods="zero_shot,linear_probe"):
    code, _, err = run_cli("run", "--data-root", root, "--datasets", "eurosat", "--methods",
                           methods, "--shots", "1", "--seeds", "1", "--backbone",
                           "bench-test-tiny", "--pretrained", "none", "--output", out, "--quiet")
    assert code == 0, err
    return err


def _records(out):
    return sorted((out / "results").rglob("*.json"))


def test_edited_split_file_reruns_its_cells(tmp_path, miniroot, run_cli):
    root, out = _root(tmp_path, miniroot), tmp_path / "out"
    assert "0 already done), 2 to run" in _run(run_cli, root, out)
    assert "(2 already done), 0 to run" in _run(run_cli, root, out)
    split = root / "eurosat" / "split_zhou_EuroSAT.json"
    data = json.loads(split.read_text())
    data["train"], data["test"] = data["test"], data["train"]
    split.write_text(json.dumps(data))
    err = _run(run_cli, root, out)
    assert "(0 already done), 2 to run" in err
    superseded = sorted((out / "superseded").rglob("*.json"))
    assert len(superseded) == 2 and len(_records(out)) == 2
    new = json.loads(_records(out)[0].read_text())
    old = json.loads(superseded[0].read_text())
    assert new["inputs"]["split"] != old["inputs"]["split"]
    assert new["metrics"]["n_test"] == len(data["test"])
    # The portable few-shot subset follows the new split file too.
    subset = json.loads((out / "splits" / "eurosat" / "shot_1-seed_1.json").read_text())
    train_items = {tuple(x[:2]) for x in data["train"]}
    assert all(tuple(x) in train_items for x in subset["train"])


def test_replaced_test_image_reruns_its_cells(tmp_path, miniroot, run_cli):
    root, out = _root(tmp_path, miniroot), tmp_path / "out"
    _run(run_cli, root, out, "zero_shot")
    split = json.loads((root / "eurosat" / "split_zhou_EuroSAT.json").read_text())
    path = root / "eurosat" / "2750" / split["test"][0][0]
    before = os.stat(path)
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(path, format="JPEG")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 10))
    assert "(0 already done), 1 to run" in _run(run_cli, root, out, "zero_shot")
    assert len(list((out / "superseded").rglob("*.json"))) == 1
    # (that only the replaced image is encoded again: tests/test_feature_cache.py)
    assert "(1 already done), 0 to run" in _run(run_cli, root, out, "zero_shot")
