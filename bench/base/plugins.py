"""Methods and datasets from outside the repository: ``--include PATH`` and installed packages.

Two ways in, both registering exactly like a built-in module (``METHODS.register(...)``,
``datasets_registry.register(...)``) when imported:

* ``--include PATH`` (repeatable; also ``BENCH_INCLUDE``, paths separated by ``os.pathsep``):
  a ``.py`` file, or a folder whose ``*.py`` files are all imported (names starting with ``_``
  are skipped, as in ``methods/``). A method's YAML config is ``<method>.yaml`` in an included
  folder or next to an included file (or an included ``.yaml`` file itself).
* an installed package that declares an entry point in the group ``bench.methods`` (a module
  that registers methods), ``bench.datasets`` (datasets) or ``bench.plugins`` (either)
  (``[project.entry-points."bench.methods"] name = "my_package.module"``); its YAML configs
  lie next to that module. The method registry imports the ``bench.methods`` and
  ``bench.plugins`` groups, the dataset registry ``bench.datasets`` and ``bench.plugins``: so
  `bench ls datasets` does not import method plugins (and the torch they import).

Plugins are imported lazily, by the registries (``bench.base.registry``), the first time a method or
dataset is looked up; the paths travel with SLURM/submitit jobs (``bench.slurm.BenchJob``).
See docs/extending.md.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from pathlib import Path

from bench.base.errors import UsageError

ENTRY_POINT_GROUP = "bench.plugins"  # modules that may register methods and datasets
KIND_GROUPS = {"method": "bench.methods", "dataset": "bench.datasets"}
ENV_VAR = "BENCH_INCLUDE"

_included: list[Path] = []  # resolved paths, in the order given
_imported: set[str] = set()  # keys of what has been imported (file paths, entry point names)
_entry_points: dict[str, list] = {}
_env_read = False
_importing: list[str] = []  # the plugin being imported (a file path or an entry point)
_loaded_kinds: set = set()  # the registry kinds that have asked for their plugins (load)


def importing() -> str | None:
    """The plugin whose import is running now (registries note it as the entry's source)."""
    return _importing[-1] if _importing else None


def include(paths) -> list[Path]:
    """Add plugin paths (files or folders); checked now, imported on the next registry lookup
    (at once when a registry is already loaded). Returns the resolved paths."""
    added = []
    for raw in [paths] if isinstance(paths, (str, os.PathLike)) else list(paths or []):
        path = Path(raw).expanduser()
        if not path.exists():
            raise UsageError(f"--include {raw}: no such file or folder; give a .py file, a "
                             f".yaml method config or a folder of them")
        if path.is_file() and path.suffix not in (".py", ".yaml", ".yml"):
            raise UsageError(f"--include {raw}: not a .py module or .yaml config; give a .py "
                             f"file, a .yaml method config or a folder of them")
        path = path.resolve()
        if path not in _included:
            _included.append(path)
        added.append(path)
    if _loaded_kinds:  # a registry has loaded already: import now, as its next lookup would
        load()
    return added


def included() -> list[str]:
    """The included paths, as strings (what a SLURM job needs to import the same plugins)."""
    _ensure_env()
    return [str(p) for p in _included]


def _ensure_env() -> None:
    global _env_read
    if not _env_read:
        _env_read = True
        include_from_env()


def include_from_env() -> None:
    value = os.environ.get(ENV_VAR, "")
    parts = [p for p in value.split(os.pathsep) if p.strip()]
    if parts:
        try:
            include(parts)
        except UsageError as exc:
            raise UsageError(f"{ENV_VAR}: {exc}") from None


def _modules_of(path: Path) -> list[Path]:
    if path.is_file():
        return [path] if path.suffix == ".py" else []
    return sorted(p for p in path.glob("*.py") if not p.name.startswith("_"))


def _module_name(path: Path) -> str:
    """A unique, stable module name for a plugin file (two folders may both hold method.py)."""
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    return f"bench_plugin_{path.stem}_{digest}"


def _import_file(path: Path) -> None:
    name = _module_name(path)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    # its own folder first on the path, so a plugin can import its helper modules
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    _importing.append(str(path))
    try:
        spec.loader.exec_module(module)
    except UsageError:
        sys.modules.pop(name, None)
        raise
    except Exception as exc:  # noqa: BLE001 - a plugin's bug: one line naming the file
        sys.modules.pop(name, None)
        raise UsageError(f"plugin {path} failed to import: {type(exc).__name__}: {exc}; "
                         f"fix it or leave it out of --include") from None
    finally:
        _importing.pop()


def entry_points(kind: str | None = None) -> list:
    """Installed entry points for a registry ``kind`` ("method", "dataset"; None: all groups),
    read once per process."""
    groups = [ENTRY_POINT_GROUP] + ([KIND_GROUPS[kind]] if kind else list(KIND_GROUPS.values()))
    found = []
    for group in groups:
        if group not in _entry_points:
            from importlib.metadata import entry_points as eps

            _entry_points[group] = sorted(eps(group=group), key=lambda e: e.name)
        found += _entry_points[group]
    return found


def _load_entry_point(ep) -> None:
    _importing.append(f"{ep.name} ({ep.value}, installed)")
    try:
        _call_entry_point(ep)
    finally:
        _importing.pop()


def _call_entry_point(ep) -> None:
    try:
        obj = ep.load()
    except UsageError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise UsageError(f"installed plugin {ep.name!r} ({ep.value}, entry point group "
                         f"{ep.group!r}) failed to import: {type(exc).__name__}: "
                         f"{exc}; fix or uninstall its package") from None
    if callable(obj) and not isinstance(obj, type(sys)):
        obj()  # an entry point may name a function that registers things


def load(kind: str | None = None) -> None:
    """Import every plugin not imported yet: the entry points of registry ``kind`` first, then
    ``--include`` paths (``BENCH_INCLUDE``'s are added on the first call)."""
    _loaded_kinds.add(kind)
    _ensure_env()
    for ep in entry_points(kind):
        key = f"ep:{ep.name}={ep.value}"
        if key not in _imported:
            _imported.add(key)
            _load_entry_point(ep)
    load_included()


def load_included() -> None:
    """Import the ``--include`` (and ``BENCH_INCLUDE``) modules not imported yet; a module
    whose import fails is a UsageError naming it. `bench ls methods` calls this: it reads the
    methods from their sources, which would list a plugin that cannot even be imported."""
    _ensure_env()
    for path in list(_included):
        for module in _modules_of(path):
            key = f"file:{module}"
            if key not in _imported:
                _imported.add(key)
                _import_file(module)


# --- where plugins live, without importing them (bench ls, report: bench.catalog) -----------

def _entry_point_file(ep) -> Path | None:
    """The source file of an entry point's module, found without running it."""
    module = ep.value.split(":", 1)[0].strip()
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin)


def source_files() -> list[Path]:
    """Every plugin module file: included ones, then installed packages' entry points."""
    _ensure_env()
    files = [m for p in _included for m in _modules_of(p)]
    for ep in entry_points("method"):
        f = _entry_point_file(ep)
        if f is not None:
            files.append(f)
    return files


def config_dirs() -> list[Path]:
    """Folders searched for ``<method>.yaml``: included folders, the folders of included
    files, and the folders of installed plugin modules."""
    dirs = [p if p.is_dir() else p.parent for p in _included]
    dirs += [f.parent for f in source_files()]
    return list(dict.fromkeys(dirs))


def find_config(name: str) -> Path | None:
    """A plugin's YAML config of method ``name``: an included ``<name>.yaml`` file, or one in
    :func:`config_dirs`; None when no plugin has one."""
    _ensure_env()
    for path in _included:
        if path.is_file() and path.suffix in (".yaml", ".yml") and path.stem == name:
            return path
    for folder in config_dirs():
        for suffix in (".yaml", ".yml"):
            candidate = folder / f"{name}{suffix}"
            if candidate.is_file():
                return candidate
    return None


def reset() -> None:
    """Forget the included paths (tests; modules already imported stay registered)."""
    global _entry_points, _env_read
    _included.clear()
    _entry_points = {}
    _env_read = False
