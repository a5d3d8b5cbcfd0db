"""Method configs (YAML defaults, named variants, per-dataset values) and `--set` overrides.

A method file ``configs/methods/<name>.yaml`` has::

    description: one line
    default_variant: code          # optional
    defaults: {key: value, ...}    # the paper's/code's values, each commented with its source
    per_dataset: {imagenet: {...}} # optional, applied on top of defaults
    variants:                      # optional named variants (e.g. paper vs released code)
      paper: {key: value, per_dataset: {...}}

A value may be ``{by_shots: {1: 50, 2: 100, ...}}``: it resolves to the entry for the cell's shot
count (the largest key not above it). The resolved config and the variant go into every result.
"""

from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench.errors import UsageError
from configs import METHOD_CONFIG_DIR


def load_yaml(path: Path, what: str) -> dict:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UsageError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise UsageError(f"{what} {path} is a folder, not a YAML file") from None
    try:
        data = yaml.safe_load(text)
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
    return METHOD_CONFIG_DIR / f"{name}.yaml"


def load_method_file(name: str) -> dict:
    path = method_file(name)
    if not path.is_file():
        return {"defaults": {}}
    data = load_yaml(path, f"config of method {name!r}")
    unknown = set(data) - {"description", "default_variant", "defaults", "per_dataset", "variants"}
    if unknown:
        raise UsageError(f"{path}: unknown top-level keys {sorted(unknown)}")
    return data


def variants_of(name: str) -> list[str]:
    return sorted((load_method_file(name).get("variants") or {}).keys())


def _pick_by_shots(value, shots: int):
    table = {int(k): v for k, v in value["by_shots"].items()}
    eligible = [k for k in table if k <= shots]
    return table[max(eligible)] if eligible else table[min(table)]


def _resolve_values(cfg: dict, shots: int) -> dict:
    return {k: _pick_by_shots(v, shots) if isinstance(v, dict) and set(v) == {"by_shots"} else v
            for k, v in cfg.items()}


def resolve_method_config(spec: MethodSpec, dataset: str, shots: int,
                          overrides: dict | None = None) -> tuple[str | None, dict]:
    """The config a cell runs with: defaults <- per-dataset <- variant <- the variant's
    per-dataset values <- overrides (later wins)."""
    data = load_method_file(spec.name)
    variants = data.get("variants") or {}
    variant = spec.variant or data.get("default_variant")
    if variant is not None and variant not in variants:
        close = difflib.get_close_matches(variant, list(variants), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UsageError(f"method {spec.name!r} has no variant {variant!r}.{hint} "
                         f"Variants: {', '.join(sorted(variants)) or 'none'}")
    cfg = copy.deepcopy(data.get("defaults") or {})
    _apply(cfg, (data.get("per_dataset") or {}).get(dataset, {}),
           f"per-dataset values of {spec.name}", strict=False)
    if variant is not None:  # a variant is more specific than the base per-dataset values
        vcfg = copy.deepcopy(variants[variant] or {})
        per_dataset = vcfg.pop("per_dataset", None) or {}
        _apply(cfg, vcfg, f"variant {variant!r} of {spec.name}", strict=False)
        _apply(cfg, per_dataset.get(dataset, {}), f"per-dataset values of {spec.name}:{variant}",
               strict=False)
    if overrides:
        _apply(cfg, overrides, f"--set for method {spec.name!r}", strict=True)
    return variant, _resolve_values(cfg, shots)


def _apply(cfg: dict, values: dict, where: str, strict: bool) -> None:
    for key, value in values.items():
        if strict and key not in cfg:
            close = difflib.get_close_matches(key, list(cfg), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UsageError(f"{where}: unknown key {key!r}.{hint} Keys: {', '.join(sorted(cfg))}")
        cfg[key] = value


def parse_overrides(pairs: list[str], method_names: list[str]) -> dict[str, dict]:
    """``--set key=value`` / ``--set method.key=value`` into {method: {key: value}}.

    A bare key applies to every selected method whose config has it; it is an error when none
    has it. Values are parsed as YAML scalars (``0.2``, ``true``, ``[1, 2]``, ``search``).
    """
    out: dict[str, dict] = {m: {} for m in method_names}
    for pair in pairs:
        if "=" not in pair:
            raise UsageError(f"--set {pair!r}: expected key=value or method.key=value")
        key, raw = pair.split("=", 1)
        key = key.strip()
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        if "." in key and key.split(".", 1)[0] in _all_method_names():
            method, sub = key.split(".", 1)
            if method not in out:
                raise UsageError(f"--set {pair!r}: method {method!r} is not among the selected "
                                 f"methods ({', '.join(method_names)})")
            out[method][sub] = value
            continue
        targets = [m for m in method_names
                   if key in (load_method_file(m).get("defaults") or {})]
        if not targets:
            raise UsageError(f"--set {pair!r}: no selected method has a config key {key!r}; "
                             f"use method.key=value, see configs/methods/*.yaml")
        for m in targets:
            out[m][key] = value
    return out


def _all_method_names() -> list[str]:
    from methods import METHODS

    return METHODS.names()
