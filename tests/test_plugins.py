"""Plugins (--include, the bench.plugins entry point) and the Python API (bench.run, bench.load).

The installed-package tests need scripts/ci/setup-plugin.sh (CI runs it); they skip otherwise.
"""

import csv
import io
import json
import pickle
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from tests.conftest import TINY

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_PKG = REPO / "examples" / "bench-plugin-example" / "src" / "bench_plugin_example"
EXAMPLE_DATASET = REPO / "examples" / "plugins"
INSTALLED = any(e.name == "class_mean" for e in entry_points(group="bench.methods"))
needs_installed = pytest.mark.skipif(
    not INSTALLED, reason="bench-plugin-example is not installed: run scripts/ci/setup-plugin.sh")

METHOD_SRC = '''
from methods import METHODS
from methods.base import Fitted, normalize


@METHODS.register("{name}", display_name="{display}", order=70, description="a test plugin")
def fit(task):
    weights = task.backbone.class_weights(task.classnames, task.templates)

    def logits(features):
        return task.config["scale"] * normalize(features.float()) @ weights.T

    return Fitted(logits, {{"scale": task.config["scale"]}})
'''


def write_plugin(folder: Path, name: str, display: str = "Test plugin", yaml_text=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}_module.py"
    path.write_text(METHOD_SRC.format(name=name, display=display))
    if yaml_text is not False:
        (folder / f"{name}.yaml").write_text(yaml_text or textwrap.dedent("""\
            description: test plugin
            defaults:
              scale: 10.0
            variants:
              hot: {scale: 100.0}
            """))
    return path


def test_include_folder_registers_method_with_its_yaml(run_cli, tmp_path, plugin_state):
    write_plugin(tmp_path / "plug", "plug_a", "Plugin A")
    code, out, err = run_cli("ls", "methods", "--include", tmp_path / "plug")
    assert code == 0, err
    line = next(l for l in out.splitlines() if l.startswith("plug_a "))
    assert "Plugin A: a test plugin" in line and "[variants: hot]" in line
    from bench.catalog import method_catalog
    from bench.config import MethodSpec, resolve_method_config

    assert method_catalog() == method_catalog(light=False)  # read from source == imported
    assert resolve_method_config(MethodSpec("plug_a", "hot"), "dtd", 1)[1] == {"scale": 100.0}
    from methods import METHODS

    assert METHODS.entry("plug_a").source.endswith("plug_a_module.py")


def test_include_single_file_and_run_it_beside_a_builtin(run_cli, miniroot, tmp_path,
                                                         plugin_state):
    path = write_plugin(tmp_path / "p", "plug_b")
    out = tmp_path / "out"
    code, _, err = run_cli("run", "--include", path, "--methods", "zero_shot,plug_b:hot",
                           "--datasets", "dtd", "--shots", "1", "--seeds", "1",
                           "--data-root", miniroot, "--backbone", TINY, "--pretrained", "none",
                           "--output", out, "--quiet")
    assert code == 0, err
    recs = [json.loads(p.read_text()) for p in (out / "results").rglob("*.json")]
    assert {(r["method"], r["variant"], r["status"]) for r in recs} == {
        ("zero_shot", None, "ok"), ("plug_b", "hot", "ok")}
    plug = next(r for r in recs if r["method"] == "plug_b")
    assert plug["config"] == {"scale": 100.0} and plug["selected"] == {"scale": 100.0}


@pytest.mark.parametrize("make, expected", [
    (lambda d: d / "missing", "no such file or folder"),
    (lambda d: (d / "notes.txt").write_text("x") and d / "notes.txt",
     "not a .py module or .yaml config"),
    (lambda d: (d / "bad.py").write_text("import not_a_module_xyz\n") and d / "bad.py",
     "failed to import: ModuleNotFoundError"),
    (lambda d: (d / "dup.py").write_text(METHOD_SRC.format(name="zero_shot", display="x"))
     and d / "dup.py", "method 'zero_shot' is registered twice (by module methods.zero_shot"),
])
def test_bad_include_is_one_line_exit_2(run_cli, tmp_path, plugin_state, make, expected):
    path = make(tmp_path)
    code, out, err = run_cli("ls", "methods", "--include", path)
    assert code == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], err


def test_bench_include_env_var(run_cli, tmp_path, plugin_state, monkeypatch):
    write_plugin(tmp_path / "env", "plug_env")
    monkeypatch.setenv("BENCH_INCLUDE", str(tmp_path / "env"))
    plugin_state.reset()  # read the variable again
    code, out, _ = run_cli("ls", "methods")
    assert code == 0 and "plug_env " in out


def _write_shapes_root(root: Path) -> Path:
    """DATA_ROOT/shapes in CoOp's layout, as examples/plugins/shapes.py expects."""
    from tests.miniroot import _jpeg

    rows = {"train": [], "val": [], "test": []}
    names = ["circle", "square", "triangle"]
    n = 0
    for label, cname in enumerate(names):
        for split, count in (("train", 4 if label < 2 else 3), ("val", 2), ("test", 2)):
            for _ in range(count):
                rel = f"{cname}/{cname}_{n:03d}.jpg"
                n += 1
                (root / "shapes" / "images" / cname).mkdir(parents=True, exist_ok=True)
                (root / "shapes" / "images" / rel).write_bytes(_jpeg(label))
                rows[split].append([rel, label, cname])
    (root / "shapes" / "split_shapes.json").write_text(json.dumps(rows))
    return root


def test_external_dataset_in_coop_layout(run_cli, tmp_path, plugin_state):
    root = _write_shapes_root(tmp_path / "data")
    code, out, err = run_cli("ls", "datasets", "--include", EXAMPLE_DATASET)
    assert code == 0 and "shapes" in out and "Shapes" in out, err
    out_dir = tmp_path / "out"
    code, _, err = run_cli("run", "--include", EXAMPLE_DATASET, "--methods", "zero_shot",
                           "--datasets", "shapes", "--shots", "1,2", "--seeds", "1",
                           "--data-root", root, "--backbone", TINY, "--pretrained", "none",
                           "--output", out_dir, "--quiet")
    assert code == 0, err
    code, out, err = run_cli("report", out_dir, "--format", "csv", "--include", EXAMPLE_DATASET)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert {(r["dataset"], r["dataset_name"], r["shots"]) for r in rows} >= {
        ("shapes", "Shapes", "1"), ("shapes", "Shapes", "2")}


def test_slurm_job_carries_the_include_paths(tmp_path, plugin_state):
    from bench.slurm import BenchJob

    path = write_plugin(tmp_path / "s", "plug_s")
    plugin_state.include([path])
    job = pickle.loads(pickle.dumps(BenchJob(plugin_state.included())))
    assert job.include == [str(path.resolve())]
    assert pickle.loads(pickle.dumps(BenchJob())).include == []


def test_local_launcher_task_imports_the_plugin(run_cli, miniroot, tmp_path, plugin_state):
    """A submitit task is another process: it must import --include paths itself."""
    path = write_plugin(tmp_path / "l", "plug_local")
    out = tmp_path / "out"
    code, _, err = run_cli("run", "--include", path, "--methods", "plug_local",
                           "--datasets", "dtd", "--shots", "1", "--seeds", "1",
                           "--data-root", miniroot, "--backbone", TINY, "--pretrained", "none",
                           "--output", out, "--quiet", "--launcher", "local")
    assert code == 0, err
    recs = [json.loads(p.read_text()) for p in (out / "results").rglob("*.json")]
    assert [(r["method"], r["status"]) for r in recs] == [("plug_local", "ok")]


# --- the Python API -------------------------------------------------------------------------

def test_api_load_is_the_report_csv(run_cli, miniroot, tmp_path, plugin_state):
    import bench

    out = tmp_path / "out"
    df = bench.run(methods="zero_shot,linear_probe", datasets=["dtd", "eurosat"], shots=[1, 2],
                   seeds=[1, 2], output=out, data_root=miniroot, backbone=TINY,
                   pretrained="none")
    code, text, err = run_cli("report", out, "--format", "csv")
    assert code == 0, err
    want = list(csv.DictReader(io.StringIO(text)))
    loaded = bench.load(out)
    assert list(loaded.columns) == list(want[0])
    assert len(loaded) == len(want) == len(df) == 2 * 3 * 2  # methods x (2 datasets + avg) x shots
    for got, exp in zip(loaded.to_dict("records"), want):
        for key, value in exp.items():
            g = got[key]
            if key in ("mean", "std"):
                assert (value == "" and g != g) or abs(float(value) - g) < 1e-9, (key, value, g)
            else:
                assert str(g) == value, (key, value, g)
    assert set(df["method"]) == {"zero_shot", "linear_probe"}
    assert (df["n"] == 2).all() and (df["n_failed"] == 0).all()
    part = bench.load(out, methods="zero_shot", shots=[2])
    assert set(part["method"]) == {"zero_shot"} and set(part["shots"]) == {2}


def test_api_errors_are_clear(tmp_path):
    import bench
    from bench.base.errors import UsageError

    with pytest.raises(TypeError, match="unexpected keyword argument 'sheds'.*seeds"):
        bench.run(methods="zero_shot", sheds=[1])
    with pytest.raises(UsageError, match="no results in"):
        bench.load(tmp_path / "nothing")


@pytest.mark.parametrize("keyword", ["set", "overrides"])
def test_api_takes_every_flag_by_its_name_and_set_as_its_destination_too(tmp_path, keyword):
    """The README: any `bench run` flag works as a keyword; --set is ``set=`` (its argparse
    destination, ``overrides=``, works too). A bad value proves the overrides arrived."""
    import bench
    from bench.base.errors import UsageError

    with pytest.raises(UsageError, match=r"alpha = 'banana': must be a number in \[0, 1\]"):
        bench.run(methods="clip_adapter_visual", datasets="demo_digits", shots=[1], seeds=[1],
                  output=tmp_path / "o", **{keyword: {"alpha": "banana"}})
    with pytest.raises(UsageError, match="lr = inf: must be a finite number"):
        bench.run(methods="coop", datasets="demo_digits", shots=[1], seeds=[1],
                  output=tmp_path / "o", **{keyword: ["coop.lr=.inf"]})
    assert not (tmp_path / "o").exists()


# --- the example package, installed into the venv (scripts/ci/setup-plugin.sh) ---------------

@needs_installed
def test_installed_example_runs_through_cli_and_api_beside_builtins(run_cli, miniroot,
                                                                     tmp_path):
    import bench

    code, out, _ = run_cli("ls", "methods")  # no --include: the entry point finds it
    assert code == 0 and "class_mean" in out and "[variants: fixed (default)" in out
    out_dir = tmp_path / "out"
    code, _, err = run_cli("run", "--methods", "zero_shot,class_mean", "--datasets", "dtd",
                           "--shots", "1", "--seeds", "1,2", "--data-root", miniroot,
                           "--backbone", TINY, "--pretrained", "none", "--output", out_dir,
                           "--quiet")
    assert code == 0, err
    df = bench.run(methods=["class_mean:search"], datasets="dtd", shots=[1], seeds=[1, 2],
                   output=out_dir, data_root=miniroot, backbone=TINY, pretrained="none")
    assert set(df["method"]) == {"class_mean:search"} and (df["n"] == 2).all()
    code, text, err = run_cli("report", out_dir, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    names = {r["method"]: r["method_name"] for r in rows}
    assert names["zero_shot"] == "Zero-shot CLIP"
    assert names["class_mean:fixed"] == "Class-mean + ZS"  # the default variant is named
    assert names["class_mean:search"] == "Class-mean + ZS (search)"
    assert all(r["n"] == "2" for r in rows)


def test_a_builtin_module_imported_by_a_plugin_keeps_its_own_source(run_cli, tmp_path,
                                                                     plugin_state):
    """A plugin that imports a built-in method module before the registry has loaded it must not
    be taken for that module's registrant (its entries would be dropped with the plugin's)."""
    import sys

    from methods import METHODS

    module = write_plugin(tmp_path / "p", "plug_imports")
    module.write_text("import methods.taskres  # noqa\n" + module.read_text())
    sys.modules.pop("methods.taskres", None)
    METHODS._entries.pop("taskres", None)
    plugin_state.include([tmp_path / "p"])
    plugin_state.load("method")
    assert METHODS.entry("taskres").source == "module methods.taskres"
    assert METHODS.entry("plug_imports").source.startswith("plugin ")
