"""One contract, tested for every registered method x variant and every dataset (timm's
test_models.py style). Plugins count: installed ones (entry point ``bench.methods``) and those in
``BENCH_INCLUDE`` when the tests start are parametrized like built-in ones.

Methods run through the real runner (planner + ``run_job``) on a conformance data root: DTD's
layout with unique noise images, and a test split of noise images with random labels, so that
test data a method could reach shows: by value in the Task, and by an accuracy far above chance.
Epoch counts are cut to 2 through the config (``--set`` path) to keep it fast.

Both kinds of method (methods/tuning.py): a frozen-feature method is probed with random
features, an encoder-tuning one (``kind="encoder"``) with random images; for the latter the
shared frozen model is also checked unchanged, bitwise, after its fit.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import random
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY

CONFORMANCE_DATASET = "dtd"
SHOTS, SEED, OTHER_SEED = 2, 1, 2
N_TEST = 90  # 3 classes, random labels: chance is 1/3; a method reading test labels gets ~100%
FAST_EPOCHS = 2


def _method_cases() -> list[tuple[str, str | None]]:
    from bench.config import load_method_file, variants_of
    from methods import METHODS

    cases = []
    for name in METHODS.names():
        default = load_method_file(name).get("default_variant")
        cases.append((name, default))
        cases += [(name, v) for v in variants_of(name) if v != default]
    return cases


METHOD_CASES = _method_cases()


def _encoder_methods() -> set[str]:
    from methods import METHODS

    return {n for n in METHODS.names() if METHODS.entry(n).extra.get("kind") == "encoder"}


ENCODER_METHODS = _encoder_methods()


def _case_id(case) -> str:
    return f"{case[0]}:{case[1]}" if case[1] else case[0]


def _fast_overrides(name: str, variant: str | None) -> dict:
    """Epoch counts cut to FAST_EPOCHS (the method's declared epochs key and ``epochs``)."""
    from bench.config import MethodSpec, resolve_method_config
    from methods import METHODS

    spec = METHODS.entry(name).extra.get("views")
    keys = {"epochs", getattr(spec, "epochs_key", "epochs"),
            "iters_per_shot"}  # encoder-tuning methods' iteration budgets (CLIP-LoRA, 2SFS)
    _, cfg = resolve_method_config(MethodSpec(name, variant), CONFORMANCE_DATASET, SHOTS)
    return {k: FAST_EPOCHS for k in keys if isinstance(cfg.get(k), int)
            and not isinstance(cfg.get(k), bool) and cfg[k] > FAST_EPOCHS}


def _noise_jpeg(rng: random.Random, tint: tuple[int, int, int] | None) -> bytes:
    from PIL import Image

    img = Image.new("RGB", (16, 16))
    img.putdata([tuple(min(255, (t if tint else 0) // 2 + rng.randrange(128))
                       for t in (tint or (0, 0, 0))) for _ in range(256)])
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def write_conformance_root(root: Path) -> Path:
    """DTD's layout: tinted noise for train/val (something to learn), plain noise with random
    labels for test (nothing to learn: above-chance accuracy means the test labels leaked)."""
    from tests.miniroot import SPLIT_DATASETS

    folder, image_subdir, split_file, classes = SPLIT_DATASETS[CONFORMANCE_DATASET]
    rng = random.Random(0)
    tints = [(255, 40, 40), (40, 255, 40), (40, 40, 255)]
    rows = {"train": [], "val": [], "test": []}
    image_dir = root / folder / image_subdir
    n = 0
    for split, per_class in (("train", 4), ("val", 2), ("test", N_TEST // len(classes))):
        for label, (cfolder, cname) in enumerate(classes):
            for _ in range(per_class):
                shown = label if split != "test" else rng.randrange(len(classes))
                rel = f"{classes[shown][0]}/{classes[shown][0]}_{n:04d}.jpg"
                n += 1
                (image_dir / rel).parent.mkdir(parents=True, exist_ok=True)
                (image_dir / rel).write_bytes(
                    _noise_jpeg(rng, tints[label] if split != "test" else None))
                rows[split].append([rel, shown, classes[shown][1]])
    (root / folder / split_file).write_text(json.dumps(rows))
    return root


@pytest.fixture(scope="module")
def conformance(tmp_path_factory):
    """Run every case once through the runner, capturing each method's Task and Fitted."""
    from bench.config import MethodSpec
    from bench.planner import expand_cells, plan
    from bench.runner import run_job
    from datasets_registry import DATASETS
    from methods import METHODS
    from results.store import ResultStore

    base = tmp_path_factory.mktemp("conformance")
    root = write_conformance_root(base / "data")
    captured: dict[tuple, tuple] = {}
    originals = {}

    def capture(name, fit):
        def wrapped(task):
            fitted = fit(task)
            captured[(name, json.dumps(task.config, sort_keys=True, default=str))] = (task, fitted)
            return fitted
        return wrapped

    cells = []
    for name, variant in METHOD_CASES:
        cells += expand_cells([(TINY, "none")], [CONFORMANCE_DATASET], [MethodSpec(name, variant)],
                              [SHOTS], [SEED], {name: _fast_overrides(name, variant)})
    for name in {n for n, _ in METHOD_CASES}:
        entry = METHODS.entry(name)
        originals[name] = entry.obj
        entry.obj = capture(name, entry.obj)
    try:
        jobs = plan(cells, data_root=str(root), output=str(base / "out"),
                    cache_dir=str(base / "cache"), device="cpu",
                    options={"progress": False, "workers": 0})
        for job in jobs:
            run_job(job)
    finally:
        for name, fit in originals.items():
            METHODS.entry(name).obj = fit
    records = {(r["method"], r.get("variant")): r
               for r in ResultStore(base / "out").iter_records(include_failed=True)}
    splits = DATASETS.get(CONFORMANCE_DATASET).load(root)
    return {"records": records, "captured": captured, "originals": originals,
            "root": root, "splits": splits, "cache": base / "cache"}


def _case(conformance, case):
    name, variant = case
    record = conformance["records"].get((name, variant))
    assert record is not None, f"no record for {_case_id(case)}"
    assert record["status"] == "ok", (f"{_case_id(case)} failed: "
                                      f"{record.get('error', {}).get('message')}")
    key = (name, json.dumps(record["config"], sort_keys=True, default=str))
    task, fitted = conformance["captured"][key]
    return record, task, fitted


def _is_encoder(task) -> bool:
    from methods.tuning import EncoderTask

    return isinstance(task, EncoderTask)


def _probe(task, n: int = 7) -> torch.Tensor:
    """Random inputs of what the fitted model scores: features, or images for an
    encoder-tuning method."""
    gen = torch.Generator().manual_seed(123)
    if _is_encoder(task):
        size = task.backbone.image_size
        return torch.randn(n, 3, size, size, generator=gen).to(task.device)
    dim = task.train.features.shape[1]
    return torch.randn(n, dim, generator=gen).to(task.device)


def _refit(conformance, case, task, seed: int):
    """Fit again on the same Task with ``seed``, seeded as the runner seeds a cell, on as
    many CPU threads as the runner fitted it (a reduction's rounding may depend on them)."""
    from bench.sweep import DEFAULT_FIT_THREADS
    from bench.threads import torch_threads
    from datasets_registry.fewshot import seed_everything

    seed_everything(seed)
    with torch_threads(DEFAULT_FIT_THREADS):
        return conformance["originals"][case[0]](dataclasses.replace(task, seed=seed))


# --- every method x variant -----------------------------------------------------------------

@pytest.mark.parametrize("case", METHOD_CASES, ids=_case_id)
def test_logits_shape_and_finite(conformance, case):
    record, task, fitted = _case(conformance, case)
    logits = fitted.logits(_probe(task))
    assert logits.shape == (7, task.num_classes)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("case", METHOD_CASES, ids=_case_id)
def test_same_seed_is_bit_identical(conformance, case):
    _, task, fitted = _case(conformance, case)
    again = _refit(conformance, case, task, task.seed)
    assert torch.equal(fitted.logits(_probe(task)), again.logits(_probe(task)))


def _stochastic(name: str, config: dict):
    """Whether a method must give other results for another seed on the same Task: declared at
    registration (``stochastic=True/False``, a function of the config giving one, or
    ``"batch_order"``: the seed reaches the result
    only through the order of its batches, as for TaskRes, whose residual starts at zero), else:
    it trains for epochs (initialization, batch order) on its own randomness. Methods on
    ``fixed`` views (Tip-Adapter-F) take theirs from the core's views, keyed by the seed: the
    refit below keeps the Task's views, and with one full batch their training is deterministic
    given the Task."""
    from methods import METHODS

    entry = METHODS.entry(name)
    if "stochastic" in entry.extra:
        declared = entry.extra["stochastic"]
        declared = declared(config) if callable(declared) else declared
        return declared if declared == "batch_order" else bool(declared)
    if entry.extra.get("kind") == "encoder":  # it trains for the epochs it declares
        return entry.extra["epochs"](config, SHOTS * 47, SHOTS) > 0
    spec = entry.extra.get("views")
    key = getattr(spec, "epochs_key", "epochs")
    trains = any(isinstance(config.get(k), int) and not isinstance(config.get(k), bool)
                 and config.get(k) > 0 for k in {key, "epochs"})
    return trains and getattr(spec, "kind", "none") != "fixed"


@pytest.mark.parametrize("case", METHOD_CASES, ids=_case_id)
def test_other_seed_differs_when_the_method_is_stochastic(conformance, case):
    """Same Task (data and views), another seed: a method that trains on its own randomness
    must give other logits (one that ignores its seed gives the same). A method whose seed acts
    only through the batch order is refitted with batches smaller than its train set (with
    one batch, the order of rows inside it is all another seed could change: rounding, not a
    use of the seed)."""
    record, task, fitted = _case(conformance, case)
    stochastic = _stochastic(case[0], record["config"])
    if not stochastic:
        pytest.skip("deterministic given its Task (no training of its own randomness)")
    if stochastic == "batch_order":
        assert len(task.train) > 2
        task = dataclasses.replace(task, config={**task.config, "batch_size": 2})
        fitted = _refit(conformance, case, task, task.seed)
    other = _refit(conformance, case, task, OTHER_SEED)
    difference = (fitted.logits(_probe(task)) - other.logits(_probe(task))).abs().max().item()
    assert difference > 1e-4, \
        f"logits within {difference:.2g} for another seed: the method ignores its seed"


def _joinable(case) -> bool:
    """The method registers fit_together and this variant's config can join (its join_key)."""
    from bench.config import MethodSpec, resolve_method_config
    from methods import METHODS

    extra = METHODS.entry(case[0]).extra
    if "fit_together" not in extra:
        return False
    _, config = resolve_method_config(MethodSpec(*case), CONFORMANCE_DATASET, SHOTS)
    return extra.get("join_key", lambda c: None)(config) is not None


@pytest.mark.parametrize("case", [c for c in METHOD_CASES if _joinable(c)], ids=_case_id)
def test_fit_together_gives_each_task_its_own_fit(conformance, case):
    """A method that registers ``fit_together`` (bench run --joint-fits) gives each task what
    ``fit`` gives it, up to float rounding, with another cell's training beside it."""
    from datasets_registry.fewshot import seed_everything
    from methods import METHODS

    record, task, fitted = _case(conformance, case)
    other = dataclasses.replace(task, seed=OTHER_SEED)
    seed_everything(task.seed)
    joint = METHODS.entry(case[0]).extra["fit_together"]([task, other])
    alone = _refit(conformance, case, task, OTHER_SEED)
    for got, want in ((joint[0], fitted), (joint[1], alone)):
        torch.testing.assert_close(got.logits(_probe(task)), want.logits(_probe(task)),
                                   rtol=1e-4, atol=1e-4)
    assert not torch.equal(joint[0].logits(_probe(task)), joint[1].logits(_probe(task)))


def _reachable_tensors(obj, seen=None, depth=0):
    """Tensors reachable from ``obj`` through attributes, dict values and sequences (the frozen
    backbone excluded: it holds the model's weights, not data)."""
    seen = set() if seen is None else seen
    if id(obj) in seen or depth > 6:
        return
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        yield obj
        return
    if isinstance(obj, (str, bytes, int, float, bool, type(None), torch.device)):
        return
    if isinstance(obj, torch.nn.Module):
        return
    if isinstance(obj, dict):
        children = list(obj.values())
    elif isinstance(obj, (list, tuple, set)):
        children = list(obj)
    else:
        children = [v for k, v in getattr(obj, "__dict__", {}).items() if k != "backbone"]
    for child in children:
        yield from _reachable_tensors(child, seen, depth + 1)


def test_conformance_root_test_features_are_unique(conformance, tiny_backbone):
    """The leak check below is meaningful only if no test image equals a train/val image."""
    test = _test_features(conformance, tiny_backbone)
    assert len(test) == N_TEST
    assert torch.unique(test, dim=0).shape[0] == N_TEST


def _test_features(conformance, backbone) -> torch.Tensor:
    if "test_features" not in conformance:
        from bench.features import DatasetFeatures, FeatureCache

        feats = DatasetFeatures(backbone, conformance["splits"],
                                FeatureCache(conformance["cache"], "float32"), progress=False)
        conformance["test_features"] = feats.eval_features("test", list(range(N_TEST)))
    return conformance["test_features"]


@pytest.mark.parametrize("case", METHOD_CASES, ids=_case_id)
def test_no_test_data_reachable_from_the_task(conformance, case, tiny_backbone):
    record, task, _ = _case(conformance, case)
    if _is_encoder(task):
        _no_test_images_reachable(conformance, task, tiny_backbone)
        assert record["metrics"]["top1"] < 80.0, (
            f"top-1 {record['metrics']['top1']:.1f}% on random test labels: test labels leak")
        return
    test = _test_features(conformance, tiny_backbone).float()
    views = task.train_views
    if views.mode in ("online", "cached"):
        _ = views.for_epoch(0)  # lazy views: materialize what the method could read
    for tensor in _reachable_tensors(task):
        if tensor.ndim >= 2 and tensor.shape[-1] == test.shape[1]:
            rows = tensor.reshape(-1, test.shape[1]).float().cpu()
            hits = torch.cdist(rows, test).min(dim=1).values < 1e-4
            assert not hits.any(), f"{int(hits.sum())} test feature row(s) reachable from the Task"
    assert len(task.train) == len(task.train.labels) <= SHOTS * task.num_classes
    # behaviour: test labels are random noise labels; reading them gives far above chance
    assert record["metrics"]["top1"] < 80.0, (
        f"top-1 {record['metrics']['top1']:.1f}% on random test labels: test labels leak")


def _no_test_images_reachable(conformance, task, backbone) -> None:
    """An encoder-tuning method's Task: its val images and its train crops of an epoch hold
    no test image (eval transform), and no more than the few-shot rows."""
    from bench.encoder_cells import TestImages

    test = torch.cat(list(TestImages(conformance["splits"], "test", range(N_TEST), backbone)
                          .batches(64, "cpu"))).flatten(1)
    assert torch.unique(test, dim=0).shape[0] == N_TEST
    rows = torch.arange(len(task.train))
    shown = [task.val.images, task.train.crops(0, rows)]
    shown += [t for t in _reachable_tensors(task) if t.ndim == 4]
    for images in shown:
        flat = images.float().cpu().flatten(1)
        hits = torch.cdist(flat, test).min(dim=1).values < 1e-3
        assert not hits.any(), f"{int(hits.sum())} test image(s) reachable from the Task"
    assert len(task.train) == len(task.train.labels) <= SHOTS * task.num_classes
    assert len(task.val) <= min(SHOTS, 4) * task.num_classes


@pytest.mark.parametrize("case", [c for c in METHOD_CASES if c[0] in ENCODER_METHODS],
                         ids=_case_id)
def test_encoder_method_leaves_the_shared_model_unchanged(conformance, case):
    """Every parameter and buffer of the frozen model bitwise as before the fit, and its mode
    and gradient flags (the conformance run fits on the runner's own Backbone; this refits on
    the captured Task and compares)."""
    _, task, _ = _case(conformance, case)
    model = task.backbone.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [(m.training, [p.requires_grad for p in m.parameters(recurse=False)])
             for m in model.modules()]
    _refit(conformance, case, task, task.seed)
    after = model.state_dict()
    assert before.keys() == after.keys()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert not changed, f"the fit changed the shared model's {changed[:3]}"
    assert flags == [(m.training, [p.requires_grad for p in m.parameters(recurse=False)])
                     for m in model.modules()]


@pytest.mark.parametrize("case", METHOD_CASES, ids=_case_id)
def test_info_is_json_serializable_into_the_record(conformance, case):
    record, _, fitted = _case(conformance, case)
    assert json.loads(json.dumps(fitted.info)) == record["selected"]


@pytest.mark.parametrize("case", METHOD_CASES, ids=_case_id)
def test_new_classes_as_declared(conformance, case):
    """A method declared able to score classes it did not train on (``new_classes``, for this
    config) returns ``for_classes``; over its own classes it gives its fitted logits, and over a
    subset of them, in another order, those columns (the base-to-novel and cross-dataset
    protocols score novel classes through it)."""
    from bench.protocols import supports_new_classes

    _, task, fitted = _case(conformance, case)
    if not supports_new_classes(case[0], task.config):
        pytest.skip(f"{_case_id(case)} does not declare new_classes for this config")
    assert fitted.for_classes is not None, "declared new_classes but returned no for_classes"
    x = _probe(task)
    own = fitted.on_classes(task.classnames, task.templates, task.dataset).logits(x)
    assert torch.allclose(own, fitted.logits(x), atol=1e-4)
    pick = list(range(task.num_classes))[::-1][:2]
    sub = fitted.on_classes([task.classnames[i] for i in pick], task.templates, task.dataset)
    assert torch.allclose(sub.logits(x), fitted.logits(x)[:, pick], atol=1e-4)


def test_every_variant_resolves_on_every_dataset_and_shot():
    from bench.config import MethodSpec, resolve_method_config
    from datasets_registry import DATASETS

    for name, variant in METHOD_CASES:
        for dataset in DATASETS.names():
            for shots in (1, 2, 4, 8, 16):
                got, cfg = resolve_method_config(MethodSpec(name, variant), dataset, shots)
                assert got == variant and isinstance(cfg, dict)
                json.dumps(cfg)
                for value in cfg.values():
                    assert not (isinstance(value, dict) and "by_shots" in value), (name, value)


# --- every dataset --------------------------------------------------------------------------

def _dataset_names():
    from datasets_registry import DATASETS

    return DATASETS.names()


@pytest.mark.parametrize("name", _dataset_names())
def test_dataset_contract(name, miniroot, demo_root_or_none):
    from bench.identity import draw_subset
    from datasets_registry import DATASETS
    from tests.miniroot import MINI_CLASSNAMES, MINI_VARIANT_CLASSNAMES

    entry = DATASETS.entry(name)
    ds = entry.obj
    assert ds.templates and all("{}" in t for t in ds.templates)
    if name in MINI_VARIANT_CLASSNAMES:  # evaluation-only (domain generalization targets)
        splits = ds.load(miniroot)
        assert splits.classnames == MINI_VARIANT_CLASSNAMES[name]
        assert splits.test and splits.train == splits.val == []
        assert splits.source and len(splits.source_classes) == len(splits.classnames)
        assert {lbl for _, lbl in splits.test} <= set(range(len(splits.classnames)))
        return
    if name in MINI_CLASSNAMES:
        splits = ds.load(miniroot)
        assert splits.classnames == MINI_CLASSNAMES[name]
    elif "demo" in entry.tags and demo_root_or_none is not None:
        splits = ds.load(demo_root_or_none)
    else:
        pytest.skip(f"{name}: no miniature data for it (a plugin dataset); checked: templates")
    assert splits.classnames and all(isinstance(c, str) and c for c in splits.classnames)
    assert splits.train and splits.test
    labels = {lbl for _, lbl in splits.train + splits.val + splits.test}
    assert labels <= set(range(len(splits.classnames)))
    first = draw_subset(splits, 2, 1)
    assert draw_subset(splits, 2, 1).to_json() == first.to_json()
    test_items = set(map(tuple, splits.test))
    assert not test_items & set(map(tuple, first.train + first.val))


@pytest.fixture(scope="session")
def demo_root_or_none():
    """The demo suite's data root when it has been generated already (never built here)."""
    try:
        from bench.demo import demo_defaults

        root = Path(demo_defaults(generate=False)["data_root"])
    except Exception:  # noqa: BLE001 - no demo data: the demo datasets are skipped
        return None
    return root if root.is_dir() else None
