"""The feature cache returns identical features without re-encoding and heals damaged shards."""

import numpy as np
import pytest
import torch

from bench.features import DatasetFeatures, FeatureCache


class Counter:
    def __init__(self, dim=4):
        self.calls = []
        self.dim = dim

    def __call__(self, missing):
        self.calls.append(list(missing))
        return torch.tensor([[float(i)] * self.dim for i in missing])


def test_second_read_does_not_recompute(tmp_path):
    cache, compute = FeatureCache(tmp_path), Counter()
    key = {"weights": "w", "split": "test"}
    a = cache.get(key, [3, 1, 2], compute)
    b = cache.get(key, [3, 1, 2], compute)
    assert compute.calls == [[3, 1, 2]]
    assert torch.equal(a, b) and a[:, 0].tolist() == [3.0, 1.0, 2.0]
    # Only the missing rows are computed when more are asked for.
    cache.get(key, [1, 5, 4], compute)
    assert compute.calls[-1] == [5, 4]
    # A different key (other weights, view, ...) is a different entry.
    cache.get({**key, "view": 1}, [1], compute)
    assert compute.calls[-1] == [1]


def test_damaged_shard_is_recomputed_with_warning(tmp_path):
    cache, compute = FeatureCache(tmp_path), Counter()
    key = {"k": 1}
    cache.get(key, [0, 1], compute)
    shard = next(cache.key_dir(key).glob("shard-*.bin"))
    data = bytearray(shard.read_bytes())
    data[-3] ^= 0xFF  # flip payload bits: the checksum no longer matches
    shard.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="damaged"):
        out = cache.get(key, [0, 1], compute)
    assert compute.calls == [[0, 1], [0, 1]]
    assert out[:, 0].tolist() == [0.0, 1.0]


def test_truncated_shard_is_recomputed(tmp_path):
    cache, compute = FeatureCache(tmp_path), Counter()
    cache.get({"k": 2}, [0, 1, 2], compute)
    shard = next(cache.key_dir({"k": 2}).glob("shard-*.bin"))
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.warns(UserWarning):
        cache.get({"k": 2}, [0, 1, 2], compute)
    assert len(compute.calls) == 2


def test_fp16_storage(tmp_path):
    cache = FeatureCache(tmp_path, dtype="float16")
    out = cache.get({"k": 3}, [7], lambda m: torch.tensor([[1 / 3, 2.0]]))
    assert out.dtype == torch.float32
    assert out[0, 0].item() == pytest.approx(np.float16(1 / 3), abs=0)


def test_dataset_features_cached_equal_fresh(tmp_path, miniroot, tiny_backbone):
    from datasets_registry import DATASETS

    splits = DATASETS.get("eurosat").load(miniroot)
    feats = DatasetFeatures(tiny_backbone, splits, FeatureCache(tmp_path), progress=False)
    first = feats.eval_features("test", range(len(splits.test)))
    encoded = feats.encode_seconds
    again = DatasetFeatures(tiny_backbone, splits, FeatureCache(tmp_path), progress=False)
    second = again.eval_features("test", range(len(splits.test)))
    assert torch.equal(first, second) and again.encode_seconds == 0.0 and encoded > 0
    # Augmented views are deterministic per (image, view, salt) and differ between views.
    v0 = feats.augmented([0, 1], [0], "protocol", "s")
    fresh = DatasetFeatures(tiny_backbone, splits, FeatureCache(tmp_path / "other"), progress=False)
    assert torch.equal(v0, fresh.augmented([0, 1], [0], "protocol", "s"))
    # Asking for more views computes only the new views, and they match a fresh extraction.
    before = feats.cache.misses
    three = feats.augmented([0, 1], range(3), "protocol", "s")
    assert feats.cache.misses - before == 2 * 2 and torch.equal(three[:1], v0)
    assert torch.equal(three, fresh.augmented([0, 1], range(3), "protocol", "s"))
    # Uncached views equal the cached ones.
    assert torch.equal(three, fresh.augmented([0, 1], range(3), "protocol", "s", cache=False))


def test_replaced_image_is_reencoded_and_unchanged_ones_are_not(tmp_path, tiny_backbone):
    """The cache key covers each image file's identity (size, mtime_ns): an image replaced at
    the same path is encoded again, the others come from the cache."""
    import os
    import shutil

    from PIL import Image

    from datasets_registry.base import DatasetSplits

    rng = np.random.default_rng(1)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    items = [(f"{i}.png", i) for i in range(3)]
    splits = DatasetSplits("t", ["a", "b", "c"], tmp_path, items, [], items)

    def features():
        f = DatasetFeatures(tiny_backbone, splits, FeatureCache(tmp_path / "cache"), progress=False)
        return f, f.eval_features("test", range(3))

    _, first = features()
    shutil.copy(tmp_path / "2.png", tmp_path / "1.png")  # 1.png now holds image 2
    st = os.stat(tmp_path / "2.png")
    os.utime(tmp_path / "1.png", ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    again, second = features()
    assert again.encoded_images == 1  # only the replaced image
    assert torch.equal(second[0], first[0]) and torch.equal(second[2], first[2])
    assert torch.equal(second[1], first[2]) and not torch.equal(second[1], first[1])
    third, _ = features()
    assert third.encoded_images == 0


def test_augmented_views_are_seeded_per_image_and_view(tmp_path, tiny_backbone):
    from PIL import Image

    from bench.features import ImageFiles

    arr = np.add.outer(np.arange(48), 2 * np.arange(48)).astype(np.uint8)
    Image.fromarray(np.stack([arr, arr.T, 255 - arr], axis=-1)).save(tmp_path / "a.png")
    tf = tiny_backbone.train_transform()

    def view(v):
        return ImageFiles(tmp_path, ["a.png"], tf, views=[v], image_size=32)[0][0][0]

    torch.manual_seed(123)
    state = torch.get_rng_state()
    assert torch.equal(view(0), view(0))
    assert not torch.equal(view(0), view(1))
    # Several views from one decode equal the views made one at a time.
    both = ImageFiles(tmp_path, ["a.png"], tf, views=[0, 1], image_size=32)[0][0]
    assert torch.equal(both[0], view(0)) and torch.equal(both[1], view(1))
    assert torch.equal(state, torch.get_rng_state())  # the global RNG is left alone


def test_uint8_transfer_gives_the_same_features_as_float_transforms(tmp_path, tiny_backbone):
    """Batches cross from the loader as uint8 and are normalized on the model's device; the
    features must be bit-identical to running ToTensor + Normalize in the loader."""
    from PIL import Image

    from bench.features import ImageFiles, encode_files

    rng = np.random.default_rng(0)
    names = []
    for i, size in enumerate([(40, 56), (64, 48), (33, 33)]):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(tmp_path / f"{i}.jpg")
        names.append(f"{i}.jpg")
    Image.fromarray(rng.integers(0, 256, (30, 30), dtype=np.uint8)).save(tmp_path / "gray.png")
    names.append("gray.png")  # grayscale: converted to RGB before either path
    for tf, views in [(tiny_backbone.eval_transform, None),
                      (tiny_backbone.train_transform(), [0, 3])]:
        fast = ImageFiles(tmp_path, names, tf, views=views, image_size=32)
        plain = ImageFiles(tmp_path, names, tf, views=views, image_size=32, uint8=False)
        assert fast.normalization is not None and plain.normalization is None
        assert fast[0][0].dtype == torch.uint8 and plain[0][0].dtype == torch.float32
        a = encode_files(tiny_backbone, fast, batch_size=3, progress=False)
        b = encode_files(tiny_backbone, plain, batch_size=3, progress=False)
        assert a.shape == b.shape and torch.equal(a, b)
