"""The offline demo: world, demo suite, pretraining, and the committed tiny CLIP (issue 5)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.demo import CHECKPOINT, MODEL_NAME, demo_defaults
from datasets_registry._demo import world

DEMO_NAMES = ["demo_digits", "demo_sketches", "demo_glyphs", "demo_textures", "demo_signs"]


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    """A private BENCH_DEMO_DIR with the generated demo datasets."""
    d = tmp_path_factory.mktemp("demo")
    old = os.environ.get("BENCH_DEMO_DIR")
    os.environ["BENCH_DEMO_DIR"] = str(d)
    from datasets_registry._demo.suite import ensure_demo_data

    ensure_demo_data()
    yield d
    if old is None:
        os.environ.pop("BENCH_DEMO_DIR", None)
    else:
        os.environ["BENCH_DEMO_DIR"] = old


# -- the world ------------------------------------------------------------------------------------

def test_world_is_deterministic_per_seed_and_step():
    a, ca = world.make_batch(0, 7, 32)
    b, cb = world.make_batch(0, 7, 32)
    assert a.dtype == np.uint8 and a.shape == (32, world.IMAGE_SIZE, world.IMAGE_SIZE, 3)
    assert np.array_equal(a, b) and ca == cb
    c, cc = world.make_batch(1, 7, 32)
    d, cd = world.make_batch(0, 8, 32)
    assert not np.array_equal(a, c) and not np.array_equal(a, d)
    assert all(isinstance(x, str) and x for x in ca)


def test_world_covers_its_kinds():
    _, caps = world.make_batch(3, 0, 400)
    text = " ".join(caps)
    for word in ("digit", "letter", "circle", "striped", "seven", "7"):
        assert word in text, word
    assert any(a.std() > 10 for a in world.make_batch(3, 0, 8)[0])  # not blank images


def test_world_trains_every_text_position_and_names_the_demo_classes():
    """CoOp's prompt puts the class name and the end token at positions 17-20 of the context:
    captions must reach there, or those positional embeddings stay at their random init."""
    from bench.demo.pretrain import _open_clip

    tok = _open_clip().get_tokenizer(MODEL_NAME)
    _, caps = world.make_batch(5, 0, 300)
    lengths = [int((t != 0).sum()) for t in tok(caps)]
    assert max(lengths) >= 22 and min(lengths) <= 6, (min(lengths), max(lengths))
    text = " ".join(caps)
    for word in ("sign", "zigzag", "brick", "concentric"):
        assert word in text, word


def test_crop_view_is_the_protocols_crop_and_keeps_the_size():
    rng = np.random.default_rng(0)
    img = world.to_uint8(world.composite(np.zeros((32, 32, 3), np.float32), (255, 255, 255),
                                         world.shape_mask("square", 16, 16, 10)))
    views = [world.crop_view(rng, img) for _ in range(50)]
    assert all(v.shape == img.shape and v.dtype == np.uint8 for v in views)
    assert sum(not np.array_equal(v, img) for v in views) >= 45
    plain = [world.crop_view(np.random.default_rng(i), img, mirror=False) for i in range(3)]
    assert not np.array_equal(plain[0], plain[1])


def test_every_digit_has_strokes_and_every_texture_renders():
    rng = np.random.default_rng(0)
    for d in range(10):
        assert world.stroke_digit_mask(rng, d).sum() > 10
    for kind in ["striped", "dotted", "checkered", "zigzag", "wavy", "brick", "grid",
                 "concentric", "speckled"]:
        m = world.pattern_mask(rng, kind)
        assert 0.05 < m.mean() < 0.95, kind


# -- the demo suite -------------------------------------------------------------------------------

def test_demo_datasets_are_registered_and_load(demo_dir):
    from datasets_registry import DATASETS, DEMO_TAG

    assert DATASETS.names(DEMO_TAG) == DEMO_NAMES
    root = demo_defaults()["data_root"]
    assert Path(root).is_relative_to(demo_dir)
    for name in DEMO_NAMES:
        ds = DATASETS.get(name).load(root)
        n = len(ds.classnames)
        assert n >= 8
        for split in (ds.train, ds.val, ds.test):
            assert {label for _, label in split} == set(range(n))
        counts = np.bincount([label for _, label in ds.train])
        assert counts.min() >= 16, "16-shot sampling needs 16 train images per class"
        assert (ds.image_dir / ds.test[0][0]).is_file()
    digits = DATASETS.get("demo_digits").load(root)
    assert len(digits.train) + len(digits.val) + len(digits.test) == 1797  # sklearn's digits


def test_demo_data_generation_is_deterministic(tmp_path, demo_dir):
    from datasets_registry._demo.suite import ensure_demo_data, split_file_name

    other = ensure_demo_data(tmp_path / "again")
    first = demo_defaults()["data_root"]
    for name in ("demo_sketches", "demo_digits"):
        f = split_file_name(name)
        assert (other / name / f).read_text() == (first / name / f).read_text()
        rel = json.loads((first / name / f).read_text())["test"][5][0]
        assert (other / name / "images" / rel).read_bytes() == (first / name / "images" / rel).read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_demo_dataset_generates_itself_in_the_demo_root(tmp_path, monkeypatch):
    from datasets_registry import DATASETS

    monkeypatch.setenv("BENCH_DEMO_DIR", str(tmp_path))
    from bench.demo import demo_data_root

    ds = DATASETS.get("demo_textures").load(demo_data_root())
    assert len(ds.test) > 0 and (demo_data_root() / ".complete").is_file()


def test_bench_demo_data_command(run_cli, tmp_path):
    code, out, _ = run_cli("demo", "data", "--root", tmp_path / "d")
    assert code == 0 and str(tmp_path / "d") in out
    assert (tmp_path / "d" / "demo_glyphs" / "split_zhou_demo_glyphs.json").is_file()


# -- pretraining ----------------------------------------------------------------------------------

def test_a_few_pretraining_steps_are_deterministic_and_load_through_open_clip(tmp_path):
    from bench.backbone import Backbone
    from bench.demo.pretrain import pretrain

    a = pretrain(tmp_path / "a.pt", seed=0, steps=3, batch=16, warmup=2, evaluate=False,
                 log=lambda m: None)
    b = pretrain(tmp_path / "b.pt", seed=0, steps=3, batch=16, warmup=2, evaluate=False,
                 log=lambda m: None)
    assert a["steps_run"] == 3 and np.isfinite(a["final_loss"])
    sa, sb = torch.load(tmp_path / "a.pt"), torch.load(tmp_path / "b.pt")
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    c = pretrain(tmp_path / "c.pt", seed=1, steps=3, batch=16, warmup=2, evaluate=False,
                 log=lambda m: None)
    sc = torch.load(tmp_path / "c.pt")
    assert not torch.equal(sa["text_projection"], sc["text_projection"])
    bb = Backbone(MODEL_NAME, str(tmp_path / "a.pt"))
    assert bb.context_length >= 32
    assert json.loads((tmp_path / "a.train.json").read_text())["seed"] == 0


def test_pretraining_lowers_the_loss(tmp_path):
    from bench.demo.pretrain import pretrain

    losses = []
    pretrain(None, seed=0, steps=30, batch=32, warmup=5, lr=2e-3, evaluate=False,
             log=lambda m: losses.append(float(m.split("loss ")[1].split()[0])) if "loss " in m else None)
    assert losses[-1] < losses[0] - 0.2, losses


def test_bench_demo_pretrain_flags_reach_the_training(run_cli, tmp_path, demo_dir):
    """Both entry points share one flag set: ``--logit-scale 0`` learns the scale from CLIP's
    1/0.07, the default trains at a fixed 100."""
    from bench.demo.pretrain import main

    common = ("--steps", "2", "--batch", "8", "--warmup", "1", "--final-logit-scale", "0")
    code, _, err = run_cli("demo", "pretrain", *common, "--logit-scale", "0",
                           "--out", tmp_path / "learned.pt")
    assert code == 0, err
    learned = json.loads((tmp_path / "learned.train.json").read_text())
    assert learned["logit_scale"] == "learned" and 13 < learned["learned_logit_scale"] < 16
    assert main([*common, "--out", str(tmp_path / "fixed.pt")]) == 0
    fixed = json.loads((tmp_path / "fixed.train.json").read_text())
    assert fixed["logit_scale"] == 100.0 and fixed["learned_logit_scale"] == 100.0


# -- the committed checkpoint ---------------------------------------------------------------------

def test_committed_checkpoint_is_small_and_loads_through_open_clip():
    import open_clip

    from bench.backbone import _open_clip

    assert CHECKPOINT.is_file(), "the demo checkpoint is not committed"
    assert CHECKPOINT.stat().st_size <= 25 * 1024 * 1024
    _open_clip()  # registers configs/models
    model, _, preprocess = open_clip.create_model_and_transforms(MODEL_NAME, pretrained=str(CHECKPOINT))
    assert model.context_length >= 32
    assert abs(model.logit_scale.exp().item() - 100.0) < 0.5  # CLIP-like temperature
    d = demo_defaults(generate=False)
    assert d["backbone"] == MODEL_NAME and Path(d["pretrained"]) == CHECKPOINT.resolve()


def _zero_shot(backbone, ds) -> float:
    from PIL import Image

    w = backbone.class_weights(ds.prompt_classnames, ds_templates(ds.name))
    imgs = torch.stack([backbone.eval_transform(Image.open(ds.image_dir / p)) for p, _ in ds.test])
    feats = torch.cat([backbone.encode_images(imgs[i:i + 256]) for i in range(0, len(imgs), 256)])
    pred = (feats / feats.norm(dim=-1, keepdim=True) @ w.T).argmax(-1)
    return 100.0 * (pred == torch.tensor([l for _, l in ds.test])).float().mean().item()


def ds_templates(name):
    from datasets_registry import DATASETS

    return DATASETS.get(name).templates


def test_demo_model_zero_shot_beats_chance_but_is_imperfect(demo_dir):
    from bench.backbone import Backbone
    from datasets_registry import DATASETS

    d = demo_defaults()
    bb = Backbone(d["backbone"], d["pretrained"])
    acc, chance = {}, {}
    for name in DEMO_NAMES:
        ds = DATASETS.get(name).load(d["data_root"])
        acc[name], chance[name] = _zero_shot(bb, ds), 100.0 / len(ds.classnames)
    above = [n for n in DEMO_NAMES if acc[n] >= 2 * chance[n]]
    assert len(above) >= 3, (acc, chance)
    assert any(acc[n] < 90 for n in DEMO_NAMES), f"nothing left to adapt: {acc}"


# -- the story: the few-shot papers' low-shot ordering (issue 20) -------------------------------

@pytest.mark.slow
def test_demo_suite_story(tmp_path, demo_dir):
    """The paper's six methods with their real defaults, 3 seeds, on the demo average: zero-shot
    above the 1-shot linear probe; CLIP-Adapter (visual) at or above zero-shot from 1 shot; CoOp
    above zero-shot from 4 shots; every learned method rising with shots."""
    from methods import METHODS

    needed = {"zero_shot", "linear_probe", "coop", "clip_adapter_visual", "clip_adapter_text",
              "clip_adapter_both"}
    missing = needed - set(METHODS.names())
    if missing:
        pytest.skip(f"methods not registered yet: {sorted(missing)}")
    from bench.cli import main
    from results.store import ResultStore

    out = tmp_path / "out"
    shots = [1, 2, 4, 8, 16]
    code = main(["run", "--methods", ",".join(sorted(needed)), "--shots", ",".join(map(str, shots)),
                 "--seeds", "1,2,3", "--output", str(out), "--quiet"])
    assert code == 0
    recs = [r for r in ResultStore(out).load_all(include_failed=False) if r["status"] == "ok"]
    acc: dict = {}
    for r in recs:
        acc.setdefault((r["method"], r["shots"]), {}).setdefault(r["dataset"], []).append(
            r["metrics"]["top1"])

    def avg(method, k):
        per = acc[(method, k)]
        assert sorted(per) == sorted(DEMO_NAMES), (method, k, sorted(per))
        assert all(len(v) == 3 for v in per.values()), (method, k)
        return float(np.mean([np.mean(v) for v in per.values()]))

    zs = avg("zero_shot", shots[0])
    curve = {m: [avg(m, k) for k in shots] for m in sorted(needed - {"zero_shot"})}
    print("zero-shot", round(zs, 2), {m: [round(v, 2) for v in c] for m, c in curve.items()})
    assert zs > curve["linear_probe"][0], "zero-shot should beat the 1-shot linear probe"
    assert all(v >= zs for v in curve["clip_adapter_visual"]), "CLIP-Adapter below zero-shot"
    assert all(v > zs for v in curve["coop"][2:]), "CoOp not above zero-shot from 4 shots"
    for m, c in curve.items():
        assert c[-1] > c[0] and c[-1] >= max(c) - 1.0, f"{m} does not rise with shots: {c}"


def test_demo_runs_on_the_cpu_unless_a_device_is_named(demo_dir, monkeypatch):
    """The tiny demo model is faster on the CPU than on a GPU (launch-bound): device 'auto'
    picks the CPU for the demo even where CUDA is present; a named device or real data is kept."""
    from bench.cli import build_parser
    from bench.resolve import resolve

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    parse = build_parser().parse_args
    cfg = resolve(parse(["run", "--methods", "zero_shot"]))
    assert cfg.device == "cpu" and cfg.options["workers"] == 0
    assert "--device cuda" in cfg.demo_note
    cfg = resolve(parse(["run", "--methods", "zero_shot", "--device", "cuda"]))
    assert cfg.device == "cuda" and cfg.options["workers"] == 8
    cfg = resolve(parse(["run", "--methods", "zero_shot", "--backbone", "RN50",
                         "--pretrained", "none"]))
    assert cfg.device == "auto"


# -- the demo's ViT (issue 29) ----------------------------------------------------------------------

def test_pretrain_model_flag_builds_the_vit_and_refuses_others(tmp_path, run_cli):
    from bench.backbone import Backbone
    from bench.demo import VIT_MODEL_NAME
    from bench.demo.pretrain import pretrain
    from methods._clip_hooks import vit_problem

    summary = pretrain(tmp_path / "v.pt", seed=0, steps=2, batch=8, warmup=1, evaluate=False,
                       log=lambda m: None, model_name=VIT_MODEL_NAME)
    assert summary["model"] == VIT_MODEL_NAME and np.isfinite(summary["final_loss"])
    vit = Backbone(VIT_MODEL_NAME, str(tmp_path / "v.pt"))
    assert vit_problem(vit.model) is None and vit.image_size == 32
    code, _, err = run_cli("demo", "pretrain", "--model", "bench-demo-xl", "--steps", "1")
    assert code == 2 and "bench-demo-xl" in err


def test_committed_vit_checkpoint_loads_and_is_small():
    from bench.demo import VIT_CHECKPOINT, VIT_MODEL_NAME

    if not VIT_CHECKPOINT.is_file():
        pytest.skip("configs/models/bench-demo-vit.pt not built")
    import open_clip

    from bench.backbone import _open_clip

    assert VIT_CHECKPOINT.stat().st_size <= 25 * 1024 * 1024
    _open_clip()
    model, _, _ = open_clip.create_model_and_transforms(VIT_MODEL_NAME,
                                                        pretrained=str(VIT_CHECKPOINT))
    assert abs(model.logit_scale.exp().item() - 100.0) < 0.5
    summary = json.loads(VIT_CHECKPOINT.with_suffix(".train.json").read_text())
    assert summary["model"] == VIT_MODEL_NAME and summary["steps_run"] == summary["steps"]
