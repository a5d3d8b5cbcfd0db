"""--decode gpu (bench.gpu_images) exercised on CPU tensors: the same crop boxes as the PIL path,
pixels within a stated tolerance, close features, the PNG fallback, identity and the flag."""

import io
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.augment import CropFlip
from bench.augment import view_seed
from bench.gpu_images import DECODES, DeviceImages, EvalGeometry, crop_flip, pil_rgb
from tests.conftest import TINY

SITE = Path(np.__file__).parents[1]
# Real photographs shipped with installed packages (JPEG, 427x640 and 600x512).
PHOTOS = [SITE / "sklearn/datasets/images/china.jpg", SITE / "sklearn/datasets/images/flower.jpg",
          SITE / "matplotlib/mpl-data/sample_data/grace_hopper.jpg"]
PHOTOS = [p for p in PHOTOS if p.is_file()]
# Tolerances (0-255 scale): torch's antialiased bicubic against PIL's bicubic measured 0.15-0.17
# mean absolute difference per pixel on the photos above, max 15 at sharp edges (docs §9).
MEAN_TOL, MAX_TOL = 0.5, 40


def _tensor(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img.convert("RGB")).copy()).permute(2, 0, 1)


def _pil_crop(img: Image.Image, augment: CropFlip, seed: int) -> torch.Tensor:
    return torch.from_numpy(augment(img, seed).copy()).permute(2, 0, 1)


def test_same_boxes_and_flips_as_the_pil_path():
    """A coordinate image (red = x, green = y): each output pixel says where it came from, so a
    box or flip that differs by a few pixels shows as a difference far above the tolerance."""
    h, w = 300, 410
    yy, xx = np.mgrid[0:h, 0:w]
    arr = np.stack([xx * 255 // (w - 1), yy * 255 // (h - 1), np.full_like(xx, 128)], -1)
    img = Image.fromarray(arr.astype(np.uint8))
    augment = CropFlip(64, (0.08, 1.0), (0, 0, 0), (1, 1, 1))
    flips = 0
    for v in range(40):
        seed = view_seed("coords.png", v, 7)
        ours, theirs = crop_flip(_tensor(img), augment, seed).int(), _pil_crop(img, augment, seed).int()
        assert ours.shape == theirs.shape == (3, 64, 64)
        assert (ours - theirs).abs().float().mean() < 1.0, v
        flips += int(ours[0, 32, 0] > ours[0, 32, -1])  # red falls left to right: flipped
    assert 5 < flips < 35  # both flips occur, as p = 0.5 wants


def test_a_shifted_box_would_be_caught():
    """The check above can fail: the same crop one box off differs by far more than 1."""
    h, w = 300, 410
    yy, xx = np.mgrid[0:h, 0:w]
    arr = np.stack([xx * 255 // (w - 1), yy * 255 // (h - 1), np.full_like(xx, 128)], -1)
    img = Image.fromarray(arr.astype(np.uint8))
    augment = CropFlip(64, (0.08, 1.0), (0, 0, 0), (1, 1, 1))
    seed = view_seed("coords.png", 0, 7)
    top, left, ch, cw, flip = augment.params(w, h, random.Random(seed))
    from torchvision.transforms import functional as F

    shifted = F.resized_crop(_tensor(img), top, min(left + 10, w - cw), ch, cw, [64, 64],
                             interpolation=F.InterpolationMode.BICUBIC, antialias=True)
    shifted = shifted.flip(-1) if flip else shifted
    if left + 10 <= w - cw:
        assert (shifted.int() - _pil_crop(img, augment, seed).int()).abs().float().mean() > 2


@pytest.mark.skipif(not PHOTOS, reason="no photographs among the installed packages")
def test_real_jpegs_decode_crop_and_eval_within_tolerance(tiny_backbone):
    from bench.gpu_images import _decode_jpeg

    augment = CropFlip(224, (0.08, 1.0), (0, 0, 0), (1, 1, 1))
    eval_t = tiny_backbone.eval_transform
    geometry = EvalGeometry(eval_t)
    for path in PHOTOS:
        data = torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8)
        decoded = _decode_jpeg([data], torch.device("cpu"))[0]
        reference = pil_rgb(path)
        assert decoded.shape == reference.shape
        assert (decoded.int() - reference.int()).abs().float().mean() < MEAN_TOL
        with Image.open(path) as img:
            img = img.convert("RGB")
            diffs = []
            for v in range(20):
                seed = view_seed(path.name, v, 3)
                d = (crop_flip(decoded, augment, seed).int() - _pil_crop(img, augment, seed).int()).abs()
                assert d.max() <= MAX_TOL
                diffs.append(d.float().mean().item())
            assert np.mean(diffs) < MEAN_TOL, (path.name, diffs)
            pil_eval = eval_t.transforms[1](eval_t.transforms[0](img))
        d = (geometry(decoded).int() - _tensor(pil_eval).int()).abs()
        assert d.float().mean() < MEAN_TOL and d.max() <= MAX_TOL


def _jpeg_root(tmp_path: Path, n: int = 6) -> tuple[Path, list[str]]:
    rels = []
    for i, path in enumerate(PHOTOS * ((n + len(PHOTOS) - 1) // max(1, len(PHOTOS)))):
        if i == n:
            break
        rel = f"img{i}.jpg"
        with Image.open(path) as img:  # scaled and shifted so that the images differ
            img.convert("RGB").resize((200 + 17 * i, 160 + 9 * i)).save(tmp_path / rel, quality=90)
        rels.append(rel)
    return tmp_path, rels


@pytest.mark.skipif(not PHOTOS, reason="no photographs among the installed packages")
def test_features_of_both_paths_are_close(tmp_path, tiny_backbone):
    """The tiny model's features from DeviceImages (CPU tensors) and from ImageFiles (PIL)."""
    from bench.features import ImageFiles, encode_files

    root, rels = _jpeg_root(tmp_path)
    bb = tiny_backbone
    augment = CropFlip(bb.image_size, (0.08, 1.0), bb.mean, bb.std)
    geometry = EvalGeometry(bb.eval_transform)
    pairs = [
        (ImageFiles(root, rels, bb.eval_transform, image_size=bb.image_size),
         DeviceImages(root, rels, "cpu", 4, eval=geometry, image_size=bb.image_size,
                      normalization=(bb.mean, bb.std))),
        (ImageFiles(root, rels, None, views=[0, 1, 2], salt=5, image_size=bb.image_size,
                    augment=augment),
         DeviceImages(root, rels, "cpu", 4, augment=augment, views=[0, 1, 2], salt=5,
                      image_size=bb.image_size)),
    ]
    for cpu_files, dev_files in pairs:
        a = encode_files(bb, cpu_files, batch_size=4, progress=False)
        b = encode_files(bb, dev_files, batch_size=4, progress=False)
        assert a.shape == b.shape
        cos = torch.nn.functional.cosine_similarity(a, b, dim=-1)
        assert cos.min() > 0.99, cos
        assert not dev_files.fallbacks


def test_png_and_broken_files_take_the_fallback(tmp_path):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "a.png")
    Image.fromarray(arr).save(tmp_path / "b.jpg", quality=95)
    (tmp_path / "c.jpg").write_bytes(b"\xff\xd8\xff" + b"not really a jpeg" * 4)
    (tmp_path / "d.png").write_bytes(b"garbage")
    # A JPEG in CMYK, which PIL reads and the batched RGB decode may or may not
    Image.fromarray(arr).convert("CMYK").save(tmp_path / "e.jpg")
    rels = ["a.png", "b.jpg", "c.jpg", "d.png", "e.jpg"]

    class Crop:  # a center crop to 32 px, exact, so that the PNG can be compared bit for bit
        def __call__(self, img):
            return img[:, 4:36, 9:41]

    files = DeviceImages(tmp_path, rels, "cpu", batch_size=8, eval=Crop(), image_size=32)
    (images, errors), = list(files)
    assert images.shape == (5, 3, 32, 32) and images.dtype == torch.uint8
    assert torch.equal(images[0], torch.from_numpy(arr).permute(2, 0, 1)[:, 4:36, 9:41])
    assert errors[0] == errors[1] == errors[4] == ""
    assert "c.jpg" in errors[2] and "d.png" in errors[3]  # unreadable: named, blank image
    assert images[2].sum() == 0 and images[3].sum() == 0
    assert "a.png" in files.fallbacks and "b.jpg" not in files.fallbacks
    with Image.open(tmp_path / "e.jpg") as cmyk:
        expect = _tensor(cmyk)[:, 4:36, 9:41].int()
    assert (images[4].int() - expect).abs().float().mean() < 2


def test_eval_geometry_refuses_what_it_does_not_know(tiny_backbone):
    from torchvision import transforms as T

    with pytest.raises(ValueError, match="Resize \\+ CenterCrop"):
        EvalGeometry(T.Compose([T.CenterCrop(32), T.ToTensor()]))
    with pytest.raises(ValueError, match="bicubic"):
        EvalGeometry(T.Compose([T.Resize(32), T.CenterCrop(32), T.ToTensor()]))
    geometry = EvalGeometry(tiny_backbone.eval_transform)
    assert geometry.crop == [tiny_backbone.image_size] * 2


def test_dataset_features_keys_and_describe_change_only_for_gpu(miniroot, tiny_backbone, tmp_path):
    from bench.features import DatasetFeatures, FeatureCache
    from bench.base.errors import BenchError
    from datasets_registry import DATASETS

    splits = DATASETS.get("dtd").load(miniroot)
    cache = FeatureCache(tmp_path / "cache")
    cpu = DatasetFeatures(tiny_backbone, splits, cache, progress=False)
    gpu = DatasetFeatures(tiny_backbone, splits, cache, progress=False, decode="gpu")
    assert cpu.describe() == {"device": "cpu", "precision": "fp32", "cache_dtype": "float32"}
    assert gpu.describe() == {**cpu.describe(), "decode": "gpu"}
    assert cache.key_dir(cpu._key("test", "eval")) != cache.key_dir(gpu._key("test", "eval"))
    positions = list(range(len(splits.test)))
    a, b = cpu.eval_features("test", positions), gpu.eval_features("test", positions)
    assert cache.misses == 2 * len(positions)  # the gpu features were computed, not read
    assert torch.nn.functional.cosine_similarity(a, b, dim=-1).min() > 0.99
    views = gpu.augmented([0, 1], [0, 1], "protocol", "s")
    assert views.shape[:2] == (2, 2)
    with pytest.raises(BenchError, match="decode must be one of"):
        DatasetFeatures(tiny_backbone, splits, cache, decode="nvjpeg")


def test_decode_is_part_of_the_identity_and_the_report_labels():
    from bench.identity import feature_inputs
    from results.aggregate import _features_sig

    before = feature_inputs("cpu", {})
    assert feature_inputs("cpu", {"decode": "cpu"}) == before  # old records stay done
    assert feature_inputs("cuda", {"decode": "gpu"})["decode"] == "gpu"
    assert feature_inputs("cuda", {"decode": "gpu"}) != feature_inputs("cuda", {})
    old = {"inputs": {"features": {"device": "cuda", "precision": "amp", "cache_dtype": "float32"}}}
    new = {"inputs": {"features": {**old["inputs"]["features"], "decode": "gpu"}}}
    assert _features_sig(old) != _features_sig(new)
    assert _features_sig(old)[-1] == "cpu" and _features_sig(new)[-1] == "gpu"


def test_report_tags_rows_by_decode_path():
    from results.aggregate import records_to_frame

    def rec(decode, top1):
        feats = {"device": "cuda", "precision": "amp", "cache_dtype": "float32"}
        if decode:
            feats["decode"] = decode
        return {"status": "done", "method": "zero_shot", "dataset": "dtd", "shots": 1, "seed": 1,
                "backbone": "RN50-quickgelu", "config": {}, "top1": top1, "created": 1.0,
                "inputs": {"features": feats}, "features": feats}

    frame = records_to_frame([rec(None, 50.0), rec("gpu", 50.5)])
    tags = sorted(frame["features_tag"])
    assert tags == ["cpu decode", "gpu decode"], tags


def test_decode_choices_agree():
    from bench import resolve as run

    assert run.DECODES == DECODES


@pytest.mark.parametrize("extra, needle", [
    (["--decode", "gpu", "--device", "cpu"], "--decode gpu decodes images on the run's CUDA"),
    (["--decode", "nvjpeg"], "invalid choice"),
])
def test_decode_flag_errors(run_cli, miniroot, tmp_path, extra, needle):
    code, _, err = run_cli("run", "--backbone", TINY, "--pretrained", "none", "--quiet",
                           "--data-root", miniroot, "--output", tmp_path, "--dry-run", *extra)
    assert code == 2
    assert needle in err and "Traceback" not in err
    if "CUDA" in needle:  # ours: one line; argparse's choice error also prints the usage
        assert len(err.strip().splitlines()) == 1, err


def test_run_with_decode_gpu_records_it_end_to_end(run_cli, miniroot, tmp_path, monkeypatch):
    """`bench run --decode gpu` on CPU tensors (the CUDA check patched away): the records say
    gpu in both their identity and their features description, and a rerun computes nothing."""
    import json

    from bench import resolve as run

    monkeypatch.setattr(run, "_cuda_expected", lambda device: True)
    out = tmp_path / "out"
    argv = ["run", "--backbone", TINY, "--pretrained", "none", "--quiet", "--device", "cpu",
            "--data-root", miniroot, "--datasets", "dtd", "--methods", "zero_shot",
            "--shots", "1", "--seeds", "1", "--output", out, "--decode", "gpu"]
    code, _, err = run_cli(*argv)
    assert code == 0, err
    rec = json.loads(next((out / "results").rglob("*.json")).read_text())
    assert rec["inputs"]["features"]["decode"] == "gpu"
    assert rec["features"].get("decode") == "gpu"


def test_sweep_file_decode_key(run_cli, miniroot, tmp_path):
    """`decode:` in a sweep YAML is read like --decode (and refused the same way on a CPU)."""
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("decode: gpu\ndevice: cpu\n")
    code, _, err = run_cli("run", "--config", sweep, "--backbone", TINY, "--pretrained", "none",
                           "--data-root", miniroot, "--output", tmp_path / "o", "--dry-run")
    assert code == 2 and "--decode gpu" in err and "Traceback" not in err
    sweep.write_text("decode: gpu2\n")
    code, _, err = run_cli("run", "--config", sweep, "--backbone", TINY, "--pretrained", "none",
                           "--data-root", miniroot, "--output", tmp_path / "o", "--dry-run")
    assert code == 2 and "gpu2" in err
