"""Image feature extraction and the on-disk feature cache.

The cache is keyed by everything that changes the numbers: backbone and weights (a content hash
for local files), dataset, split and its exact item list, transform and view index, precision
and storage dtype. Each key is a folder of shards; a shard holds features for some item indices,
so later cells add only what is missing (new seeds, more shots). Shards are written atomically
and carry a header with their shape, dtype and a SHA-256 of the payload; a shard that fails the
check is deleted with a warning and its items are recomputed.

Augmented views are deterministic per (image path, view index): every process that needs view v
of an image computes the same crop, so cached and recomputed features agree.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from bench.errors import BenchError
from results.atomic import atomic_write_bytes, atomic_write_json

log = logging.getLogger(__name__)

MAGIC = b"BENCHFEAT1\n"
DTYPES = {"float32": np.float32, "float16": np.float16}


def stable_hash(obj, n: int = 20) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


class CorruptShard(Exception):
    pass


def encode_shard(indices: np.ndarray, features: np.ndarray) -> bytes:
    idx = np.ascontiguousarray(indices, dtype=np.int64).tobytes()
    feats = np.ascontiguousarray(features).tobytes()
    payload = idx + feats
    header = {"n": int(len(indices)), "dim": int(features.shape[1]), "dtype": str(features.dtype),
              "sha256": hashlib.sha256(payload).hexdigest()}
    return MAGIC + json.dumps(header).encode() + b"\n" + payload


def decode_shard(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    if not data.startswith(MAGIC):
        raise CorruptShard("bad magic")
    end = data.find(b"\n", len(MAGIC))
    if end < 0:
        raise CorruptShard("no header")
    try:
        header = json.loads(data[len(MAGIC):end])
        n, dim, dtype = int(header["n"]), int(header["dim"]), np.dtype(header["dtype"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptShard(f"bad header: {exc}") from None
    payload = data[end + 1:]
    if len(payload) != n * 8 + n * dim * dtype.itemsize:
        raise CorruptShard(f"size {len(payload)} does not match header (n={n}, dim={dim}, {dtype})")
    if hashlib.sha256(payload).hexdigest() != header.get("sha256"):
        raise CorruptShard("checksum mismatch")
    indices = np.frombuffer(payload[:n * 8], dtype=np.int64)
    feats = np.frombuffer(payload[n * 8:], dtype=dtype).reshape(n, dim)
    return indices, feats


class FeatureCache:
    def __init__(self, root: Path, dtype: str = "float32"):
        if dtype not in DTYPES:
            raise BenchError(f"feature cache dtype must be one of {sorted(DTYPES)}, not {dtype!r}")
        self.root = Path(root)
        self.dtype = dtype
        self.hits = 0
        self.misses = 0
        # Decoded shards by path, valid while the file's (mtime, size) is unchanged: every cell
        # of a job reads the same train/val/view folders, and re-reading and re-hashing them
        # cost a full pass over the folder per cell. A shard rewritten on disk is read again.
        self._shards: dict[Path, tuple[tuple[int, int], np.ndarray, np.ndarray]] = {}

    def key_dir(self, key: dict) -> Path:
        return self.root / stable_hash({**key, "storage_dtype": self.dtype})

    def _read(self, folder: Path) -> dict[int, np.ndarray]:
        rows: dict[int, np.ndarray] = {}
        if not folder.is_dir():
            return rows
        for shard in sorted(folder.glob("shard-*.bin")):
            try:
                st = shard.stat()
                stamp = (st.st_mtime_ns, st.st_size)
                memo = self._shards.get(shard)
                if memo is not None and memo[0] == stamp:
                    indices, feats = memo[1], memo[2]
                else:
                    indices, feats = decode_shard(shard.read_bytes())
                    self._shards[shard] = (stamp, indices, feats)
            except (CorruptShard, OSError) as exc:
                self._shards.pop(shard, None)
                warnings.warn(f"feature cache: {shard} is damaged ({exc}); deleting it and "
                              f"recomputing its features", stacklevel=2)
                shard.unlink(missing_ok=True)
                continue
            for i, row in zip(indices.tolist(), feats):
                rows[i] = row
        return rows

    def get(self, key: dict, indices: Sequence[int],
            compute: Callable[[list[int]], torch.Tensor]) -> torch.Tensor:
        """Features (len(indices), D) as float32; computes and stores only the missing rows."""
        folder = self.key_dir(key)
        rows = self._read(folder)
        wanted = list(dict.fromkeys(int(i) for i in indices))
        missing = [i for i in wanted if i not in rows]
        self.hits += len(wanted) - len(missing)
        self.misses += len(missing)
        if missing:
            feats = compute(missing).float().cpu().numpy().astype(DTYPES[self.dtype])
            folder.mkdir(parents=True, exist_ok=True)
            if not (folder / "key.json").exists():
                atomic_write_json(folder / "key.json", key)
            shard = folder / f"shard-{os.getpid()}-{uuid.uuid4().hex[:12]}.bin"
            atomic_write_bytes(shard, encode_shard(np.asarray(missing), feats))
            for i, row in zip(missing, feats):
                rows[i] = row
        if not indices:
            return torch.empty(0, 0)
        return torch.from_numpy(np.stack([rows[int(i)] for i in indices]).astype(np.float32))


def view_seed(relpath: str, view: int, salt: int = 0) -> int:
    """Seed of the augmentation of one image for one view: the same in every process."""
    digest = hashlib.sha256(f"{relpath}|{view}|{salt}".encode()).digest()
    return int.from_bytes(digest[:7], "little")


class ImageFiles(torch.utils.data.Dataset):
    """Loads images by relative path; ``view`` not None means seeded train augmentation."""

    def __init__(self, image_dir: Path, relpaths: list[str], transform, view: int | None = None,
                 salt: int = 0, image_size: int = 224):
        self.image_dir = Path(image_dir)
        self.relpaths = relpaths
        self.transform = transform
        self.view = view
        self.salt = salt
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.relpaths)

    def __getitem__(self, i: int):
        rel = self.relpaths[i]
        path = self.image_dir / rel
        try:
            with Image.open(path) as img:
                img.load()
                img = img.convert("RGB")
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            blank = torch.zeros(3, self.image_size, self.image_size)
            return blank, f"{path}: {type(exc).__name__}: {exc}"
        if self.view is None:
            return self.transform(img), ""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(view_seed(rel, self.view, self.salt))
            return self.transform(img), ""


def encode_files(backbone, files: ImageFiles, batch_size: int = 64, workers: int = 0,
                 desc: str = "", autocast: bool = False, progress: bool = True) -> torch.Tensor:
    """Encode every image of ``files`` with the frozen image encoder; (N, D) float32 on CPU.

    Decoding and transforms run in ``workers`` DataLoader processes (each keeps ``prefetch``
    batches ready); on CUDA, batches come in pinned memory and are copied without blocking, the
    model runs under inference_mode (and autocast if asked), and features stay on the device
    until the end: one copy back instead of a synchronizing copy per batch.
    """
    cuda = backbone.device.type == "cuda"
    extra = {"prefetch_factor": 4} if workers > 0 else {}
    loader = torch.utils.data.DataLoader(
        files, batch_size=batch_size, shuffle=False, num_workers=workers,
        pin_memory=cuda, persistent_workers=False, **extra)
    out = []
    bar = tqdm(total=len(files), desc=desc, unit="img", disable=not progress or None, leave=False)
    for images, errors in loader:
        bad = [e for e in errors if e]
        if bad:
            raise BenchError(f"cannot read image {bad[0]} (a truncated download or not an image? "
                             f"replace the file, or check the dataset with `bench data check`)")
        out.append(backbone.encode_images(images, autocast=autocast))
        bar.update(len(images))
    bar.close()
    if not out:
        return torch.empty(0, 0)
    return torch.cat(out).cpu()


class DatasetFeatures:
    """Features of one dataset under one backbone, through the cache.

    ``eval_features(split, positions)``: eval transform (PROTOCOL §1), positions into the split
    list. ``view_features(positions, view)``: augmented view ``view`` of train images.
    ``online(positions, seed)``: a function epoch -> fresh augmented features (not cached).
    """

    def __init__(self, backbone, splits, cache: FeatureCache, batch_size: int = 64,
                 workers: int = 0, autocast: bool = False, progress: bool = True):
        self.backbone = backbone
        self.splits = splits
        self.cache = cache
        self.batch_size = batch_size
        self.workers = workers
        self.autocast = autocast
        self.progress = progress
        self._list_hash = {s: stable_hash(splits.split(s)) for s in ("train", "val", "test")}
        self.encode_seconds = 0.0

    def _key(self, split: str, transform: str, view: int | None = None) -> dict:
        return {"weights": self.backbone.fingerprint, "dataset": self.splits.name, "split": split,
                "items": self._list_hash[split], "transform": transform, "view": view,
                "image_size": self.backbone.image_size,
                "precision": "amp" if self.autocast and self.backbone.device.type == "cuda" else "fp32"}

    def _encode(self, split: str, positions: list[int], transform, view, salt=0, desc="") -> torch.Tensor:
        import time

        items = self.splits.split(split)
        files = ImageFiles(self.splits.image_dir, [items[p][0] for p in positions], transform,
                           view=view, salt=salt, image_size=self.backbone.image_size)
        t0 = time.perf_counter()
        feats = encode_files(self.backbone, files, self.batch_size, self.workers, desc=desc,
                             autocast=self.autocast, progress=self.progress)
        self.encode_seconds += time.perf_counter() - t0
        return feats

    def eval_features(self, split: str, positions: Sequence[int]) -> torch.Tensor:
        return self.cache.get(
            self._key(split, "eval"), positions,
            lambda missing: self._encode(split, missing, self.backbone.eval_transform, None,
                                         desc=f"{self.splits.name} {split}"))

    def view_features(self, positions: Sequence[int], view: int) -> torch.Tensor:
        return self.cache.get(
            self._key("train", "train-aug", view), positions,
            lambda missing: self._encode("train", missing, self.backbone.train_transform(), view,
                                         desc=f"{self.splits.name} train view {view}"))

    def online(self, positions: Sequence[int], seed: int) -> Callable[[int], torch.Tensor]:
        positions = list(positions)

        def encode(epoch: int) -> torch.Tensor:
            # Fresh augmentation per (seed, epoch): view index = epoch, salted by the run seed.
            return self._encode("train", positions, self.backbone.train_transform(), epoch,
                                salt=1_000 + seed, desc="")

        return encode
