"""How the dataset modules hang together: one-way imports, and the split-file hook."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from bench.base.errors import UsageError
from datasets_registry import COOP_TAG, DATASETS
from datasets_registry.split_file import SplitFileDataset

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = ("methods", "bench.runner", "bench.slurm", "bench.launch", "bench.commands",
             "bench.cli", "results.store")


def test_demo_suite_imports_no_dataset_module_and_nothing_of_bench_above_the_base():
    """The suite generates data; datasets_registry/demo.py registers it (no cycle)."""
    code = ("import sys, datasets_registry._demo.suite; "
            "print(sorted(m for m in sys.modules if m.startswith(('datasets_registry.', 'bench.'))"
            " and not m.startswith(('datasets_registry._demo', 'bench.base'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("path", sorted((ROOT / "datasets_registry").glob("*.py")),
                         ids=lambda p: p.name)
def test_datasets_never_import_methods_runner_or_launcher(path):
    tree = ast.parse(path.read_text())
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    bad = [m for m in imported if m.split(".")[0] == "methods"
           or any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert not bad, f"{path.name} imports {bad}"


def test_split_maker_is_the_hook_make_split_uses(tmp_path):
    """Which datasets can create their split file is said by the dataset, not by its name."""
    from datasets_registry.make_split import make_split

    makers = {e.name: e.obj.split_maker.__name__ for e in DATASETS.entries(COOP_TAG)
              if isinstance(e.obj, SplitFileDataset) and e.obj.split_maker is not None}
    assert makers == {"caltech101": "class_folders", "dtd": "class_folders",
                      "eurosat": "class_folders", "food101": "class_folders",
                      "oxford_pets": "pets_lists", "ucf101": "ucf_lists", "sun397": "sun_lists"}

    def maker(ds, data_root):
        return {"train": [["a/1.jpg", 0, "a"]], "val": [["a/2.jpg", 0, "a"]],
                "test": [["a/3.jpg", 0, "a"]]}

    ds = SplitFileDataset(name="toy", display_name="Toy", folder="toy", templates=["{}."],
                          image_subdir="images", split_file="split.json", split_maker=maker)
    (tmp_path / "toy/images").mkdir(parents=True)
    make_split(ds, tmp_path)
    assert ds.load(tmp_path).test == [("a/3.jpg", 0)]
    assert "bench data split toy" in ds.requirements()[-1][1]
    ds.split_maker = None
    with pytest.raises(UsageError, match="creating the split file of Toy is not supported"):
        make_split(ds, tmp_path, force=True)
    assert "bench data split" not in ds.requirements()[-1][1]
