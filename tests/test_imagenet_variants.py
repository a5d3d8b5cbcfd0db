"""ImageNet-V2, -Sketch, -A and -R: evaluation-only datasets whose classes map to ImageNet labels."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench.cli import main
from bench.base.errors import BenchError
from datasets_registry import COOP_TAG, DATASETS, DOMAIN_TAG

try:
    from tests.miniroot import (IMAGENET_VARIANTS, MINI_VARIANT_CLASSNAMES,
                                VARIANT_TEST_PER_CLASS, make_miniroot)
except ImportError:  # tests/ is on sys.path (pytest's rootdir-less import mode)
    from miniroot import (IMAGENET_VARIANTS, MINI_VARIANT_CLASSNAMES, VARIANT_TEST_PER_CLASS,
                          make_miniroot)

VARIANTS = ["imagenet_v2", "imagenet_sketch", "imagenet_a", "imagenet_r"]


@pytest.fixture(scope="module")
def miniroot(tmp_path_factory) -> Path:
    return make_miniroot(tmp_path_factory.mktemp("data"))


def _image_folder(root: Path, name: str) -> Path:
    folder, image_subdir, _ = IMAGENET_VARIANTS[name]
    return root / folder / image_subdir


def _make_classes(image_dir: Path, folders: list[str]) -> None:
    for f in folders:
        (image_dir / f).mkdir(parents=True)
        (image_dir / f / "a.jpg").write_bytes(b"x")


def test_registered_as_domain_targets_not_in_the_few_shot_all():
    assert DATASETS.names(DOMAIN_TAG) == VARIANTS
    assert not set(VARIANTS) & set(DATASETS.select("all", all_tag=COOP_TAG))
    assert DATASETS.select("imagenet_*") == VARIANTS
    sizes = {n: (e.classes, e.train, e.val, e.test)
             for n in VARIANTS for e in [DATASETS.get(n).expected]}
    assert sizes == {"imagenet_v2": (1000, 0, 0, 10000), "imagenet_sketch": (1000, 0, 0, 50889),
                     "imagenet_a": (200, 0, 0, 7500), "imagenet_r": (200, 0, 0, 30000)}


@pytest.mark.parametrize("name", VARIANTS)
def test_loads_evaluation_only_with_imagenet_labels(miniroot, name):
    splits = DATASETS.get(name).load(miniroot)
    labels = IMAGENET_VARIANTS[name][2]
    assert splits.train == [] and splits.val == []
    assert splits.classnames == MINI_VARIANT_CLASSNAMES[name]
    assert splits.source == "imagenet"
    assert splits.source_classes == labels
    assert len(splits.test) == VARIANT_TEST_PER_CLASS * len(labels)
    assert sorted({lbl for _, lbl in splits.test}) == list(range(len(labels)))
    assert all((splits.image_dir / rel).is_file() for rel, _ in splits.test)
    # every image's class is the one its folder names, and README.txt is no class
    imagenet = DATASETS.get("imagenet").load(miniroot)
    wnids = sorted(p.name for p in (miniroot / "imagenet/images/train").iterdir())
    for rel, lbl in splits.test:
        folder = rel.split("/")[0]
        wnid = wnids[int(folder)] if name == "imagenet_v2" else folder
        assert imagenet.classnames[wnids.index(wnid)] == splits.classnames[lbl]


def test_a_maps_a_subset_of_wnids_in_sorted_order_without_classnames_txt(tmp_path):
    """No classnames.txt anywhere: the standard 1000 wnids and open_clip's names. The labels
    below are ImageNet's (stingray 6, goldfinch 11, junco 13)."""
    image_dir = tmp_path / "imagenet-adversarial/imagenet-a"
    _make_classes(image_dir, ["n01534433", "n01498041", "n01531178"])
    (image_dir / "README.txt").write_text("x")
    splits = DATASETS.get("imagenet_a").load(tmp_path)
    assert splits.source_classes == [6, 11, 13]
    assert splits.classnames == ["stingray", "goldfinch", "junco"]
    assert [rel for rel, _ in splits.test] == ["n01498041/a.jpg", "n01531178/a.jpg",
                                               "n01534433/a.jpg"]
    assert [lbl for _, lbl in splits.test] == [0, 1, 2]


def test_v2_folders_are_labels_in_numeric_order(tmp_path):
    image_dir = tmp_path / "imagenetv2/imagenetv2-matched-frequency-format-val"
    _make_classes(image_dir, ["10", "2", "0"])
    splits = DATASETS.get("imagenet_v2").load(tmp_path)
    assert splits.source_classes == [0, 2, 10]
    assert splits.classnames == ["tench", "great white shark", "brambling"]


def test_own_classnames_txt_first_then_imagenets(tmp_path):
    image_dir = tmp_path / "imagenet-rendition/imagenet-r"
    _make_classes(image_dir, ["n01443537"])
    (tmp_path / "imagenet").mkdir()
    (tmp_path / "imagenet/classnames.txt").write_text("n01440764 tench\nn01443537 goldfish\n")
    assert DATASETS.get("imagenet_r").load(tmp_path).classnames == ["goldfish"]
    (tmp_path / "imagenet-rendition/classnames.txt").write_text(
        "n01440764 tench\nn01443537 gold fish\n")
    splits = DATASETS.get("imagenet_r").load(tmp_path)
    assert splits.classnames == ["gold fish"] and splits.source_classes == [1]


@pytest.mark.parametrize("name, folder, message", [
    ("imagenet_sketch", "sketch_stuff", "sketch_stuff .* are not ImageNet classes"),
    ("imagenet_v2", "1000", "1000 .* are not ImageNet labels 0..999"),
    ("imagenet_v2", "n01440764", "are not ImageNet labels"),
])
def test_foreign_class_folders_are_named(tmp_path, name, folder, message):
    _make_classes(_image_folder(tmp_path, name), [folder])
    with pytest.raises(BenchError, match=message):
        DATASETS.get(name).load(tmp_path)


def test_missing_image_folder_names_the_download(tmp_path):
    (tmp_path / "imagenet-sketch").mkdir()
    with pytest.raises(BenchError, match="imagenet-sketch/images not found; get it from "
                                         "https://github.com/HaohanWang/ImageNet-Sketch"):
        DATASETS.get("imagenet_sketch").load(tmp_path)


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_data_check_all_four(tmp_path, capsys):
    root = make_miniroot(tmp_path / "data")
    code, out, err = run(capsys, "data", "check", "--data-root", str(root),
                         "--datasets", "imagenet_*")
    assert code == 0, out + err
    assert "ImageNet-A [imagenet_a] in imagenet-adversarial/: OK" in out
    assert "classes 2 (published 200), train 0, val 0, test 4 (published 7,500)" in out
    assert "all 4 image files decode" in out
    assert out.count("note: evaluation only") == 4
    assert "summary: 4 of 4 usable" in out


def test_data_check_missing_folder_says_what_to_get(tmp_path, capsys):
    root = make_miniroot(tmp_path / "data")
    shutil.rmtree(root / "imagenet-adversarial")
    shutil.rmtree(root / "imagenet-rendition/imagenet-r")
    code, out, _ = run(capsys, "data", "check", "--data-root", str(root),
                       "--datasets", "imagenet_a,imagenet_r")
    assert code == 1
    assert "ImageNet-A [imagenet_a] in imagenet-adversarial/: MISSING" in out
    assert (f"{root / 'imagenet-adversarial/imagenet-a'}/  <- imagenet-a.tar from "
            f"https://github.com/hendrycks/natural-adv-examples") in out
    assert "ImageNet-R [imagenet_r] in imagenet-rendition/: UNUSABLE" in out
    assert (f"missing folder {root / 'imagenet-rendition/imagenet-r'}/  <- imagenet-r.tar from "
            f"https://github.com/hendrycks/imagenet-r") in out
    assert out.count("imagenet-r.tar from") == 1  # said once, not again by the failed load
    assert "summary: 0 of 2 usable; missing: ImageNet-A; unusable: ImageNet-R" in out


def test_fewshot_on_an_evaluation_only_dataset_is_a_usage_error(miniroot, capsys):
    code, _, err = run(capsys, "data", "fewshot", "--dataset", "imagenet_a", "--shots", "1",
                       "--seed", "1", "--data-root", str(miniroot))
    assert code == 2
    assert "ImageNet-A has no train images to sample: it is an evaluation-only dataset " \
           "(train on imagenet" in err
    assert "Traceback" not in err


# -- ImageNet-A/-R scored over their 200 classes (bench/evaluate.py, source_subset_model) --------
SUBSET_METHODS = ["zero_shot", "coop", "kgcoop", "prograd", "cocoop", "clip_adapter_visual",
                  "clip_adapter_text", "clip_adapter_both"]


def _imagenet_fit(method: str, backbone):
    """``method`` fitted briefly on 1000 ImageNet names (16 train images, the tiny model)."""
    import torch
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    from bench.config import MethodSpec, resolve_method_config
    from bench.views import CachedViews
    from methods import METHODS
    from methods.base import FeatureSplit, Task

    names = list(IMAGENET_CLASSNAMES)
    _, cfg = resolve_method_config(MethodSpec(method), "imagenet", 16)
    cfg = {**cfg, **{k: v for k, v in {"epochs": 1, "batch_size": 8}.items() if k in cfg}}
    dim = backbone.model.text_projection.shape[1]
    g = torch.Generator().manual_seed(0)
    y = torch.arange(0, 1000, 63)  # 16 classes seen in training
    x = torch.randn(len(y), dim, generator=g)
    views = x[None] + 0.1 * torch.randn(2, *x.shape, generator=g)
    task = Task(dataset="imagenet", classnames=names, templates=["a photo of a {}."], shots=1,
                seed=1, config=cfg, device=torch.device("cpu"), train=FeatureSplit(x, y),
                val=FeatureSplit(x[:4], y[:4]), train_views=CachedViews(views, 1),
                backbone=backbone)
    return METHODS.get(method)(task), names


@pytest.mark.parametrize("method", SUBSET_METHODS)
def test_a_and_r_score_their_200_classes_like_the_1000_way_columns(tiny_backbone, method):
    """Through Fitted.on_classes with the 200 names, each method computes only those classes;
    a class's logit does not depend on the other classes for any of them, so the logits equal
    the 1000-way classifier's columns up to float rounding (batches of another size)."""
    from types import SimpleNamespace

    import torch

    from bench.evaluate import source_subset_model

    fitted, names = _imagenet_fit(method, tiny_backbone)
    ctx = SimpleNamespace(splits=SimpleNamespace(classnames=names, prompt_classnames=names),
                          dataset=SimpleNamespace(templates=["a photo of a {}."]))
    x = torch.randn(40, tiny_backbone.model.text_projection.shape[1],
                    generator=torch.Generator().manual_seed(1))
    real = fitted.for_classes
    # 200 source classes in label order, as A/R map them: spread over the 1000 (their longest
    # prompt is the 1000's, 12 tokens), and the first 200 (longest 8: a shorter text sequence)
    for columns in (list(range(3, 1000, 5)), list(range(200))):
        seen = []
        fitted.for_classes = lambda n, t, d: seen.append((len(n), d)) or real(n, t, d)
        model, cols = source_subset_model(fitted, columns, ctx, {"dataset": "imagenet"})
        assert cols is None and seen == [(200, "imagenet")]  # only the 200 classes computed
        sub, full = model.logits(x), fitted.logits(x)[:, columns]
        assert sub.shape == (40, 200)
        torch.testing.assert_close(sub, full, rtol=1e-5, atol=2e-4)
        assert torch.equal(sub.argmax(1), full.argmax(1))


def test_per_class_methods_and_complete_targets_keep_the_columns(tiny_backbone):
    from types import SimpleNamespace

    from bench.evaluate import source_subset_model
    from methods.base import Fitted

    names = [f"c{i}" for i in range(10)]
    ctx = SimpleNamespace(splits=SimpleNamespace(classnames=names, prompt_classnames=names),
                          dataset=SimpleNamespace(templates=["{}"]))
    per_class = Fitted(lambda f: f)  # no for_classes (Tip-Adapter, linear probe, ...)
    assert source_subset_model(per_class, [1, 4], ctx, {"dataset": "d"}) == (per_class, [1, 4])
    fitted, _ = _imagenet_fit("zero_shot", tiny_backbone)
    every = list(range(10))  # a target with all the source's classes (V2, a complete Sketch)
    assert source_subset_model(fitted, every, ctx, {"dataset": "d"}) == (fitted, every)
    assert source_subset_model(fitted, None, ctx, {"dataset": "d"}) == (fitted, None)
