"""Method config schemas: the rule language, every built-in method's schema, and the plan-time
check of `bench run --dry-run` (every bad value in one message, exit 2, nothing written)."""

from __future__ import annotations

import pytest

from bench.config import MethodSpec, load_method_file, method_schema, resolve_method_config
from bench.base.schema import CORE_RULES, ConfigError, check_config, check_value, expected

BUILT_IN = ["zero_shot", "linear_probe", "coop", "clip_adapter_visual", "clip_adapter_text",
            "clip_adapter_both"]
RUN = ["run", "--dry-run", "--quiet", "--datasets", "demo_digits", "--shots", "1,2",
       "--seeds", "1"]


@pytest.mark.parametrize("value, rule, ok", [
    (0.5, {"type": "number", "min": 0, "max": 1, "choices": ["search"]}, True),
    ("search", {"type": "number", "min": 0, "max": 1, "choices": ["search"]}, True),
    ("banana", {"type": "number", "min": 0, "max": 1, "choices": ["search"]}, False),
    (7, {"type": "number", "min": 0, "max": 1, "choices": ["search"]}, False),
    (float("nan"), {"type": "number", "min": 0}, False),
    (True, {"type": "int", "min": 0}, False),        # a bool is not an integer
    (1, {"type": "bool"}, False),
    (3.0, {"type": "int"}, False),
    (0, {"type": "number", "above": 0}, False),
    (None, {"type": "int", "nullable": True}, True),
    (None, {"type": "int"}, False),
    ([0.2, 0.4], {"type": "list", "items": {"type": "number", "max": 1}, "min_items": 1}, True),
    ([], {"type": "list", "items": {"type": "number"}, "min_items": 1}, False),
    ([0.2, 4], {"type": "list", "items": {"type": "number", "max": 1}}, False),
    (["a {}"], {"type": "list", "items": {"type": "str", "contains": "{}"}}, True),
    (["a"], {"type": "list", "items": {"type": "str", "contains": "{}"}}, False),
    ("middle", {"choices": ["end", "middle"]}, True),
    ("mid", {"choices": ["end", "middle"]}, False),
])
def test_rule_language(value, rule, ok):
    assert (check_value(value, rule) is None) == ok


def test_rules_in_words():
    assert expected({"type": "number", "min": 0, "max": 1, "choices": ["search"]}) == \
        "a number in [0, 1] or 'search'"
    assert expected({"type": "int", "min": 1}) == "an integer >= 1"
    assert expected({"choices": ["online", "cached"]}) == "one of 'online', 'cached'"
    assert expected({"type": "int", "min": 1, "nullable": True}) == "an integer >= 1 or null"


@pytest.mark.parametrize("method", BUILT_IN)
def test_every_built_in_method_has_a_complete_schema_its_configs_pass(method):
    data = load_method_file(method)
    schema = method_schema(method)
    assert set(data["defaults"]) <= set(schema), "a default key without a rule"
    for variant in [None, *(data.get("variants") or {})]:
        for dataset in ["imagenet", "dtd", "demo_digits"]:
            for shots in (1, 16):
                _, cfg = resolve_method_config(MethodSpec(method, variant), dataset, shots)
                assert check_config(cfg, schema) == [], (variant, dataset, shots)


def test_schema_choices_agree_with_the_code():
    from datasets_registry.fewshot import SAMPLERS
    from methods.coop import POSITIONS, PRECISIONS
    from methods.linear_probe import SOLVERS
    from bench.views import FEATURE_MODES

    assert set(CORE_RULES["fewshot_sampler"]["choices"]) == set(SAMPLERS)
    assert set(CORE_RULES["feature_mode"]["choices"]) == set(FEATURE_MODES)
    coop = method_schema("coop")
    assert set(coop["precision"]["choices"]) == set(PRECISIONS)
    assert set(coop["class_token_position"]["choices"]) == set(POSITIONS)
    assert set(method_schema("linear_probe")["solver"]["choices"]) == set(SOLVERS)


def test_core_keys_are_checked_even_without_a_method_rule():
    bad = check_config({"feature_mode": "offline", "n_views": 0, "fewshot_sampler": "x"}, {})
    assert [k for k, _, _ in bad] == ["feature_mode", "n_views", "fewshot_sampler"]


def test_dry_run_reports_every_bad_value_at_once(run_cli, tmp_path):
    out = tmp_path / "out"
    code, stdout, err = run_cli(*RUN, "--output", out, "--methods", "coop,clip_adapter*,linear_probe",
                                "--set", "alpha=banana", "--set", "epochs=-5",
                                "--set", "alfa=0.3", "--set", "feature_mode=offline",
                                "--set", "linear_probe.solver=adam",
                                "--set", "coop.epochs={by_shots: {1: 5, 2: oops}}")
    assert code == 2 and stdout == ""
    assert err.count("bench: error:") == 1 and "Traceback" not in err
    assert "bad config values; nothing was run" in err
    assert "clip_adapter_visual, clip_adapter_both: alpha = 'banana': must be a number in " \
           "[0, 1] or 'search'" in err
    assert "clip_adapter_visual, clip_adapter_text, clip_adapter_both: epochs = -5: must be " \
           "an integer >= 1" in err
    assert "coop: epochs = 'oops' (shots 2): must be an integer >= 1" in err
    assert "no selected method has a config key 'alfa'. Did you mean 'alpha'?" in err
    assert "feature_mode = 'offline': must be one of 'online', 'cached'" in err
    assert "linear_probe: solver = 'adam': must be one of 'torch', 'sklearn'" in err
    assert not out.exists()  # nothing written, no image read


@pytest.mark.parametrize("setting, words", [
    ("alpha=7", "alpha = 7: must be a number in [0, 1] or 'search'"),
    ("coop.epoch=3", "method 'coop': unknown key 'epoch'. Did you mean 'epochs'?"),
    ("n_views=0", "n_views = 0: must be an integer >= 1"),
    ("templates=[no class slot]", "must be a list of strings containing '{}'"),
    ("coop.precision=fp8", "precision = 'fp8': must be one of 'auto', 'fp32'"),
])
def test_single_bad_values(run_cli, tmp_path, setting, words):
    code, _, err = run_cli(*RUN, "--output", tmp_path / "o", "--set", setting)
    assert code == 2 and words in err and "1 bad config value;" in err


def test_good_values_pass_and_exponents_are_numbers(run_cli, tmp_path):
    code, _, err = run_cli(*RUN, "--output", tmp_path / "o", "--methods", "coop",
                           "--set", "lr=1e-3", "--set", "feature_mode=cached",
                           "--set", "ctx_init=null")
    assert code == 0, err
    from bench.config import parse_overrides

    assert parse_overrides(["lr=1e-3"], ["coop"]) == {"coop": {"lr": 0.001}}


def test_config_errors_of_methods_share_one_type():
    from methods._training import OptimConfig
    from methods.zero_shot import resolve_templates

    assert issubclass(ConfigError, __import__("bench.base.errors").base.errors.UsageError)
    with pytest.raises(ConfigError):
        resolve_templates("nope", ["a {}"])
    with pytest.raises(ConfigError):
        OptimConfig.from_config({"lr": 0.1})


def test_a_broken_schema_in_a_method_yaml_is_named(tmp_path, monkeypatch):
    import bench.config as config

    (tmp_path / "m.yaml").write_text("defaults: {a: 1, b: 2}\nschema:\n  a: {type: integr}\n")
    monkeypatch.setattr(config, "METHOD_CONFIG_DIR", tmp_path)
    with pytest.raises(Exception) as info:
        config.load_method_file("m")
    assert "type 'integr' is not one of" in str(info.value)
    assert "schema has no rule for ['b']" in str(info.value)
