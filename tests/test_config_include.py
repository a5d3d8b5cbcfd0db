"""YAML ``include:`` in method configs (bench/config.py), and the three CLIP-Adapter YAMLs
sharing one base through it without any resolved config changing."""

import subprocess
from pathlib import Path

import pytest
import yaml

import bench.config as config
from bench.cli import main
from bench.config import MethodSpec, load_method_file, resolve_method_config
from bench.base.errors import UsageError

REPO = Path(__file__).resolve().parent.parent
# The last commit with the three CLIP-Adapter YAMLs written out in full (before `include:`).
BEFORE_INCLUDE = "56171970d3ec3175177bfa6cc196bcb18b2423f0"
CLIP_ADAPTERS = ("clip_adapter_visual", "clip_adapter_text", "clip_adapter_both")
DATASETS = ("imagenet", "caltech101", "dtd", "eurosat", "oxford_pets", "stanford_cars",
            "oxford_flowers", "food101", "fgvc_aircraft", "ucf101", "sun397", "demo_digits",
            "demo_sketches", "demo_glyphs", "demo_textures", "demo_signs", "some_plugin_set")


@pytest.fixture(scope="module")
def before(tmp_path_factory):
    """The three YAMLs as they were before the change, from git (not copied by hand)."""
    folder = tmp_path_factory.mktemp("before")
    for name in CLIP_ADAPTERS:
        try:
            text = subprocess.run(
                ["git", "show", f"{BEFORE_INCLUDE}:configs/methods/{name}.yaml"], cwd=REPO,
                capture_output=True, text=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError):
            pytest.skip("the git history with the pre-include YAMLs is not available here")
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(_without_demo_overrides(
            yaml.safe_load(text))))
    return folder


def _without_demo_overrides(data: dict) -> dict:
    """The demo-only per-dataset ratios were removed on purpose later (issue 20: the demo runs
    every method's real defaults); the include change must leave everything else as it was."""
    for section in [data, *(data.get("variants") or {}).values()]:
        per = section.get("per_dataset")
        if isinstance(per, dict):
            for ds in [d for d in per if d.startswith("demo_")]:
                del per[ds]
            if not per:
                del section["per_dataset"]
    return data


def _everything(name):
    """The loaded file and every resolved (variant, dataset, shots) config of a method. The
    ``protocols`` blocks came later (issue 27) and never change a few-shot config."""
    data = {k: v for k, v in load_method_file(name).items() if k != "protocols"}
    resolved = {(variant, ds, shots): resolve_method_config(MethodSpec(name, variant), ds, shots)
                for variant in [None, *sorted(data.get("variants") or {})]
                for ds in DATASETS for shots in (1, 2, 4, 8, 16)}
    return data, resolved


@pytest.mark.parametrize("name", CLIP_ADAPTERS)
def test_clip_adapter_configs_unchanged_by_include(before, monkeypatch, name):
    now = _everything(name)
    assert "include" in yaml.safe_load((REPO / "configs" / "methods" / f"{name}.yaml").read_text())
    monkeypatch.setattr(config, "METHOD_CONFIG_DIR", before)
    then = _everything(name)
    assert now[0] == then[0]  # description, defaults, per_dataset, variants, schema: all equal
    assert now[1] == then[1]
    assert len(now[1]) == 17 * 5 * 4  # default + code, paper, search


@pytest.fixture()
def method_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "METHOD_CONFIG_DIR", tmp_path)
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "common.yaml").write_text(
        "description: base\n"
        "default_variant: code\n"
        "defaults: {lr: 0.1, epochs: {by_shots: {1: 50, 8: 200}}, wd: 0.0}\n"
        "per_dataset: {d1: {lr: 0.2, wd: 0.5}}\n"
        "variants:\n"
        "  code: {}\n"
        "  paper: {lr: 0.01, per_dataset: {d1: {lr: 0.02}, d2: {wd: 1.0}}}\n"
        "schema: {lr: {type: number}, epochs: {type: int}, wd: {type: number}}\n")
    return tmp_path


def test_include_extends_and_overrides(method_dir):
    (method_dir / "m.yaml").write_text(
        "include: base/common.yaml\n"
        "description: mine\n"
        "defaults: {alpha: 0.5, epochs: 3}\n"
        "per_dataset: {d1: {alpha: 0.6}}\n"
        "variants:\n"
        "  paper: {alpha: 0.7, per_dataset: {d1: {alpha: 0.8}}}\n"
        "  search: {alpha: search}\n"
        "schema: {alpha: {type: number, choices: [search]}}\n")
    data = load_method_file("m")
    assert data["description"] == "mine" and "include" not in data
    assert data["defaults"] == {"lr": 0.1, "epochs": 3, "wd": 0.0, "alpha": 0.5}
    assert data["per_dataset"] == {"d1": {"lr": 0.2, "wd": 0.5, "alpha": 0.6}}
    assert data["variants"] == {
        "code": {}, "search": {"alpha": "search"},
        "paper": {"lr": 0.01, "alpha": 0.7,
                  "per_dataset": {"d1": {"lr": 0.02, "alpha": 0.8}, "d2": {"wd": 1.0}}}}
    assert set(data["schema"]) == {"lr", "epochs", "wd", "alpha"}
    assert resolve_method_config(MethodSpec("m", "paper"), "d1", 1)[1] == {
        "lr": 0.02, "epochs": 3, "wd": 0.5, "alpha": 0.8}


def test_a_value_is_replaced_whole_not_merged(method_dir):
    (method_dir / "m.yaml").write_text(
        "include: base/common.yaml\ndefaults: {epochs: {by_shots: {1: 10}}}\n")
    assert load_method_file("m")["defaults"]["epochs"] == {"by_shots": {1: 10}}


def test_includes_nest_and_a_list_applies_in_order(method_dir):
    (method_dir / "base" / "mid.yaml").write_text(
        "include: common.yaml\ndefaults: {lr: 0.3}\n")  # relative to base/, not to m.yaml
    (method_dir / "other.yaml").write_text("defaults: {lr: 0.4, extra: 1}\n"
                                           "schema: {extra: {type: int}}\n")
    (method_dir / "m.yaml").write_text("include: [base/mid.yaml, other.yaml]\n")
    assert load_method_file("m")["defaults"] == {"lr": 0.4, "epochs": {"by_shots": {1: 50, 8: 200}},
                                                 "wd": 0.0, "extra": 1}
    (method_dir / "m.yaml").write_text("include: [other.yaml, base/mid.yaml]\n")
    assert load_method_file("m")["defaults"]["lr"] == 0.3


@pytest.mark.parametrize("files, needle", [
    ({"m.yaml": "include: nope.yaml\n"}, "included file 'nope.yaml' not found"),
    ({"m.yaml": "include: m.yaml\n"}, "include cycle m.yaml -> m.yaml"),
    ({"m.yaml": "include: a.yaml\n", "a.yaml": "include: m.yaml\n"},
     "include cycle m.yaml -> a.yaml -> m.yaml"),
    ({"m.yaml": "include: 3\n"}, "include must be a YAML path"),
    ({"m.yaml": "include: [a.yaml, '']\n", "a.yaml": "{}\n"}, "include must be a YAML path"),
    ({"m.yaml": "include: a.yaml\n", "a.yaml": "defualts: {}\n"},
     "unknown top-level key 'defualts'. Did you mean 'defaults'?"),
    ({"m.yaml": "includes: a.yaml\n"}, "Did you mean 'include'?"),
    ({"m.yaml": "include: a.yaml\n", "a.yaml": "defaults: [\n"}, "is not valid YAML"),
])
def test_bad_includes_are_one_clear_line(method_dir, files, needle):
    for name, text in files.items():
        (method_dir / name).write_text(text)
    with pytest.raises(UsageError) as err:
        load_method_file("m")
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_bad_include_through_the_cli_exits_2(tmp_path, monkeypatch, capsys):
    plugin = tmp_path / "plug"
    plugin.mkdir()
    (plugin / "clip_adapter_visual.yaml").write_text("include: missing.yaml\n")
    monkeypatch.setattr(config, "METHOD_CONFIG_DIR", plugin)
    code = main(["run", "--methods", "clip_adapter_visual", "--datasets", "demo_digits",
                 "--dry-run", "--output", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "included file 'missing.yaml' not found" in err and "Traceback" not in err
