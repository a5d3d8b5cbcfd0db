"""Protocol facts of records (results/facts.py) and the ranking rule."""

from results.facts import facts_of, facts_tag, incomparable


def test_builtin_facts_follow_the_config():
    fixed = facts_of({"method": "clip_adapter_visual", "config": {"ratio": 0.2}})
    searched = facts_of({"method": "clip_adapter_visual", "config": {"ratio": "search"}})
    assert fixed["selection"] == "last" and searched["selection"] == "val"
    assert facts_of({"method": "zero_shot", "config": {}})["selection"] == "none"
    assert facts_of({"method": "coop", "config": {}}) == {
        "selection": "last", "label_set_dependent": False, "extra_data": []}


def test_undeclared_plugin_is_unknown_and_never_ranked():
    plugin = facts_of({"method": "my_method", "config": {}})
    coop = facts_of({"method": "coop", "config": {}})
    assert facts_tag(plugin) == "facts undeclared"
    assert incomparable(plugin, coop)


def test_declared_facts_decide_rankability():
    coop = facts_of({"method": "coop", "config": {}})
    on_test = facts_of({"method": "x", "facts": {"selection": "test"}})
    llm = facts_of({"method": "y", "facts": {"extra_data": ["llm_text"]}})
    val = facts_of({"method": "z", "facts": {"selection": "val"}})
    assert incomparable(coop, on_test, names=("coop", "x")) == ["x selects on the test set"]
    assert "extra data" in incomparable(coop, llm)[0]
    assert incomparable(coop, val) == []
    assert incomparable(coop, val, strict=True)


def test_every_builtin_method_has_facts():
    from methods import METHODS

    builtin = [e.name for e in METHODS.entries() if not e.source.startswith("plugin ")]
    assert {"coop", "clip_lora", "two_stage"} <= set(builtin)
    for name in builtin:
        assert facts_tag(facts_of({"method": name, "config": {}})) != "facts undeclared", name


def test_label_set_dependence_counts_only_where_label_sets_are_evaluated_apart():
    zero = {"method": "zero_shot", "config": {}}
    two = {"method": "two_stage", "config": {}}
    assert incomparable(facts_of(zero), facts_of(two)) == []  # few-shot: one branch for all
    b2n = [facts_of({**r, "protocol": "base2novel"}) for r in (zero, two)]
    assert incomparable(*b2n, names=("zero_shot", "2SFS")) == [
        "2SFS's inference depends on the evaluated label set"]


def test_records_carry_the_facts_and_a_plugin_declares_its_own(run_cli, miniroot, tmp_path,
                                                               plugin_state):
    """Every ok record holds its facts (the built-in table, or the method's registration
    ``facts=``); a plugin declaring test-set selection is not ranked against the others."""
    import json

    from tests.conftest import TINY
    from tests.test_plugins import METHOD_SRC, write_plugin

    path = write_plugin(tmp_path / "p", "plug_test_sel")
    path.write_text(METHOD_SRC.format(name="plug_test_sel", display="Chosen on test").replace(
        'description="a test plugin")', 'description="a test plugin", facts={"selection": "test"})'))
    out = tmp_path / "out"
    code, _, err = run_cli("run", "--include", path, "--methods", "zero_shot,plug_test_sel",
                           "--datasets", "dtd", "--shots", "1", "--seeds", "1,2", "--data-root",
                           miniroot, "--backbone", TINY, "--pretrained", "none", "--output",
                           out, "--quiet")
    assert code == 0, err
    recs = {r["method"]: r for r in (json.loads(p.read_text())
                                     for p in (out / "results").rglob("k*.json"))}
    assert recs["zero_shot"]["facts"] == {"selection": "none", "label_set_dependent": False,
                                          "extra_data": []}
    assert recs["plug_test_sel"]["facts"]["selection"] == "test"
    code, _, err = run_cli("compare", out, "--methods", "zero_shot,plug_test_sel")
    assert code == 2 and "selects on the test set" in err, err
