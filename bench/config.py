"""Method configs (YAML defaults, named variants, per-dataset values) and `--set` overrides.

A method file ``configs/methods/<name>.yaml`` has::

    description: one line
    default_variant: code          # optional
    defaults: {key: value, ...}    # the paper's/code's values, each commented with its source
    per_dataset: {imagenet: {...}} # optional, applied on top of defaults
    variants:                      # optional named variants (e.g. paper vs released code)
      paper: {key: value, per_dataset: {...}}
    schema: {key: rule, ...}       # what each key may hold (bench/base/schema.py), checked at plan time
    include: _base.yaml            # optional, or a list: files (relative to this one's folder)
                                   # this file extends and overrides; see merge_method_files

    protocols:                     # optional: the release's settings under another protocol
      base2novel:                  # (bench.protocols: base2novel, domain, crossdataset)
        source: "owner/repo@commit path/to/script.sh ..."   # where the values come from
        release_script: true       # false: the release has no script for it (few-shot config)
        epochs: 100                # values, as in a variant
        per_dataset: {imagenet: {epochs: 50}}

A value may be ``{by_shots: {1: 50, 2: 100, ...}}``: it resolves to the entry for the cell's shot
count (the largest key not above it). The resolved config and the variant go into every result;
a cell of another protocol also records which protocol block it got (:func:`protocol_config`).
The few-shot protocol never reads a ``protocols`` block.
"""

from __future__ import annotations

import copy
import functools
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench.base.errors import UsageError, did_you_mean
from bench.protocols import PROTOCOLS
from bench.base.schema import ConfigError, check_config, rule_problems
from configs import METHOD_CONFIG_DIR

__all__ = ["ConfigError", "MethodSpec", "check_config", "load_method_file", "method_schema",
           "parse_overrides", "protocol_config", "resolve_method_config"]


def load_yaml(path: Path, what: str) -> dict:
    """The mapping in a YAML file (a fresh copy: callers may change it). Parsed once per
    process while the file is unchanged: a report resolves every record's config from its
    method file, and parsing the YAML for each of 450 records took 5 s."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise UsageError(f"{what} {path} does not exist") from None
    if path.is_dir():
        raise UsageError(f"{what} {path} is a folder, not a YAML file")
    return copy.deepcopy(_parsed_yaml(str(path), st.st_mtime_ns, st.st_size, what))


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """YAML's safe loader, refusing a mapping that gives a key twice (YAML requires unique keys;
    PyYAML would keep the last value without a word)."""


def _unique_mapping(loader, node):
    lines: dict = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # '<<: *base' may be overridden
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            first = lines.get(key)
            lines.setdefault(key, key_node.start_mark.line + 1)
        except TypeError:  # an unhashable key: the constructor below says what is wrong
            continue
        if first is not None:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} is given twice (first at line {first}); keep one",
                key_node.start_mark)
    return (yield from loader.construct_yaml_map(node))


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


@functools.lru_cache(maxsize=256)
def _parsed_yaml(path: str, mtime_ns: int, size: int, what: str) -> dict:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{what} {path} does not exist") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{what} {path} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} "
                         f"at offset {exc.start}); save it as UTF-8") from None
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise UsageError(f"{what} {path} is not valid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"{what} {path} must be a mapping of keys to values, "
                         f"not a {type(data).__name__}")
    return data


@dataclass(frozen=True)
class MethodSpec:
    """A method name plus an optional variant, written ``name`` or ``name:variant``."""

    name: str
    variant: str | None = None

    @property
    def label(self) -> str:
        return f"{self.name}:{self.variant}" if self.variant else self.name


def method_file(name: str) -> Path:
    """``configs/methods/<name>.yaml``; for a plugin's method, its YAML found by
    ``bench.base.plugins.find_config`` (a built-in config always wins). The built-in path when
    neither exists."""
    path = METHOD_CONFIG_DIR / f"{name}.yaml"
    if not path.is_file():
        from bench.base.plugins import find_config

        return find_config(name) or path
    return path


TOP_LEVEL_KEYS = ("include", "description", "default_variant", "defaults", "per_dataset",
                  "variants", "schema", "protocols")
# the protocols a method file can give settings for (all but "fewshot", the protocol the defaults
# are), and the keys of such a block that are not config values
BLOCK_PROTOCOLS = tuple(p for p in PROTOCOLS if p != "fewshot")
BLOCK_META = ("source", "release_script", "per_dataset")


def load_method_file(name: str) -> dict:
    """The method's YAML with its ``include:`` files merged in (see :func:`merge_method_files`)."""
    path = method_file(name)
    if not path.is_file():
        return {"defaults": {}}
    data = _load_with_includes(path, f"config of method {name!r}", ())
    if "schema" in data:
        _check_schema(path, data)
    if "protocols" in data:
        _check_protocols(path, data)
    return data


def _load_with_includes(path: Path, what: str, chain: tuple[Path, ...]) -> dict:
    """``path``'s mapping over the files it includes, in order (later wins); ``chain`` holds
    the files that include this one, to report a cycle instead of recursing forever."""
    data = load_yaml(path, what)
    unknown = [key for key in data if key not in TOP_LEVEL_KEYS]
    if unknown:
        raise UsageError(f"{path}: unknown top-level key {unknown[0]!r}."
                         f"{did_you_mean(unknown[0], TOP_LEVEL_KEYS)} "
                         f"Known keys: {', '.join(TOP_LEVEL_KEYS)}")
    includes = data.pop("include", None)
    if includes is None:
        return data
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list) or not all(isinstance(i, str) and i for i in includes):
        raise UsageError(f"{path}: include must be a YAML path relative to this file's folder, or "
                         f"a list of them (include: _base.yaml), not {includes!r}")
    chain = chain + (path.resolve(),)
    merged: dict = {}
    for rel in includes:
        target = path.parent / rel
        if not target.is_file():
            raise UsageError(f"{path}: included file {rel!r} not found (looked for {target}; "
                             f"include paths are relative to the including file's folder)")
        if target.resolve() in chain:
            cycle = " -> ".join(p.name for p in chain + (target.resolve(),))
            raise UsageError(f"{path}: include cycle {cycle}; a file must not include itself, "
                             f"directly or through others")
        base = _load_with_includes(target, f"file {rel!r} included by {path}", chain)
        merged = merge_method_files(merged, base)
    return merge_method_files(merged, data)


def merge_method_files(base: dict, over: dict) -> dict:
    """``over`` on top of ``base``: ``defaults`` and ``schema`` key by key, ``per_dataset``
    dataset by dataset and then key by key, ``variants`` variant by variant, then key by key
    (a variant's ``per_dataset`` as above). A value itself (``{by_shots: ...}``, a schema rule)
    is replaced whole, never merged."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if key == "variants" and isinstance(value, dict) and isinstance(out.get(key), dict):
            for name, variant in value.items():
                out[key][name] = _merge_variant(out[key].get(name), variant)
        else:
            out[key] = _update(out.get(key), value, _MERGE_DEPTH.get(key, 0))
    return out


_MERGE_DEPTH = {"defaults": 1, "schema": 1, "per_dataset": 2, "protocols": 2}


def _merge_variant(base, over):
    if not isinstance(base, dict) or not isinstance(over, dict):
        return copy.deepcopy(over)
    merged = _update(base, {k: v for k, v in over.items() if k != "per_dataset"}, 1)
    if "per_dataset" in over:
        merged["per_dataset"] = _update(base.get("per_dataset"), over["per_dataset"], 2)
    return merged


def _update(base, over, depth: int):
    """``over`` merged into a copy of ``base`` down to ``depth`` levels of mappings; below that
    (or where either side is not a mapping) ``over`` replaces."""
    if depth == 0 or not isinstance(base, dict) or not isinstance(over, dict):
        return copy.deepcopy(over)
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = _update(out[key], value, depth - 1) if key in out else copy.deepcopy(value)
    return out


def _check_schema(path: Path, data: dict) -> None:
    """A schema must be well formed and give a rule for every key of the method's defaults."""
    schema = data["schema"]
    if not isinstance(schema, dict):
        raise UsageError(f"{path}: schema must be a mapping of config keys to rules")
    problems = [p for key, rule in schema.items() for p in rule_problems(key, rule, str(path))]
    missing = sorted(set(data.get("defaults") or {}) - set(schema))
    if missing:
        problems.append(f"{path}: schema has no rule for {missing}; add one per key "
                        f"(see docs/extending.md, 'Config schema')")
    if problems:
        raise UsageError("; ".join(problems))


def _check_protocols(path: Path, data: dict) -> None:
    """Each block names a protocol other than the few-shot one, says where its values come from,
    and sets only keys the method's defaults have."""
    blocks = data["protocols"]
    if not isinstance(blocks, dict):
        raise UsageError(f"{path}: protocols must map protocol names to blocks "
                         f"(protocols: {{base2novel: {{source: ..., epochs: 100}}}})")
    known = set(data.get("defaults") or {})
    problems = []
    for protocol, block in blocks.items():
        where = f"{path}: protocols.{protocol}"
        if protocol not in BLOCK_PROTOCOLS:
            problems.append(f"{where}: not a protocol with its own settings; choose among "
                            f"{', '.join(BLOCK_PROTOCOLS)} (the defaults are the few-shot ones)"
                            f"{did_you_mean(str(protocol), BLOCK_PROTOCOLS)}")
            continue
        if not isinstance(block, dict):
            problems.append(f"{where} must be a mapping with source: and the values it sets")
            continue
        if not isinstance(block.get("source"), str) or not block["source"].strip():
            problems.append(f"{where}: source must say where the values come from (the "
                            f"release's script at a commit, or that it has none)")
        if not isinstance(block.get("release_script"), bool):
            problems.append(f"{where}: release_script must be true or false (false: the release "
                            f"has no script for this protocol, the few-shot config applies)")
        per_dataset = block.get("per_dataset") or {}
        if not isinstance(per_dataset, dict) or not all(isinstance(v, dict)
                                                        for v in per_dataset.values()):
            problems.append(f"{where}.per_dataset must map dataset names to values")
            per_dataset = {}
        keys = [k for k in block if k not in BLOCK_META]
        keys += [k for values in per_dataset.values() for k in values]
        for key in dict.fromkeys(keys):
            if key not in known:
                problems.append(f"{where}: unknown key {key!r}.{did_you_mean(key, known)} "
                                f"A block sets keys of the method's defaults")
    if problems:
        raise UsageError("; ".join(problems))


def protocol_block(data: dict, protocol: str) -> dict | None:
    """The ``protocols`` block of a loaded method file for ``protocol`` (None: none, and always
    for the few-shot protocol, whose settings are the defaults)."""
    if protocol in (None, "fewshot"):
        return None
    return (data.get("protocols") or {}).get(protocol)


def protocol_config(name: str, protocol: str) -> dict | None:
    """What a cell of ``protocol`` records about its method's settings: the block applied and its
    source; for a method file without one, that the few-shot config applies. None for the
    few-shot protocol (its cells carry nothing new, so their identity is unchanged)."""
    if protocol in (None, "fewshot"):
        return None
    block = protocol_block(load_method_file(name), protocol)
    if block is None:
        return {"protocol": protocol, "block": False, "release_script": False,
                "source": f"no protocols.{protocol} block in {method_file(name).name}: "
                          f"the few-shot config"}
    return {"protocol": protocol, "block": True, "release_script": block["release_script"],
            "source": block["source"].strip()}


def method_schema(name: str) -> dict:
    """The ``schema:`` rules of a method ({} when its YAML declares none)."""
    return load_method_file(name).get("schema") or {}


def method_keys(name: str) -> set[str]:
    """Every key a config of the method can have (defaults and variants)."""
    data = load_method_file(name)
    keys = set(data.get("defaults") or {})
    for values in (data.get("variants") or {}).values():
        keys |= set(values or {}) - {"per_dataset"}
    return keys


def variants_of(name: str) -> list[str]:
    return sorted((load_method_file(name).get("variants") or {}).keys())


def _pick_by_shots(value, shots: int, key: str = "?"):
    table = value["by_shots"]
    if not isinstance(table, dict) or not table or not all(
            isinstance(k, int) and not isinstance(k, bool) for k in table):
        raise ConfigError(f"{key}: by_shots must map shot counts to values, e.g. "
                          f"{{by_shots: {{1: 50, 8: 200}}}}, not {table!r}")
    table = {int(k): v for k, v in table.items()}
    eligible = [k for k in table if k <= shots]
    return table[max(eligible)] if eligible else table[min(table)]


def _resolve_values(cfg: dict, shots: int) -> dict:
    return {k: _pick_by_shots(v, shots, k) if isinstance(v, dict) and set(v) == {"by_shots"}
            else v for k, v in cfg.items()}


def resolve_method_config(spec: MethodSpec, dataset: str, shots: int,
                          overrides: dict | None = None,
                          protocol: str = "fewshot") -> tuple[str | None, dict]:
    """The config a cell runs with: defaults <- per-dataset <- the ``protocol``'s block <- its
    per-dataset values <- variant <- the variant's per-dataset values <- overrides (later wins).
    The few-shot protocol has no block: its resolution is the defaults'."""
    data = load_method_file(spec.name)
    variants = data.get("variants") or {}
    variant = spec.variant or data.get("default_variant")
    if variant is not None and variant not in variants:
        raise ConfigError(f"method {spec.name!r} has no variant {variant!r}."
                          f"{did_you_mean(variant, variants)} "
                          f"Variants: {', '.join(sorted(variants)) or 'none'}")
    cfg = copy.deepcopy(data.get("defaults") or {})
    _apply(cfg, (data.get("per_dataset") or {}).get(dataset, {}),
           f"per-dataset values of {spec.name}", strict=False)
    block = protocol_block(data, protocol)
    if block is not None:  # the release's settings for this protocol replace the few-shot ones
        _apply(cfg, {k: v for k, v in block.items() if k not in BLOCK_META},
               f"protocols.{protocol} of {spec.name}", strict=False)
        _apply(cfg, (block.get("per_dataset") or {}).get(dataset, {}),
               f"protocols.{protocol}.per_dataset of {spec.name}", strict=False)
    if variant is not None:  # a variant is more specific than the base per-dataset values
        vcfg = copy.deepcopy(variants[variant] or {})
        per_dataset = vcfg.pop("per_dataset", None) or {}
        _apply(cfg, vcfg, f"variant {variant!r} of {spec.name}", strict=False)
        _apply(cfg, per_dataset.get(dataset, {}), f"per-dataset values of {spec.name}:{variant}",
               strict=False)
    if overrides:
        _apply(cfg, overrides, f"--set for method {spec.name!r}", strict=True,
               known=set(cfg) | method_keys(spec.name))
    return variant, _resolve_values(cfg, shots)


def _apply(cfg: dict, values: dict, where: str, strict: bool, known=None) -> None:
    """``strict``: every key must be ``known`` (default: a key of ``cfg``); a key that only a
    variant sets (GDA's ``solve_dtype``) is known to ``--set`` too."""
    known = set(cfg) if known is None else known
    unknown = [key for key in values if strict and key not in known]
    if unknown:
        raise ConfigError("; ".join(f"{where}: unknown key {key!r}.{did_you_mean(key, known)} "
                                    f"Keys: {', '.join(sorted(known))}" for key in unknown))
    cfg.update(values)


_EXPONENT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _scalar(raw: str):
    """A ``--set`` value as YAML reads it, except that ``1e-5`` is a number (YAML 1.1 reads
    exponents without a dot as strings)."""
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        return raw
    if isinstance(value, str) and _EXPONENT.fullmatch(value.strip()):
        return float(value)
    return value


def parse_overrides(pairs: list[str], method_names: list[str],
                    problems: list[str] | None = None) -> dict[str, dict]:
    """``--set key=value`` / ``--set method.key=value`` into {method: {key: value}}.

    A bare key applies to every selected method whose config has it; it is an error when none
    has it. Values are parsed as YAML scalars (``0.2``, ``true``, ``[1, 2]``, ``search``).
    With a ``problems`` list, each bad pair is appended there (and left out) instead of raising
    at the first, so that the planner reports them together with the bad values.
    """
    found: list[str] = []
    out: dict[str, dict] = {m: {} for m in method_names}
    for pair in pairs:
        if "=" not in pair:
            found.append(f"--set {pair!r}: expected key=value or method.key=value")
            continue
        key, raw = pair.split("=", 1)
        key = key.strip()
        value = _scalar(raw)
        if "." in key and key.split(".", 1)[0] in _all_method_names():
            method, sub = key.split(".", 1)
            if method not in out:
                found.append(f"--set {pair!r}: method {method!r} is not among the selected "
                             f"methods ({', '.join(method_names)})")
            elif sub not in method_keys(method):
                found.append(f"--set {pair!r}: method {method!r}: unknown key "
                             f"{sub!r}.{did_you_mean(sub, method_keys(method))} "
                             f"Keys: {', '.join(sorted(method_keys(method)))}")
            else:
                out[method][sub] = value
            continue
        targets = [m for m in method_names if key in method_keys(m)]
        if not targets:
            known = set().union(*(method_keys(m) for m in method_names)) if method_names else ()
            found.append(f"--set {pair!r}: no selected method has a config key {key!r}."
                         f"{did_you_mean(key, known)} Use method.key=value for one method; "
                         f"keys are listed in configs/methods/<method>.yaml")
        for m in targets:
            out[m][key] = value
    if problems is not None:
        problems += found
    elif found:
        raise ConfigError("; ".join(found))
    return out


def _all_method_names() -> list[str]:
    from methods import METHODS

    return METHODS.names()
