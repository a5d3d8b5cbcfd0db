"""Names, display names, order and descriptions of the registered methods, without importing them.

Method modules import torch at the top (seconds of start-up), but `bench ls methods` and
`bench report` only need what each ``@METHODS.register(...)`` decorator says. This module reads
those decorators from the source with ``ast``: literal arguments only. When a module registers a
method with a non-literal name, display name, order or description, or cannot be parsed, it
falls back to the real registry (correct, only slower). Plugin modules (``bench.base.plugins``:
``--include`` files and installed packages' entry points) are read the same way.
tests/test_cli_startup.py and tests/test_plugins.py check that both give the same entries.
"""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import dataclass
from pathlib import Path

_FIELDS = ("display_name", "order", "description", "family")
# The method families, in the order tables group them (registrations say ``family=...``;
# a method without one, a plugin say, is listed after them).
FAMILIES = ("zero-shot", "linear probe", "adapter", "cache model", "prompt learning",
            "encoder tuning")


@dataclass(frozen=True)
class MethodInfo:
    name: str
    display_name: str
    description: str
    order: float
    # Can it score classes it did not train on (bench.protocols)? "yes", "config" (depends on
    # its config, e.g. CoOp's unified context), or "" (no).
    new_classes: str = ""
    family: str = ""  # one of FAMILIES, or "" 


def _new_classes(flag) -> str:
    if callable(flag):
        return "config"
    return "yes" if flag else ""


class _NotLiteral(Exception):
    pass


def _register_calls(tree: ast.AST):
    """Every call ``METHODS.register(...)`` or ``METHODS.add(...)``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in ("register", "add") \
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "METHODS":
            yield node


def _info(call: ast.Call) -> MethodInfo:
    if call.func.attr == "add":  # METHODS.add(name, obj, ...): let the registry answer
        raise _NotLiteral
    try:
        name = ast.literal_eval(call.args[0])
        kw = {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg in _FIELDS}
    except (ValueError, TypeError, SyntaxError, IndexError):
        raise _NotLiteral from None
    if not isinstance(name, str):
        raise _NotLiteral
    flag = next((k.value for k in call.keywords if k.arg == "new_classes"), None)
    if flag is None:
        new = ""
    elif isinstance(flag, ast.Constant):
        new = _new_classes(flag.value)
    else:  # a function of the config, named or written inline
        new = "config"
    return MethodInfo(name, kw.get("display_name") or name, kw.get("description", ""),
                      float(kw.get("order", 1000.0)), new, str(kw.get("family", "")))


def _methods_folder() -> Path | None:
    spec = importlib.util.find_spec("methods")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _from_source() -> list[MethodInfo] | None:
    folder = _methods_folder()
    if folder is None:
        return None
    from bench.base.plugins import source_files

    builtin = [p for p in sorted(folder.glob("*.py")) if not p.name.startswith("_")]
    found: dict[str, MethodInfo] = {}
    try:
        for path in builtin + source_files():
            for call in _register_calls(ast.parse(path.read_text(encoding="utf-8"))):
                info = _info(call)
                if info.name in found:
                    return None  # registered twice: the registry's error message says it best
                found[info.name] = info
    except (OSError, SyntaxError, UnicodeDecodeError, _NotLiteral):
        return None
    return sorted(found.values(), key=lambda m: (m.order, m.name))


def _from_registry() -> list[MethodInfo]:
    from methods import METHODS

    return [MethodInfo(e.name, e.display_name, e.description, e.order,
                       _new_classes(e.extra.get("new_classes")), str(e.extra.get("family", "")))
            for e in METHODS.entries()]


def method_catalog(light: bool = True) -> list[MethodInfo]:
    """The registered methods in registry order; ``light`` reads them without importing."""
    return (_from_source() if light else None) or _from_registry()
