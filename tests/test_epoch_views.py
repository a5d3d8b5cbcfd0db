"""The protocol's train views (issue 13): a fresh crop of every train image in every epoch, keyed
by (seed, image, epoch), encoded once in a shared store and read by every method and shot count
of the seed. These tests compare the store with the plain loop it replaces."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

TINY = ("bench-test-tiny", "none")


@pytest.fixture()
def noisy_root(tmp_path, miniroot):
    """The miniature EuroSAT with random-noise images (the miniature's images are flat colours,
    whose crops all look the same: useless for telling crops apart)."""
    shutil.copytree(miniroot / "eurosat", tmp_path / "eurosat")
    rng = np.random.default_rng(7)
    for path in sorted((tmp_path / "eurosat").rglob("*.jpg")):
        Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)).save(path)
    return tmp_path


def _jobs(root, out, overrides, cells_spec):
    from bench.config import MethodSpec
    from bench.planner import expand_cells, plan

    cells = []
    for method, shots, seeds in cells_spec:
        cells += expand_cells([TINY], ["eurosat"], [MethodSpec(method)], [shots], seeds,
                              overrides)
    return plan(cells, data_root=str(root), output=str(out), cache_dir=str(out / "cache"),
                device="cpu", options={"progress": False})


class PlainLoopViews:
    """The original loop: every epoch, augment each train image with the generator of
    (seed, image, epoch) and encode the batch; nothing shared, nothing cached."""

    mode = "online"
    n_views = 0

    def __init__(self, backbone, image_dir, relpaths, seed):
        from torchvision import transforms as T

        from bench.augment import CropFlip
        from bench.augment import view_seed
        from bench.views import epoch_salt

        self.backbone, self.image_dir, self.relpaths = backbone, image_dir, relpaths
        self.seed_of = lambda rel, epoch: view_seed(rel, epoch, epoch_salt("protocol", seed))
        self.crop = CropFlip(backbone.image_size, (0.08, 1.0), backbone.mean, backbone.std)
        self.to_input = T.Compose([T.ToTensor(), T.Normalize(backbone.mean, backbone.std)])
        self.epochs_seen = []

    def for_epoch(self, epoch):
        self.epochs_seen.append(epoch)
        crops = []
        for rel in self.relpaths:
            img = Image.open(self.image_dir / rel).convert("RGB")
            crops.append(self.to_input(self.crop.pil(img, self.seed_of(rel, epoch))))
        return self.backbone.encode_images(torch.stack(crops))

    def describe(self):
        return {"mode": "online"}


def _reference_logits_sha(cell, root, backbone):
    """Fit ``cell`` with the plain loop's views; the sha256 of its test logits."""
    from bench.evaluate import chunked_logits as _chunked_logits
    from datasets_registry import DATASETS
    from datasets_registry.fewshot import sample_fewshot, seed_everything
    from methods import METHODS
    from methods.base import FeatureSplit, Task

    ds = DATASETS.get(cell["dataset"])
    splits = ds.load(root)
    subset = sample_fewshot(splits.train, splits.val, cell["shots"], cell["seed"])
    rels = [rel for rel, _ in subset.train]

    def eval_feats(items):
        crops = [backbone.eval_transform(Image.open(splits.image_dir / rel).convert("RGB"))
                 for rel, _ in items]
        return backbone.encode_images(torch.stack(crops))

    labels = lambda items: torch.tensor([lbl for _, lbl in items])  # noqa: E731
    views = PlainLoopViews(backbone, splits.image_dir, rels, cell["seed"])
    task = Task(dataset=cell["dataset"], classnames=splits.prompt_classnames,
                templates=ds.templates, shots=cell["shots"], seed=cell["seed"],
                config=cell["config"], device=torch.device("cpu"),
                train=FeatureSplit(lambda: eval_feats(subset.train), labels(subset.train)),
                val=FeatureSplit(lambda: eval_feats(subset.val), labels(subset.val)),
                train_views=views, backbone=backbone)
    seed_everything(cell["seed"])
    fitted = METHODS.get(cell["method"])(task)
    logits = _chunked_logits(fitted, eval_feats(splits.test), task.device)
    assert views.epochs_seen == list(range(cell["config"]["epochs"]))
    return hashlib.sha256(logits.numpy().tobytes()).hexdigest()


def test_shared_view_store_gives_the_plain_loops_logits_bit_for_bit(noisy_root, tmp_path,
                                                                     tiny_backbone):
    """Several methods, shot counts and epoch counts share one store per seed; each cell's
    logits equal those of the loop that augments and encodes each image at each epoch."""
    from bench.runner import run_job
    from results.store import ResultStore

    overrides = {"clip_adapter_visual": {"epochs": 6}, "coop": {"epochs": 4, "n_ctx": 2}}
    out = tmp_path / "out"
    jobs = _jobs(noisy_root, out, overrides,
                 [("clip_adapter_visual", 2, [1]), ("coop", 1, [1]),
                  ("clip_adapter_visual", 1, [1, 2])])
    assert len(jobs) == 1
    counts = run_job(jobs[0])
    assert counts["done"] == 4 and counts["failed"] == 0
    records = {(r["method"], r["shots"], r["seed"]): r
               for r in ResultStore(out).load_all(include_failed=False)}
    for key in [("clip_adapter_visual", 2, 1), ("coop", 1, 1), ("clip_adapter_visual", 1, 2)]:
        rec = records[key]
        assert rec["views"]["mode"] == "online"
        assert rec["logits_sha256"] == _reference_logits_sha(rec, noisy_root, tiny_backbone), key


def test_two_seeds_draw_different_crops_and_a_seed_redraws_its_own(noisy_root, tmp_path,
                                                                  tiny_backbone):
    from bench.features import DatasetFeatures, FeatureCache
    from bench.views import epoch_salt
    from datasets_registry import DATASETS

    splits = DATASETS.get("eurosat").load(noisy_root)

    def views(seed, cache_dir):
        feats = DatasetFeatures(tiny_backbone, splits, FeatureCache(tmp_path / cache_dir),
                                progress=False)
        return feats.augmented([0, 1, 2], range(3), "protocol", epoch_salt("protocol", seed),
                               cache=False)

    seed1, seed2, again = views(1, "a"), views(2, "b"), views(1, "c")
    assert torch.equal(seed1, again)
    for epoch in range(3):  # every image, every epoch: another crop under another seed
        for image in range(3):
            assert not torch.equal(seed1[epoch, image], seed2[epoch, image])
    assert not torch.equal(seed1[0], seed1[1])  # and another crop every epoch


def test_store_encodes_each_image_epoch_once_across_methods_and_shots(noisy_root, tmp_path):
    """Four methods x two shot counts at one seed: the store encodes the union of their images,
    each for the most epochs any cell trains it, and nothing else."""
    from bench.runner import run_job

    methods = ["coop", "clip_adapter_visual", "clip_adapter_text", "clip_adapter_both"]
    overrides = {m: {"epochs": 3} for m in methods}
    overrides["coop"]["n_ctx"] = 2
    overrides["clip_adapter_visual"]["epochs"] = 5
    spec = [(m, k, [1]) for m in methods for k in (1, 2)]
    job = _jobs(noisy_root, tmp_path / "out", overrides, spec)[0]
    counts = run_job(job)
    assert counts["done"] == 8
    # Plain loop: every cell encodes its own images every epoch.
    per_cell = sum(c["shots"] * 3 * c["config"]["epochs"] for c in job.cells)
    from bench.identity import draw_subset
    from datasets_registry import DATASETS

    splits = DATASETS.get("eurosat").load(noisy_root)
    need: dict[str, int] = {}
    for c in job.cells:
        for rel, _ in draw_subset(splits, c["shots"], 1).train:
            need[rel] = max(need.get(rel, 0), c["config"]["epochs"])
    assert counts["view_encodes"] == sum(need.values()) < per_cell / 3
