"""A small name registry shared by methods and datasets.

Entries register themselves when their module is imported; the registry imports every module of
its package the first time it is asked for anything, so adding a method or a dataset is one new
file. Plugins (``bench.base.plugins``: ``--include`` paths and installed packages) are imported
right after, and register the same way. Lookups give did-you-mean errors, and selections accept comma lists, ``all`` and
shell-style patterns (``clip_adapter*``).
"""

from __future__ import annotations

import fnmatch
import importlib
import inspect
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from bench.base import plugins
from bench.base.errors import UsageError, did_you_mean

_REGISTRIES: list["Registry"] = []


@dataclass
class Entry:
    name: str
    display_name: str
    description: str
    obj: Any
    order: float = 1000.0
    tags: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)
    source: str = ""  # "module NAME" or "plugin PATH": where it was registered


class Registry:
    def __init__(self, kind: str, package: str):
        self.kind = kind
        self.package = package
        self._entries: dict[str, Entry] = {}
        self._loaded = False
        _REGISTRIES.append(self)

    def add(self, name: str, obj: Any, *, display_name: str | None = None, description: str = "",
            order: float = 1000.0, tags: Iterable[str] = (), **extra) -> Any:
        source = _source(obj)
        if name in self._entries and self._entries[name].obj is not obj:
            raise UsageError(f"{self.kind} {name!r} is registered twice (by "
                             f"{self._entries[name].source} and by {source}); rename one of them")
        self._entries[name] = Entry(name, display_name or name, description, obj, order,
                                    tuple(tags), dict(extra), source)
        return obj

    def register(self, name: str, **kwargs) -> Callable[[Any], Any]:
        """Decorator form of :meth:`add`."""

        def wrap(obj):
            return self.add(name, obj, **kwargs)

        return wrap

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            pkg = importlib.import_module(self.package)
            for info in pkgutil.iter_modules(pkg.__path__):
                if not info.name.startswith("_"):
                    importlib.import_module(f"{self.package}.{info.name}")
        plugins.load(self.kind)  # cheap once done; picks up paths included since the last lookup

    def entries(self, tag: str | None = None) -> list[Entry]:
        self._load()
        found = [e for e in self._entries.values() if tag is None or tag in e.tags]
        return sorted(found, key=lambda e: (e.order, e.name))

    def names(self, tag: str | None = None) -> list[str]:
        return [e.name for e in self.entries(tag)]

    def entry(self, name: str) -> Entry:
        self._load()
        if name not in self._entries:
            raise UsageError(unknown_name_message(self.kind, name, self._entries))
        return self._entries[name]

    def get(self, name: str) -> Any:
        return self.entry(name).obj

    def select(self, spec: str | Iterable[str], all_tag: str | None = None) -> list[str]:
        """Expand a selection: comma list, ``all`` (entries with ``all_tag``), or patterns.

        The result keeps registry order and has no duplicates.
        """
        self._load()
        parts = _split(spec)
        if not parts:
            raise UsageError(f"no {self.kind}s given: name at least one (see `bench ls {self.kind}s`)")
        chosen: set[str] = set()
        for part in parts:
            if part == "all":
                chosen.update(self.names(all_tag))
            elif any(ch in part for ch in "*?["):
                hits = fnmatch.filter(self._entries, part)
                if not hits:
                    raise UsageError(f"the pattern {part!r} matches no {self.kind}; "
                                     f"known: {', '.join(self.names())}")
                chosen.update(hits)
            else:
                self.entry(part)
                chosen.add(part)
        return [n for n in self.names() if n in chosen]


def _source(obj) -> str:
    """Where ``obj`` is being registered from: the plugin being imported, else its module. A
    built-in module that a plugin's import pulls in (``from methods.zero_shot import ...``)
    registers as itself, not as the plugin."""
    module = getattr(obj, "__module__", None) or type(obj).__module__
    # a function's or class's __module__ is where it is defined; an instance's (a dataset
    # object) is its class's, which says nothing about who registers it
    defined_here = inspect.isfunction(obj) or inspect.isclass(obj)
    builtin = defined_here and module.split(".")[0] in {r.package for r in _REGISTRIES}
    if plugins.importing() and not builtin:
        return f"plugin {plugins.importing()}"
    return f"module {module}"


def _split(spec: str | Iterable[str]) -> list[str]:
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    return [s.strip() for s in items if s and s.strip()]


def unknown_name_message(kind: str, name: str, known: Iterable[str]) -> str:
    known = sorted(known)
    hint = did_you_mean(name, known, n=3, cutoff=0.5)
    return (f"unknown {kind} {name!r}.{hint} Known {kind}s: {', '.join(known)} "
            f"(see `bench ls {kind}s`).")
