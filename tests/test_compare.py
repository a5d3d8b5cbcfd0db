"""Per-image predictions stored by `bench run`, and the paired comparisons built on them
(`bench compare`, significance marks in `bench report`, `bench export`)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from results import predictions as P
from results.store import ResultStore, cell_id
from tests.conftest import TINY

METHODS = "zero_shot,linear_probe,clip_adapter_visual"


@pytest.fixture(scope="module")
def sweep(miniroot, tmp_path_factory):
    """One small sweep on the miniature root: 3 methods x 2 datasets x 2 shots x 3 seeds."""
    from bench.cli import main

    out = tmp_path_factory.mktemp("sweep") / "out"
    code = main(["run", "--backbone", TINY, "--pretrained", "none", "--quiet", "--data-root",
                 str(miniroot), "--datasets", "eurosat,dtd", "--methods", METHODS, "--shots",
                 "1,2", "--seeds", "1,2,3", "--output", str(out)])
    assert code == 0
    return out


def _copy(sweep, tmp_path) -> Path:
    dst = tmp_path / "out"
    shutil.copytree(sweep, dst)
    return dst


# ----------------------------------------------------------------------------- stored by run
def test_every_record_names_a_checked_predictions_file(sweep):
    records = ResultStore(sweep).load_all()
    assert len(records) == 3 * 2 * 2 * 3
    for rec in records:
        block = rec["predictions"]
        path = Path(rec["_path"])
        assert block["file"] == P.predictions_path(path).name
        assert (path.parent / block["file"]).stat().st_size == block["bytes"]
        preds = P.read_predictions(path, block)
        assert list(preds) == [rec["dataset"]]
        assert P.check_record(rec, preds) == []
        assert rec["cell_id"] == cell_id(rec)  # the block is not part of the identity


def test_superseded_record_takes_its_predictions_along(sweep, tmp_path):
    out = _copy(sweep, tmp_path)
    store = ResultStore(out)
    rec = next(r for r in store.load_all() if r["method"] == "zero_shot")
    path = Path(rec["_path"])
    newer = {k: v for k, v in rec.items() if k not in ("_path", "predictions", "cell_id")}
    newer["inputs"] = {**(rec.get("inputs") or {}), "split": "other"}
    logits = torch.zeros(rec["metrics"]["n_test"], 3)
    store.write(newer, predictions={rec["dataset"]: (logits, torch.zeros(len(logits)).long())})
    (old,) = store.superseded()
    old_rec = json.loads(old.read_text())
    assert P.read_predictions(old, old_rec["predictions"])  # still its own file, beside it
    new_rec = json.loads(path.read_text())
    assert new_rec["predictions"]["sha256"] != old_rec["predictions"]["sha256"]
    assert P.read_predictions(path, new_rec["predictions"])


def test_rerun_computes_nothing_and_keeps_the_files(sweep, miniroot, tmp_path, run_cli):
    out = _copy(sweep, tmp_path)
    files = sorted(out.rglob("*.pred.npz"))
    mtimes = [f.stat().st_mtime_ns for f in files]
    code, _, err = run_cli("run", "--backbone", TINY, "--pretrained", "none", "--quiet",
                           "--data-root", miniroot, "--datasets", "eurosat,dtd", "--methods",
                           METHODS, "--shots", "1,2", "--seeds", "1,2,3", "--output", out)
    assert code == 0 and "0 to run" in err
    assert [f.stat().st_mtime_ns for f in sorted(out.rglob("*.pred.npz"))] == mtimes


def _strip_predictions(out: Path) -> None:
    """Make ``out`` look like a folder written before bench stored predictions."""
    for f in out.rglob("*.pred.npz"):
        f.unlink()
    for f in (out / "results").rglob("*.json"):
        rec = json.loads(f.read_text())
        rec.pop("predictions", None)
        f.write_text(json.dumps(rec))


def test_folder_without_predictions_still_reports(sweep, tmp_path, run_cli):
    out = _copy(sweep, tmp_path)
    _strip_predictions(out)
    code, table, err = run_cli("report", out, "--layout", "main", "--color", "never")
    assert code == 0, err
    assert "Linear probe" in table and "damaged" not in err
