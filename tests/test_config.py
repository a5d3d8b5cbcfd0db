"""Method config resolution: defaults <- per-dataset <- variant <- variant per-dataset <- --set."""

import pytest

import bench.config as config
from bench.config import MethodSpec, parse_overrides, resolve_method_config
from bench.base.errors import UsageError


@pytest.fixture()
def method_dir(tmp_path, monkeypatch):
    (tmp_path / "m.yaml").write_text(
        "default_variant: code\n"
        "defaults: {a: 1, b: 1, epochs: {by_shots: {1: 50, 2: 100, 8: 200}}}\n"
        "per_dataset: {d1: {a: 2}, d2: {epochs: 7}}\n"
        "variants:\n"
        "  code: {}\n"
        "  search: {a: search}\n"
        "  paper: {b: 3, per_dataset: {d1: {b: 4}}}\n")
    monkeypatch.setattr(config, "METHOD_CONFIG_DIR", tmp_path)
    monkeypatch.setattr(config, "_all_method_names", lambda: ["m"])
    return tmp_path


def test_layers_in_order(method_dir):
    assert resolve_method_config(MethodSpec("m"), "d0", 1) == ("code", {"a": 1, "b": 1, "epochs": 50})
    assert resolve_method_config(MethodSpec("m"), "d1", 4)[1] == {"a": 2, "b": 1, "epochs": 100}
    # A variant is more specific than the base per-dataset values ...
    assert resolve_method_config(MethodSpec("m", "search"), "d1", 16)[1]["a"] == "search"
    # ... and its own per-dataset values are more specific still.
    assert resolve_method_config(MethodSpec("m", "paper"), "d1", 16)[1] == {"a": 2, "b": 4, "epochs": 200}
    assert resolve_method_config(MethodSpec("m"), "d2", 16)[1]["epochs"] == 7
    assert resolve_method_config(MethodSpec("m", "paper"), "d0", 1, {"a": 9})[1]["a"] == 9


def test_unknown_variant_and_override_keys(method_dir):
    with pytest.raises(UsageError, match="Did you mean 'paper'"):
        resolve_method_config(MethodSpec("m", "papr"), "d0", 1)
    with pytest.raises(UsageError, match="unknown key 'c'"):
        resolve_method_config(MethodSpec("m"), "d0", 1, {"c": 1})
    assert parse_overrides(["a=0.5", "m.b=[1, 2]"], ["m"]) == {"m": {"a": 0.5, "b": [1, 2]}}
