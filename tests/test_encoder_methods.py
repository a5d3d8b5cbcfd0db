"""The second kind of method (methods/tuning.py, ``kind="encoder"``) as the core runs it
(bench/encoder_cells.py): the train crops, the batched test scoring, the frozen model's guard,
the ViT-only refusal, plugins of this kind. The per-method contract is tests/test_conformance.py."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import TINY

PLUGIN = '''
import torch
from methods import METHODS
from methods.base import normalize
from methods.tuning import EncoderFitted


def _zero_shot(task):
    weights = task.backbone.class_weights(task.classnames, task.templates)

    def logits(images):
        return 100 * normalize(task.backbone.model.encode_image(images).float()) @ weights.T

    return logits


@METHODS.register("enc_plug", kind="encoder", epochs=lambda c, n, s: 1, description="test")
def fit(task):
    crops = task.train.crops(0, torch.arange(len(task.train)))
    assert crops.shape[1:] == (3, task.backbone.image_size, task.backbone.image_size)
    return EncoderFitted(_zero_shot(task), {"crops": int(len(crops))})


@METHODS.register("enc_mutates", kind="encoder", epochs=lambda c, n, s: 0, description="bad")
def fit_bad(task):
    task.backbone.model.visual.train()  # what no method may do
    return EncoderFitted(_zero_shot(task), {})


@METHODS.register("enc_weird", kind="weird", description="an unknown kind")
def fit_weird(task):
    raise AssertionError("never run")
'''


def _splits(miniroot, name="dtd"):
    from datasets_registry import DATASETS

    return DATASETS.get(name).load(miniroot)


def _decoded(splits, positions):
    from PIL import Image

    items = splits.split("train")
    return [Image.open(splits.image_dir / items[p][0]).convert("RGB") for p in positions], \
        [items[p][0] for p in positions]


def test_crops_are_the_per_epoch_views_crops(tiny_backbone, tmp_path):
    """Epoch e's crop of an image is the one the frozen-feature methods' per-epoch views
    encode for (seed, image, e): same pixels, so the same frozen features."""
    from bench.features import DatasetFeatures, FeatureCache
    from bench.views import epoch_salt
    from bench.encoder_cells import DecodedTrainImages
    from tests.test_conformance import write_conformance_root

    splits = _splits(write_conformance_root(tmp_path / "noise"))  # noise: crops differ
    positions = [0, 1, 2, 5]
    images, rels = _decoded(splits, positions)
    bb = tiny_backbone
    train = DecodedTrainImages(images, rels, torch.zeros(4, dtype=torch.long), 3, bb.image_size,
                               bb.mean, bb.std)
    features = DatasetFeatures(bb, splits, FeatureCache(tmp_path / "cache"), progress=False)
    rows = torch.arange(4)
    for epoch in (0, 4):
        ours = bb.encode_images(train.crops(epoch, rows))
        views = features.augmented(positions, [epoch], "protocol", epoch_salt("protocol", 3),
                                   cache=False)[0]
        torch.testing.assert_close(ours, views, rtol=1e-5, atol=1e-5)
    assert not torch.equal(train.crops(0, rows), train.crops(1, rows))  # fresh every epoch
    other = DecodedTrainImages(images, rels, torch.zeros(4, dtype=torch.long), 4, bb.image_size,
                               bb.mean, bb.std)
    assert not torch.equal(train.crops(0, rows), other.crops(0, rows))  # and every seed
    assert torch.equal(train.crops(2, rows[1:3]), train.crops(2, rows)[1:3])  # per row


def _clip_lora_task(backbone, splits):
    from bench.config import MethodSpec, resolve_method_config
    from methods.tuning import EncoderTask, ImageSplit, TensorTrainImages

    _, cfg = resolve_method_config(MethodSpec("clip_lora"), "dtd", 1)
    cfg = {**cfg, "iters_per_shot": 2, "dropout": 0.0}
    gen = torch.Generator().manual_seed(0)
    size = backbone.image_size
    images = torch.randn(3, 3, size, size, generator=gen)
    labels = torch.arange(3)
    return EncoderTask("dtd", [c.replace("_", " ") for c in splits.classnames],
                       ["a photo of a {}."], 1, 1, cfg, torch.device("cpu"),
                       TensorTrainImages(images, labels), ImageSplit(images, labels), backbone)


def test_test_images_scored_in_batches_whatever_the_batch_size(miniroot, tiny_backbone):
    from bench.encoder_cells import TestImages
    from bench.evaluate import chunked_logits as image_logits
    from methods import METHODS

    splits = _splits(miniroot)
    fitted = METHODS.get("clip_lora")(_clip_lora_task(tiny_backbone, splits))
    test = TestImages(splits, "test", range(len(splits.test)), tiny_backbone)
    whole = torch.cat(list(test.batches(1000, "cpu")))
    fitted.eval_batch_size = 1000
    once = image_logits(fitted, test, "cpu")
    fitted.eval_batch_size = 2
    in_twos = image_logits(fitted, test, "cpu")
    assert once.shape == (len(splits.test), len(splits.classnames))
    torch.testing.assert_close(in_twos, once, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fitted.logits(whole), once)
    # rows picked as the base-to-novel evaluation picks them: the same images' logits
    rows = [3, 0, 2]
    torch.testing.assert_close(image_logits(fitted, test[rows], "cpu"), once[rows],
                               rtol=1e-5, atol=1e-5)


def _run(run_cli, miniroot, tmp_path, *args):
    return run_cli("run", "--datasets", "dtd", "--shots", "1", "--seeds", "1",
                   "--data-root", miniroot, "--output", tmp_path / "out", "--quiet", *args)


def test_vit_only_method_refused_on_a_resnet_in_one_line(run_cli, miniroot, tmp_path):
    code, _, err = _run(run_cli, miniroot, tmp_path, "--methods", "zero_shot,maple",
                        "--backbone", "bench-demo-rn", "--pretrained", "none")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "maple tunes inside a ViT image tower" in lines[0]
    assert "bench-demo-rn" in lines[0] and "ResNet" in lines[0]
    assert not (tmp_path / "out" / "results").exists()


def test_patterns_leave_vit_only_methods_out_on_a_resnet(run_cli, miniroot, tmp_path):
    code, _, err = _run(run_cli, miniroot, tmp_path, "--methods", "clip_l*,zero_shot",
                        "--backbone", "bench-demo-rn", "--pretrained", "none")
    assert code == 0, err
    assert "clip_lora left out" in err
    recs = [json.loads(p.read_text()) for p in (tmp_path / "out" / "results").rglob("*.json")]
    assert {r["method"] for r in recs} == {"zero_shot"}
    code, _, err = _run(run_cli, miniroot, tmp_path, "--methods", "clip_l*",
                        "--backbone", "bench-demo-rn", "--pretrained", "none")
    assert code == 2 and "selects no method that can run on this backbone" in err


def test_named_vit_method_on_the_demo_runs_the_demo_vit():
    from bench.resolve import _vit_methods
    from bench.config import MethodSpec
    from bench.demo import CHECKPOINT, VIT_CHECKPOINT, VIT_MODEL_NAME
    from methods import METHODS

    if not VIT_CHECKPOINT.is_file():
        pytest.skip("configs/models/bench-demo-vit.pt not built")
    rn = [("bench-demo-rn", str(CHECKPOINT))]
    specs = [MethodSpec("coop"), MethodSpec("clip_lora")]
    backbones, kept, note = _vit_methods("coop,clip_lora", specs, rn, "bench: demo", METHODS)
    assert backbones == [(VIT_MODEL_NAME, str(VIT_CHECKPOINT.resolve()))] and kept == specs
    assert "clip_lora" in note and VIT_MODEL_NAME in note
    # `all` keeps the demo's ResNet (its numbers unchanged) and leaves the ViT-only ones out
    backbones, kept, _ = _vit_methods("all", specs, rn, "bench: demo", METHODS)
    assert backbones == rn and kept == [MethodSpec("coop")]


def test_encoder_plugin_runs_and_a_mutating_one_fails_its_cell(run_cli, miniroot, tmp_path,
                                                               plugin_state):
    path = tmp_path / "enc_plugins.py"
    path.write_text(PLUGIN)
    code, _, err = _run(run_cli, miniroot, tmp_path, "--include", path,
                        "--methods", "enc_plug,enc_mutates,zero_shot",
                        "--backbone", TINY, "--pretrained", "none")
    assert code != 2, err
    recs = {json.loads(p.read_text())["method"]: json.loads(p.read_text())
            for p in (tmp_path / "out" / "results").rglob("*.json")}
    ok = recs["enc_plug"]
    assert ok["status"] == "ok" and ok["selected"] == {"crops": ok["fewshot"]["n_train"]}
    assert ok["views"] == {"mode": "online", "transform": "protocol", "inputs": "images"}
    # the plugin scores like zero-shot through the frozen model: the same predictions
    assert ok["metrics"]["top1"] == pytest.approx(recs["zero_shot"]["metrics"]["top1"])
    assert recs["enc_mutates"]["status"] == "failed"
    assert "training mode" in recs["enc_mutates"]["error"]["message"]


def test_unknown_kind_is_one_line(run_cli, miniroot, tmp_path, plugin_state):
    path = tmp_path / "weird_plugin.py"
    path.write_text(PLUGIN)
    code, _, err = _run(run_cli, miniroot, tmp_path, "--include", path, "--methods",
                        "enc_weird", "--backbone", TINY, "--pretrained", "none")
    assert code == 2
    assert "registered with kind='weird'; choose one of feature, encoder" in err
    assert len(err.strip().splitlines()) == 1



def test_published_few_shot_numbers_of_the_encoder_methods():
    """The 11-dataset ViT-B/16 means issue 29 cites, shipped with their sources."""
    from results.published import load_published

    rows = [r for r in load_published() if r.method in ("clip_lora", "promptsrc", "maple")]
    assert all(r.source and r.backbone == "ViT-B-16" and r.pretrained == "openai" for r in rows)
    by = {(r.method, r.shots): r.top1 for r in rows if r.dataset == "average"}
    shots = (1, 2, 4, 8, 16)
    assert [by[("clip_lora", k)] for k in shots] == [72.20, 75.41, 77.32, 80.10, 82.89]
    assert [by[("promptsrc", k)] for k in shots] == [72.32, 75.29, 78.35, 80.69, 82.87]
    assert [by[("maple", k)] for k in shots] == [69.27, 72.58, 75.37, 78.89, 81.79]
