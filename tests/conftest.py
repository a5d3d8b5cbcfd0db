import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import bench  # noqa: E402,F401 - first: its reproducibility policy must precede torch's start
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

TINY = "bench-test-tiny"


@pytest.fixture(scope="session")
def miniroot(tmp_path_factory):
    """A complete miniature data root for the eleven datasets (read-only for tests)."""
    from tests.miniroot import make_miniroot

    return make_miniroot(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def tiny_backbone():
    from bench.backbone import Backbone

    return Backbone(TINY, "none", "cpu")


@pytest.fixture()
def run_cli(capsys):
    """Run `bench ...` in-process; returns (exit code, stdout, stderr)."""
    from bench.cli import main

    def run(*argv):
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture()
def plugin_state():
    """Forget included paths and the entries tmp plugins registered, after the test."""
    from bench.base import plugins
    from datasets_registry import DATASETS
    from methods import METHODS

    yield plugins
    plugins.reset()
    for registry in (METHODS, DATASETS):
        for name in [n for n, e in registry._entries.items()
                     if e.source.startswith("plugin ") and "pytest" in e.source]:
            del registry._entries[name]
