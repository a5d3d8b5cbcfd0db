"""Every result is checked before it is written (issue 27): a method's logits must be finite and
of shape (test images, classes evaluated) in every evaluation of the protocol, its ``info``
JSON; otherwise the cell is recorded as failed with why, the run goes on and exits 1, and
`bench report` / `bench status` show the cell as failed, never as a number."""

import csv
import io
import json
from pathlib import Path

import pytest

from tests.conftest import TINY

BASE = ["run", "--backbone", TINY, "--pretrained", "none", "--quiet", "--device", "cpu",
        "--shots", "1", "--seeds", "1"]

PLUGIN = '''
import numpy as np
import torch

from methods import METHODS
from methods.base import Fitted, normalize


def _zero_shot(task):
    weights = task.backbone.class_weights(task.classnames, task.templates)
    return lambda f: 10 * normalize(f.float()) @ weights.T


@METHODS.register("nan_logits", description="all-NaN logits")
def nan_logits(task):
    return Fitted(lambda f: torch.full((len(f), len(task.classnames)), float("nan")))


@METHODS.register("wide_logits", description="three columns too many")
def wide_logits(task):
    return Fitted(lambda f: torch.zeros(len(f), len(task.classnames) + 3))


@METHODS.register("numpy_logits", description="not a tensor")
def numpy_logits(task):
    return Fitted(lambda f: np.zeros((len(f), len(task.classnames))))


@METHODS.register("array_info", description="info holds a numpy array")
def array_info(task):
    return Fitted(_zero_shot(task), {"weights": np.ones(3)})


@METHODS.register("nan_info", description="info holds a NaN")
def nan_info(task):
    return Fitted(_zero_shot(task), {"alpha": float("nan")})


@METHODS.register("novel_nan", new_classes=True, description="fine on base, NaN on new classes")
def novel_nan(task):
    def for_classes(classnames, templates, dataset):
        return lambda f: torch.full((len(f), len(classnames)), float("inf"))

    return Fitted(_zero_shot(task), {}, for_classes)


@METHODS.register("novel_narrow", new_classes=True, description="one class short on new classes")
def novel_narrow(task):
    def for_classes(classnames, templates, dataset):
        return lambda f: torch.zeros(len(f), len(classnames) - 1)

    return Fitted(_zero_shot(task), {}, for_classes)
'''


@pytest.fixture()
def plugin(tmp_path, plugin_state):
    path = tmp_path / "plug" / "garbage.py"
    path.parent.mkdir()
    path.write_text(PLUGIN)
    return path


def _records(out: Path) -> dict[str, dict]:
    return {json.loads(p.read_text())["method"]: json.loads(p.read_text())
            for p in (out / "results").rglob("*.json")}


def test_garbage_outputs_fail_their_cells_and_the_run_goes_on(run_cli, miniroot, tmp_path, plugin):
    out = tmp_path / "out"
    methods = "nan_logits,wide_logits,numpy_logits,array_info,nan_info,zero_shot"
    code, _, err = run_cli(*BASE, "--data-root", miniroot, "--datasets", "eurosat",
                           "--methods", methods, "--output", out, "--include", plugin)
    assert code == 1 and "Traceback" not in err and "internal error" not in err
    recs = _records(out)
    assert recs["zero_shot"]["status"] == "ok"
    want = {
        "nan_logits": "eurosat: 18 of 18 logits are not finite (NaN or infinite), in 6 of 6 "
                      "test images",
        "wide_logits": "eurosat: the method's logits have shape (6, 6), not (6, 3) = (test "
                       "images, classes evaluated)",
        "numpy_logits": "the method's logits are a ndarray, not a torch.Tensor",
        "array_info": "Fitted.info is not JSON-serializable (Object of type ndarray is not JSON "
                      "serializable)",
        "nan_info": "Fitted.info is not JSON-serializable (Out of range float values are not "
                    "JSON compliant",
    }
    for method, words in want.items():
        rec = recs[method]
        assert rec["status"] == "failed", method
        assert rec["error"]["type"] == "InvalidResult" and words in rec["error"]["message"], rec
        assert not {"metrics", "selected", "logits_sha256"} & set(rec), method  # no number
        assert f"bench: cell eurosat/{method}/k1/s1 failed: InvalidResult: {words}" in err
    assert "6 cell(s) failed" not in err and "5 cell(s) failed" in err

    code, table, rerr = run_cli("report", out, "--format", "csv", "--include", plugin)
    assert code == 0, rerr
    rows = {r["method"]: r for r in csv.DictReader(io.StringIO(table))
            if r["dataset"] == "eurosat"}
    assert rows["zero_shot"]["mean"] != "" and rows["zero_shot"]["n_failed"] == "0"
    for method in want:  # shown as failed, never as a number
        assert (rows[method]["mean"], rows[method]["n"], rows[method]["n_failed"]) == \
            ("", "0", "1"), rows[method]
    code, status, _ = run_cli("status", out)
    assert code == 1 and "6 cells: 1 done, 5 failed" in status
    assert status.count(": InvalidResult: ") == 5


def test_invalid_logits_in_any_evaluation_fail_the_cell(run_cli, miniroot, tmp_path, plugin):
    """Base-to-novel: base is fine, the novel classes' logits are not (inf; one column short)."""
    out = tmp_path / "out"
    code, _, err = run_cli(*BASE, "--data-root", miniroot, "--datasets", "eurosat",
                           "--protocol", "base2novel", "--methods", "novel_nan,novel_narrow",
                           "--output", out, "--include", plugin)
    assert code == 1 and "Traceback" not in err
    recs = _records(out)
    assert "novel: 2 of 2 logits are not finite" in recs["novel_nan"]["error"]["message"]
    assert "novel: the method's logits have shape (2, 0), not (2, 1)" in \
        recs["novel_narrow"]["error"]["message"]
    assert all(r["status"] == "failed" and "evaluations" not in r for r in recs.values())

    out = tmp_path / "cross"  # cross-dataset: the source is fine, the target is not
    code, _, err = run_cli(*BASE, "--data-root", miniroot, "--protocol", "crossdataset",
                           "--source", "eurosat", "--datasets", "dtd", "--methods", "novel_nan",
                           "--output", out, "--include", plugin)
    assert code == 1 and "Traceback" not in err
    assert "dtd: 18 of 18 logits are not finite" in _records(out)["novel_nan"]["error"]["message"]


@pytest.mark.parametrize("value, shown", [(".inf", "inf"), ("-.inf", "-inf"), (".nan", "nan"),
                                          ("1e999", "inf")])
def test_schema_refuses_non_finite_numbers(run_cli, tmp_path, value, shown):
    code, _, err = run_cli("run", "--dry-run", "--quiet", "--datasets", "demo_digits",
                           "--methods", "coop", "--shots", "1", "--seeds", "1",
                           "--output", tmp_path / "o", "--set", f"lr={value}")
    assert code == 2 and "Traceback" not in err
    assert err.splitlines()[1:] == [f"bench: error: 1 bad config value; nothing was run: coop: lr = "
                                f"{shown}: must be a finite number > 0 (fix the --set value, the "
                                f"sweep file's 'set', or configs/methods/<method>.yaml)"]
    assert not (tmp_path / "o").exists()


def test_check_value_refuses_non_finite_numbers_in_lists_too():
    from bench.base.schema import check_value

    rule = {"type": "list", "items": {"type": "number"}}
    assert check_value([1.0, 2.0], rule) is None
    assert "is not a finite number" in check_value([1.0, float("inf")], rule)
    assert check_value(float("nan"), {"type": "number"}) == "a finite number"
