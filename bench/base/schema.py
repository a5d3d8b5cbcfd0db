"""Method config schemas: what each config key may hold, checked at plan time.

A method's YAML (``configs/methods/<name>.yaml``) declares one rule per config key under
``schema:``. A rule is a small mapping; every field is optional:

* ``type``: ``int``, ``number`` (int or float), ``bool``, ``str`` or ``list``;
* ``min`` / ``max``: inclusive bounds of a number; ``above``: an exclusive lower bound; a
  number must be finite whatever its bounds (``.inf``, ``.nan`` and ``1e999`` are refused);
* ``choices``: literal values that are allowed. With a ``type``, a value is fine when it is one
  of the choices *or* a value of that type within its bounds (``alpha: {type: number, min: 0,
  max: 1, choices: [search]}`` = a number in [0, 1] or 'search');
* ``nullable: true``: null (``~``) is allowed too;
* ``items`` (a rule) and ``min_items`` (a count): for a list, what each item must be;
* ``contains``: a text a string must contain (``"{}"`` for prompt templates).

The keys the core reads for any method (``feature_mode``, ``n_views``, ``fewshot_sampler``) have
fixed rules (:data:`CORE_RULES`) that apply whatever the method's YAML says.
"""

from __future__ import annotations

import math

from bench.base.errors import UsageError

TYPES = ("int", "number", "bool", "str", "list")
RULE_FIELDS = ("type", "min", "max", "above", "choices", "nullable", "items", "min_items", "contains")

# Read by the core (bench/views.py: resolve_views, bench/identity.py: sampler_of); the sampler
# names are datasets_registry.fewshot.SAMPLERS's (a test checks they agree; no torch import here).
CORE_RULES = {
    "feature_mode": {"choices": ["online", "cached"]},
    "n_views": {"type": "int", "min": 1},
    "fewshot_sampler": {"choices": ["dassl", "lpclip"]},
}


class ConfigError(UsageError):
    """A method config value (YAML, variant or ``--set``) that is not allowed (exit 2).

    Every method raises this type for a bad config value, whatever the method."""


def rule_problems(key: str, rule, where: str) -> list[str]:
    """What is wrong with the rule itself (a mistake in a method's YAML), as messages."""
    if not isinstance(rule, dict):
        return [f"{where}: schema of {key!r} must be a mapping such as {{type: int, min: 1}}"]
    out = []
    unknown = sorted(set(rule) - set(RULE_FIELDS))
    if unknown:
        out.append(f"{where}: schema of {key!r} has unknown field(s) {unknown}; "
                   f"fields: {', '.join(RULE_FIELDS)}")
    if "type" in rule and rule["type"] not in TYPES:
        out.append(f"{where}: schema of {key!r}: type {rule['type']!r} is not one of "
                   f"{', '.join(TYPES)}")
    if "type" not in rule and "choices" not in rule:
        out.append(f"{where}: schema of {key!r} needs a type or choices")
    if "items" in rule:
        out += rule_problems(f"{key}[]", rule["items"], where)
    return out


def _is_type(value, kind: str) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    return {"int": isinstance(value, int), "number": isinstance(value, (int, float)),
            "str": isinstance(value, str), "list": isinstance(value, list)}[kind]


def _in_bounds(value, rule: dict) -> bool:
    if not isinstance(value, (int, float)):
        return True
    if not math.isfinite(value):  # NaN, .inf, 1e999: no config value means them
        return False
    return (("min" not in rule or value >= rule["min"])
            and ("max" not in rule or value <= rule["max"])
            and ("above" not in rule or value > rule["above"]))


def expected(rule: dict) -> str:
    """The rule in words: 'a number in [0, 1] or 'search''."""
    parts = []
    kind = rule.get("type")
    if kind:
        noun = {"int": "an integer", "number": "a number", "bool": "true or false",
                "str": "a string", "list": "a list"}[kind]
        if "min" in rule and "max" in rule:
            noun += f" in [{rule['min']}, {rule['max']}]"
        elif "min" in rule:
            noun += f" >= {rule['min']}"
        elif "max" in rule:
            noun += f" <= {rule['max']}"
        if "above" in rule:
            noun += f" > {rule['above']}"
        if "contains" in rule:
            noun += f" containing {rule['contains']!r}"
        if kind == "list" and "items" in rule:
            noun += f" of {_plural(expected(rule['items']))}"
        if rule.get("min_items"):
            noun += f" (at least {rule['min_items']})"
        parts.append(noun)
    choices = [repr(c) for c in rule.get("choices") or []]
    if choices:
        parts.append(("one of " if len(choices) > 1 and not kind else "")
                     + ", ".join(choices))
    if rule.get("nullable"):
        parts.append("null")
    return " or ".join(parts)


def _plural(text: str) -> str:
    for single, many in (("an integer", "integers"), ("a number", "numbers"),
                         ("a string", "strings"), ("a list", "lists")):
        if text.startswith(single):
            return many + text[len(single):]
    return text


def check_value(value, rule: dict) -> str | None:
    """None when ``value`` satisfies ``rule``, else what was expected (in words)."""
    if value is None and rule.get("nullable"):
        return None
    if any(type(value) is type(c) and value == c for c in rule.get("choices") or []):
        return None
    kind = rule.get("type")
    if isinstance(value, float) and not math.isfinite(value) and kind in ("int", "number"):
        return expected(rule).replace("a number", "a finite number", 1)
    if kind and _is_type(value, kind) and _in_bounds(value, rule):
        if kind == "str" and "contains" in rule and rule["contains"] not in value:
            return expected(rule)
        if kind == "list":
            if len(value) < int(rule.get("min_items") or 0):
                return expected(rule)
            for i, item in enumerate(value):
                bad = check_value(item, rule["items"]) if "items" in rule else None
                if bad:
                    return f"{expected(rule)} (item {i + 1}, {item!r}, is not {bad})"
        return None
    return expected(rule)


def check_config(config: dict, schema: dict) -> list[tuple[str, object, str]]:
    """(key, value, expected) for every value of ``config`` its rule refuses; keys without a
    rule are not checked (a method without a schema is checked on the core keys only)."""
    rules = {**(schema or {}), **CORE_RULES}
    out = []
    for key, value in config.items():
        rule = rules.get(key)
        if rule is not None:
            bad = check_value(value, rule)
            if bad:
                out.append((key, value, bad))
    return out
