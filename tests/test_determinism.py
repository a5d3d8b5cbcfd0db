"""The reproducibility policy (bench/base/determinism.py): in effect in every process, recorded in
every result, part of its identity; and what it is for: a cell's bits do not depend on the
sweep around it, on the batch an input fell into, on the thread count, or on the CPU's widest
instruction set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.base import determinism
from bench.threads import encode_threads
from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[1]
portable_only = pytest.mark.skipif(not determinism.portable_available(),
                                   reason="the portable policy needs an x86-64 CPU with AVX2")


def _python(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter (its libraries start under ``env``)."""
    full = {k: v for k, v in os.environ.items() if k not in determinism._MANAGED
            and k not in (determinism.ENV, determinism.MARK)}
    full.update({"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", **(env or {})})
    return subprocess.run([sys.executable, "-c", code], env=full, capture_output=True,
                          text=True, timeout=600)


@portable_only
def test_importing_bench_puts_the_portable_policy_in_effect():
    state = determinism.describe("portable", torch.device("cpu"), encode_threads())
    assert state["mkl_cbwr"] in (None, "AVX2,STRICT")  # None: a torch without MKL
    assert state["aten_cpu_capability"] == "AVX2"
    assert os.environ["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    determinism.check("portable")


@portable_only
def test_a_policy_set_after_torch_computed_is_refused_with_the_fix():
    late = _python("import torch\n"
                   "torch.softmax(torch.randn(64, 64) @ torch.randn(64, 64), -1)\n"
                   "import bench\nfrom bench.base import determinism\n"
                   "determinism.check('portable')\n")
    assert late.returncode != 0
    assert "did not take effect" in late.stderr and "import bench before" in late.stderr
    early = _python("import torch\nimport bench\nfrom bench.base import determinism\n"
                    "torch.softmax(torch.randn(64, 64) @ torch.randn(64, 64), -1)\n"
                    "determinism.check('portable')\nprint('ok')\n")
    assert early.returncode == 0 and early.stdout.strip() == "ok", early.stderr


def test_policy_values_are_checked():
    from bench.base.errors import UsageError

    with pytest.raises(UsageError, match="choose one of portable, native, off"):
        determinism.check_policy("strict")


def test_apply_switches_policies_and_keeps_the_users_own_settings(monkeypatch):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "SkylakeX")  # the user's, before bench's portable
    saved = {k: os.environ.get(k) for k in determinism._MANAGED + [determinism.ENV]}
    try:
        determinism._applied.pop("OPENBLAS_CORETYPE", None)
        determinism.apply("off")
        assert os.environ["OPENBLAS_CORETYPE"] == "SkylakeX"
        assert "MKL_CBWR" not in os.environ or "MKL_CBWR" not in determinism._applied
        assert os.environ[determinism.ENV] == "off"
        if determinism.portable_available():
            determinism.apply("portable")
            assert os.environ["MKL_CBWR"] == "AVX2,STRICT"
            assert os.environ["OPENBLAS_CORETYPE"] == "Haswell"
            determinism.apply("off")  # bench's values undone, the user's own back
            assert "MKL_CBWR" not in os.environ
            assert os.environ["OPENBLAS_CORETYPE"] == "SkylakeX"
    finally:
        determinism.apply(saved[determinism.ENV] or determinism.DEFAULT)


@portable_only
def test_a_child_of_a_bench_process_can_turn_the_policy_off_and_keeps_the_users_own():
    """A bench process's children inherit its settings; one asked for ``off`` (a `bench run
    --determinism off` launched by a benchmark or a job) undoes bench's, not the user's."""
    parent = {k: v for k, v in os.environ.items()}  # this process imported bench: portable
    assert parent["MKL_CBWR"] == "AVX2,STRICT" and "MKL_CBWR=AVX2,STRICT" in parent[determinism.MARK]
    code = ("import os, json, bench\nfrom bench.base import determinism\n"
            "determinism.apply('off')\n"
            "print(json.dumps({k: os.environ.get(k) for k in determinism._MANAGED}))\n")
    for user in ({}, {"OPENBLAS_CORETYPE": "SkylakeX"}):  # the user's own, set after bench's:
        # the child's import puts portable's Haswell in its place, and off brings it back
        env = {**parent, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", **user}
        run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        left = {k: v for k, v in json.loads(run.stdout).items() if v is not None}
        assert left == user, left


@portable_only
def test_text_embeddings_do_not_depend_on_their_batch(tiny_backbone):
    prompts = ["a photo of a dog.", "a photo of a golden retriever.", "itap of a sea lion."]
    alone = [tiny_backbone.encode_text([p]) for p in prompts]
    for n in (3, 8, 40, 300):  # 300: two chunks of the encoder's batches
        batch = tiny_backbone.encode_text([prompts[i % 3] for i in range(n)])
        for i in range(n):
            assert torch.equal(batch[i], alone[i % 3][0]), (n, i)


@portable_only
@pytest.mark.parametrize("threads", [1, 2])
def test_image_features_do_not_depend_on_their_batch_or_the_thread_count(threads):
    """The demo model's convolutions (oneDNN): batches of fewer than MIN_BATCH images are
    padded, so every image is encoded in a batch of at least MIN_BATCH, where the kernels agree
    for every size, position and thread count tried."""
    from bench.backbone import MIN_BATCH, Backbone
    from bench.threads import torch_threads
    from configs import MODEL_DIR

    bb = Backbone("bench-demo-rn", str(MODEL_DIR / "bench-demo-rn.pt"))
    images = torch.randn(70, 3, bb.image_size, bb.image_size,
                         generator=torch.Generator().manual_seed(0))
    with torch_threads(1):
        reference = bb.encode_images(images[:64])
    with torch_threads(threads):
        for n in (1, 5, MIN_BATCH - 1, MIN_BATCH, 17, 33, 64):
            assert torch.equal(bb.encode_images(images[:n]), reference[:n]), n
        shifted = bb.encode_images(images[3:67])  # the same images at other positions
        assert torch.equal(shifted[:61], reference[3:64])


_CELL = """
import hashlib, json, sys
import bench
from bench.backbone import Backbone
from configs import MODEL_DIR
import torch
bb = Backbone("bench-demo-rn", str(MODEL_DIR / "bench-demo-rn.pt"))
g = torch.Generator().manual_seed(0)
images = torch.randn(64, 3, bb.image_size, bb.image_size, generator=g)
text = bb.class_weights(["zero", "one", "two", "three"], ["a photo of a {}.", "a {}."])
feats = bb.encode_images(images).clone()
logits = torch.softmax(bb.logit_scale * torch.nn.functional.normalize(feats, dim=-1) @ text.T, -1)
w = torch.zeros(feats.shape[1], 4, requires_grad=True)
opt = torch.optim.SGD([w], lr=0.1)
for _ in range(5):  # a few training steps: matmuls, softmax, backward
    opt.zero_grad(); torch.nn.functional.cross_entropy(feats @ w, torch.arange(64) % 4).backward()
    opt.step()
out = torch.cat([logits.flatten(), w.detach().flatten()])
print(hashlib.sha256(out.numpy().tobytes()).hexdigest())
"""

# A CPU whose widest instruction set is AVX2 (as on AMD EPYC Zen 2/3), imitated on this one:
# every library capped at AVX2 by its own switch.
_AVX2_CPU = {"MKL_ENABLE_INSTRUCTIONS": "AVX2", "ATEN_CPU_CAPABILITY": "avx2",
             "ONEDNN_MAX_CPU_ISA": "AVX2"}


@portable_only
@pytest.mark.skipif("avx512f" not in determinism._cpu_flags(),
                    reason="this CPU has no AVX-512: it is an AVX2 CPU already")
def test_the_same_bits_on_an_avx2_only_cpu_under_the_policy_and_not_without():
    """The encoders, a zero-shot head and a few training steps: under the portable policy the
    bits are those of an AVX2-only CPU; with the policy off this AVX-512 CPU gives others (the
    cross-CPU difference the policy removes)."""
    def digest(policy, env=None):
        run = _python(_CELL, {determinism.ENV: policy, **(env or {})})
        assert run.returncode == 0, run.stderr
        return run.stdout.strip()

    assert digest("portable") == digest("portable", _AVX2_CPU)
    assert digest("off") != digest("off", _AVX2_CPU)


def _write_root(base: Path) -> Path:
    from tests.test_conformance import write_conformance_root

    return write_conformance_root(base / "data")


def _sweep(root: Path, out: Path, methods, shots, seeds) -> dict:
    """Run ``methods`` x ``shots`` x ``seeds`` (epochs cut as the conformance suite cuts them)
    with a cache of its own; {(method, variant, shots, seed): logits_sha256}."""
    from bench.config import MethodSpec
    from bench.planner import expand_cells, plan
    from bench.runner import run_job
    from results.store import ResultStore
    from tests.test_conformance import CONFORMANCE_DATASET, _fast_overrides

    cells = []
    for name, variant in methods:
        cells += expand_cells([(TINY, "none")], [CONFORMANCE_DATASET], [MethodSpec(name, variant)],
                              shots, seeds, {name: _fast_overrides(name, variant)})
    for job in plan(cells, data_root=str(root), output=str(out / "out"),
                    cache_dir=str(out / "cache"), device="cpu",
                    options={"progress": False, "workers": 0}):
        run_job(job)
    records = list(ResultStore(out / "out").iter_records(include_failed=True))
    assert all(r["status"] == "ok" for r in records), [r.get("error") for r in records]
    return {(r["method"], r.get("variant"), r["shots"], r["seed"]): r["logits_sha256"]
            for r in records}


def _default_methods():
    from bench.config import load_method_file
    from methods import METHODS

    return [(name, load_method_file(name).get("default_variant")) for name in METHODS.names()]


@pytest.mark.slow
def test_a_cell_gives_the_same_bits_alone_and_in_any_sweep(tmp_path):
    """Every built-in method: one cell run alone, and the same cell inside a sweep of every
    method, two shot counts and two seeds (other images in every encoding batch, other cells
    in the per-seed view stores, CoOp's and KgCoOp's shots fitted jointly): the same logits."""
    root = _write_root(tmp_path)
    methods = _default_methods()
    wide = _sweep(root, tmp_path / "wide", methods, [1, 2], [1, 2])
    for name, variant in methods:
        alone = _sweep(root, tmp_path / f"alone-{name}", [(name, variant)], [2], [1])
        key = (name, variant, 2, 1)
        assert alone[key] == wide[key], f"{name}: other logits alone than in the sweep"


def test_the_policy_is_recorded_and_part_of_the_identity(run_cli, miniroot, tmp_path):
    from results.records import cell_id

    out = tmp_path / "out"
    base = ["run", "--backbone", TINY, "--pretrained", "none", "--quiet", "--data-root",
            miniroot, "--datasets", "eurosat", "--methods", "zero_shot", "--shots", "1",
            "--seeds", "1", "--output", out]
    code, _, err = run_cli(*base)
    assert code == 0, err
    record = json.loads(next((out / "results").rglob("*.json")).read_text())
    policy = determinism.effective("portable")
    assert record["inputs"]["determinism"] == policy
    block = record["determinism"]
    assert block["policy"] == policy and block["encode_threads"] >= 1 and block["cpu"]
    if policy == "portable":
        assert block["aten_cpu_capability"] == "AVX2"
    # Under another policy the same cell is another result: it runs again, labelled.
    code, _, err = run_cli(*base[:-2], "--output", out, "--determinism", "off")
    assert code == 0 and "1 to run" in err, err
    code, table, _ = run_cli("report", out, "--color", "never")
    assert "[determinism off]" in table and "run with --determinism off" in table
    cell = dict(record)
    assert cell_id(cell) != cell_id({**cell, "inputs": {**cell["inputs"], "determinism": "off"}})
    determinism.apply(determinism.DEFAULT)


def test_bad_policy_is_a_usage_error(run_cli, miniroot, tmp_path):
    code, _, err = run_cli("run", "--backbone", TINY, "--pretrained", "none",
                           "--data-root", miniroot, "--determinism", "strict", "--dry-run")
    assert code == 2 and "--determinism" in err and "Traceback" not in err
    env = {k: v for k, v in os.environ.items() if k != determinism.ENV}
    bad = subprocess.run([sys.executable, "-m", "bench", "run", "--dry-run"], capture_output=True,
                         text=True, timeout=300, cwd=tmp_path,
                         env={**env, determinism.ENV: "strict", "PYTHONPATH": str(ROOT)})
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "BENCH_DETERMINISM='strict': choose one of portable, native, off" in bad.stderr
