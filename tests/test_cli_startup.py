"""The light commands start without importing torch (seconds of start-up on a cluster node).

Each check runs in a fresh interpreter: this test process has torch loaded already.
"""

import json
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "open_clip", "torchvision", "matplotlib", "sklearn")


def _heavy_modules_after(code: str) -> list[str]:
    """The heavy modules imported by ``code`` run in a fresh interpreter (stdout discarded)."""
    probe = (f"import sys, io, contextlib\n"
             f"with contextlib.redirect_stdout(io.StringIO()):\n"
             + "".join(f"    {line}\n" for line in code.splitlines())
             + f"print(__import__('json').dumps([m for m in {HEAVY!r} if m in sys.modules]))\n")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_building_the_parser_imports_no_torch():
    assert _heavy_modules_after("import bench.cli\nbench.cli.build_parser()") == []


def test_help_and_ls_methods_import_no_torch():
    assert _heavy_modules_after(
        "from bench.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "assert main(['ls', 'methods']) == 0") == []


def test_status_imports_no_torch(tmp_path):
    out = tmp_path / "out"
    (out / "results").mkdir(parents=True)
    assert _heavy_modules_after(f"from bench.cli import main\nmain(['status', {str(out)!r}])") == []


def test_ls_datasets_imports_no_torch():
    assert _heavy_modules_after("from bench.cli import main\nmain(['ls', 'datasets'])") == []


def test_method_catalog_read_from_source_equals_the_registry():
    from bench.catalog import _from_source, method_catalog

    assert _from_source() is not None  # every decorator is literal: no silent fallback
    assert method_catalog() == method_catalog(light=False)




def test_every_package_is_listed_for_installation():
    """A non-editable install ships only the packages pyproject.toml lists: each folder with an
    __init__.py under the project's top-level packages must be there (bench/slurm/ once was not)."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    found = {str(p.parent.relative_to(ROOT)).replace("/", ".")
             for top in ("bench", "methods", "datasets_registry", "results", "configs")
             for p in (ROOT / top).rglob("__init__.py") if "__pycache__" not in p.parts}
    assert found <= listed, sorted(found - listed)


def test_methods_are_grouped_by_family():
    """`bench ls methods` and the report's row order group the families (zero-shot, linear-probe
    family, adapters, cache models, prompt learning), in that order."""
    from bench.catalog import FAMILIES, method_catalog

    builtin = [m for m in method_catalog() if m.name in _builtin_method_names()]
    assert all(m.family in FAMILIES for m in builtin), [m.name for m in builtin
                                                         if m.family not in FAMILIES]
    ranks = [FAMILIES.index(m.family) for m in builtin]
    assert ranks == sorted(ranks)


def _builtin_method_names() -> set[str]:
    import ast

    names = set()
    for path in (ROOT / "methods").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "register" \
                    and getattr(node.func.value, "id", "") == "METHODS":
                names.add(ast.literal_eval(node.args[0]))
    return names
