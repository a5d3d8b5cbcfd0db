"""Image feature extraction and the on-disk feature cache.

The cache is keyed by everything that changes the numbers: backbone and weights (a content hash
for local files), dataset, split and its exact item list, transform, view index and augmentation
salt, precision and storage dtype. Each key is a folder of shards; a shard holds features for
some item indices, so later cells add only what is missing (new seeds, more shots). Shards are
written atomically and carry a header with their shape, dtype and a SHA-256 of the payload; a
shard that fails the check is deleted with a warning and its items are recomputed.

Every cached row also carries the identity of its image file when it was encoded: a 63-bit hash
of the file's size and modification time in nanoseconds (``os.stat``; reading every image to hash
its content would cost as much as decoding it). A row whose file has changed since is treated as
missing and encoded again; rows of unchanged files are kept.

Augmented views are deterministic per (image path, view index, salt): every process that needs
view v of an image computes the same crop. The protocol's fresh views use the epoch as the view
index and the run seed in the salt, so a (seed, image, epoch) crop is the same wherever it is
drawn and differs between seeds.
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
from torchvision import transforms as T
from tqdm import tqdm

from bench.augment import CropFlip, view_seed
from bench.base.errors import BenchError
from bench.gpu_images import DECODES, DeviceImages, EvalGeometry
from bench.threads import encode_threads, torch_threads
from results.atomic import atomic_write_bytes, atomic_write_json

log = logging.getLogger(__name__)

MAGIC = b"BENCHFEAT2\n"  # 2: each row carries its image file's identity (see file_identity)
DTYPES = {"float32": np.float32, "float16": np.float16}


def stable_hash(obj, n: int = 20) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


class CorruptShard(Exception):
    pass


# The same text for every cache and dataset, so that a command says it once (bench.cli).
DAMAGED_WARNING = ("feature cache: damaged shards found (checksum or size wrong); each is deleted "
                   "and its features are recomputed (a run counts them at its end)")


def file_identity(path: Path) -> int:
    """A 63-bit identity of an image file from ``os.stat``: size and mtime in nanoseconds.

    Replacing a file (a new download, an edited image) changes it; reading the file does not.
    A missing file gets -1 (its features are then never taken from the cache).
    """
    try:
        st = os.stat(path)
    except OSError:
        return -1
    digest = hashlib.blake2b(f"{st.st_size}:{st.st_mtime_ns}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def encode_shard(indices: np.ndarray, features: np.ndarray, stamps: np.ndarray | None = None
                 ) -> bytes:
    idx = np.ascontiguousarray(indices, dtype=np.int64).tobytes()
    if stamps is None:
        stamps = np.full(len(indices), -1, dtype=np.int64)
    stamp_bytes = np.ascontiguousarray(stamps, dtype=np.int64).tobytes()
    feats = np.ascontiguousarray(features).tobytes()
    payload = idx + stamp_bytes + feats
    header = {"n": int(len(indices)), "dim": int(features.shape[1]), "dtype": str(features.dtype),
              "sha256": hashlib.sha256(payload).hexdigest()}
    return MAGIC + json.dumps(header).encode() + b"\n" + payload


def decode_shard(data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indices, file identities, features) of a shard; raises CorruptShard."""
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
    if len(payload) != n * 16 + n * dim * dtype.itemsize:
        raise CorruptShard(f"size {len(payload)} does not match header (n={n}, dim={dim}, {dtype})")
    if hashlib.sha256(payload).hexdigest() != header.get("sha256"):
        raise CorruptShard("checksum mismatch")
    indices = np.frombuffer(payload[:n * 8], dtype=np.int64)
    stamps = np.frombuffer(payload[n * 8:n * 16], dtype=np.int64)
    feats = np.frombuffer(payload[n * 16:], dtype=dtype).reshape(n, dim)
    return indices, stamps, feats


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
        self._shards: dict[Path, tuple[tuple[int, int], np.ndarray, np.ndarray, np.ndarray]] = {}
        # Damaged shards deleted so far, (path, why): warned about once, when the first is
        # found; `bench run` says how many at its end (a damaged cache folder can hold hundreds).
        self.damaged: list[tuple[str, str]] = []

    def key_dir(self, key: dict) -> Path:
        return self.root / stable_hash({**key, "storage_dtype": self.dtype, "format": 2})

    def _read(self, folder: Path) -> dict[int, dict[int, np.ndarray]]:
        """Rows of a key folder: index -> {file identity when encoded: features} (an image
        replaced since has rows under its old and its new identity)."""
        rows: dict[int, dict[int, np.ndarray]] = {}
        if not folder.is_dir():
            return rows
        for shard in sorted(folder.glob("shard-*.bin")):
            try:
                st = shard.stat()
                stamp = (st.st_mtime_ns, st.st_size)
                memo = self._shards.get(shard)
                if memo is not None and memo[0] == stamp:
                    indices, idents, feats = memo[1:]
                else:
                    indices, idents, feats = decode_shard(shard.read_bytes())
                    self._shards[shard] = (stamp, indices, idents, feats)
            except (CorruptShard, OSError) as exc:
                self._shards.pop(shard, None)
                if not self.damaged:
                    warnings.warn(DAMAGED_WARNING, stacklevel=2)
                self.damaged.append((str(shard), str(exc)))
                shard.unlink(missing_ok=True)
                continue
            for i, ident, row in zip(indices.tolist(), idents.tolist(), feats):
                rows.setdefault(i, {})[ident] = row
        return rows

    def get(self, key: dict, indices: Sequence[int],
            compute: Callable[[list[int]], torch.Tensor],
            identity: Callable[[int], int] | None = None) -> torch.Tensor:
        """Features (len(indices), D) as float32; computes and stores only the missing rows."""
        return self.get_many([key], indices, lambda missing: compute(missing)[None], identity)[0]

    def get_many(self, keys: list[dict], indices: Sequence[int],
                 compute: Callable[[list[int]], torch.Tensor],
                 identity: Callable[[int], int] | None = None) -> torch.Tensor:
        """(len(keys), len(indices), D) float32 for several keys over the same indices.

        ``compute(missing)`` returns (len(keys), len(missing), D): one call for the rows missing
        under any key (so one decode of an image serves all its augmented views); each key then
        stores only the rows it lacked. ``identity(i)`` is the current identity of item i's file
        (:func:`file_identity`): a cached row encoded from a different file is missing.
        """
        folders = [self.key_dir(k) for k in keys]
        rows = [self._read(f) for f in folders]
        wanted = list(dict.fromkeys(int(i) for i in indices))
        ident = {i: (identity(i) if identity else -1) for i in wanted}

        def current(r: dict, i: int) -> bool:
            got = r.get(i)
            return bool(got) and (identity is None or (ident[i] != -1 and ident[i] in got))

        lacking = [[i for i in wanted if not current(r, i)] for r in rows]
        lacking_any = set().union(*lacking) if lacking else set()
        missing = [i for i in wanted if i in lacking_any]
        self.misses += sum(len(m) for m in lacking)
        self.hits += len(wanted) * len(keys) - sum(len(m) for m in lacking)
        if missing:
            feats = compute(missing).float().cpu().numpy().astype(DTYPES[self.dtype])
            where = {i: n for n, i in enumerate(missing)}
            for key, folder, r, lack, f in zip(keys, folders, rows, lacking, feats):
                if lack:
                    new = f[[where[i] for i in lack]]
                    idents = np.array([ident[i] for i in lack], dtype=np.int64)
                    self._write(key, folder, lack, new, idents)
                    for i, row in zip(lack, new):
                        r.setdefault(i, {})[ident[i]] = row
        if not indices:
            return torch.empty(len(keys), 0, 0)
        def row(r: dict, i: int) -> np.ndarray:
            got = r[i]
            return got[ident[i]] if identity is not None else next(iter(got.values()))

        return torch.from_numpy(np.stack([np.stack([row(r, int(i)) for i in indices])
                                          for r in rows]).astype(np.float32))

    def _write(self, key: dict, folder: Path, indices: list[int], feats: np.ndarray,
               idents: np.ndarray) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / "key.json").exists():
            atomic_write_json(folder / "key.json", key)
        shard = folder / f"shard-{os.getpid()}-{uuid.uuid4().hex[:12]}.bin"
        atomic_write_bytes(shard, encode_shard(np.asarray(indices), feats, idents))


def split_normalization(transform):
    """``(uint8 transform, mean, std)`` when ``transform`` is a Compose ending in ToTensor +
    Normalize (open_clip's eval transform and our train transform), else None.

    The uint8 transform stops at the image's bytes (PILToTensor); :func:`normalize_uint8` then
    does ToTensor's /255 and Normalize's arithmetic with the same float32 operations, so the
    result is bit-identical, and a batch crosses from the DataLoader workers (shared memory,
    pinned memory, the copy to the GPU) at a quarter of the float32 size.
    """
    steps = getattr(transform, "transforms", None)
    if not steps or len(steps) < 2 or not isinstance(steps[-1], T.Normalize):
        return None
    if type(steps[-2]).__name__ not in ("ToTensor", "MaybeToTensor"):
        return None
    norm = steps[-1]
    return T.Compose([*steps[:-2], T.PILToTensor()]), tuple(norm.mean), tuple(norm.std)


def normalize_uint8(images: torch.Tensor, mean, std) -> torch.Tensor:
    """ToTensor + Normalize on a uint8 batch (..., 3, H, W), on whatever device it is on."""
    x = images.float().div_(255)
    shape = (3, 1, 1)
    return x.sub_(torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(shape)).div_(
        torch.as_tensor(std, dtype=x.dtype, device=x.device).view(shape))


class ImageFiles(torch.utils.data.Dataset):
    """Loads images by relative path.

    ``views=None``: one tensor per image (the eval transform). ``views=[v, ...]``: the image is
    decoded once and each view gets its own seeded augmentation; items are (V, 3, H, W).
    ``uint8=True`` (default): where the transform ends in ToTensor + Normalize, items are the
    uint8 image and ``self.normalization`` holds (mean, std) for :func:`normalize_uint8`, which
    :func:`encode_files` applies on the model's device.
    """

    def __init__(self, image_dir: Path, relpaths: list[str], transform,
                 views: Sequence[int] | None = None, salt: int = 0, image_size: int = 224,
                 uint8: bool = True, augment: CropFlip | None = None):
        self.image_dir = Path(image_dir)
        self.relpaths = relpaths
        self.augment = augment
        if augment is not None:  # views by bench.augment.CropFlip, uint8, normalized later
            if views is None:
                raise ValueError("augment needs views")
            self.transform, self.normalization = None, (augment.mean, augment.std)
        else:
            split = split_normalization(transform) if uint8 else None
            self.transform = split[0] if split else transform
            self.normalization = split[1:] if split else None
        self.views = list(views) if views is not None else None
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
            shape = (3, self.image_size, self.image_size)
            blank = torch.zeros(shape if self.views is None else (len(self.views), *shape),
                                dtype=torch.uint8 if self.normalization else torch.float32)
            return blank, f"{path}: {type(exc).__name__}: {exc}"
        if self.views is None:
            return self.transform(img), ""
        if self.augment is not None:
            crops = np.stack([self.augment(img, view_seed(rel, v, self.salt)) for v in self.views])
            return torch.from_numpy(crops).permute(0, 3, 1, 2).contiguous(), ""
        out = []
        with torch.random.fork_rng(devices=[]):
            for v in self.views:
                # The CPU generator only: torch.manual_seed also queues a CUDA seeding call with a
                # formatted stack trace (about 2 ms each, and a queue that grows per crop).
                torch.default_generator.manual_seed(view_seed(rel, v, self.salt))
                out.append(self.transform(img))
        return torch.stack(out), ""


def image_loader(files: ImageFiles, batch_size: int, workers: int, device: torch.device):
    """The DataLoader over ``files`` in order: ``workers`` processes decode and transform, each
    keeping 4 batches ready; batches land in pinned memory when the model is on CUDA."""
    extra = {"prefetch_factor": 4} if workers > 0 else {}
    return torch.utils.data.DataLoader(
        files, batch_size=batch_size, shuffle=False, num_workers=workers,
        pin_memory=device.type == "cuda", persistent_workers=False, **extra)


def encode_files(backbone, files: ImageFiles | DeviceImages, batch_size: int = 64, workers: int = 0,
                 desc: str = "", autocast: bool = False, progress: bool = True,
                 meter=None) -> torch.Tensor:
    """Encode every image of ``files`` with the frozen image encoder: (N, D) float32 on CPU,
    or (V, N, D) when ``files`` yields V views per image.

    ``files`` may also be a :class:`bench.gpu_images.DeviceImages` (``--decode gpu``): workers
    then only read the files, and decoding and crops run on the model's device.

    Decoding and transforms run in ``workers`` DataLoader processes (:func:`image_loader`); on
    CUDA, batches come in pinned memory and are copied without blocking, the model runs under
    inference_mode (and autocast if asked), and features stay on the device until the end: one
    copy back instead of a synchronizing copy per batch.

    ``progress``: a tqdm bar on a terminal. ``meter`` (a bench.progress.LogProgress): told the
    pass's size and each batch encoded, for the progress lines of a log.
    """
    # With V views per image, a batch holds about ``batch_size`` crops (at least one image).
    per_batch = batch_size if files.views is None else max(1, batch_size // len(files.views))
    if isinstance(files, DeviceImages):  # --decode gpu: batches come decoded on the device
        files.batch_size, files.workers = per_batch, workers
        loader = files
    else:
        loader = image_loader(files, per_batch, workers, backbone.device)
    out = []
    bar = tqdm(total=len(files), desc=desc, unit="img", disable=not progress or None, leave=False)
    if meter is not None:
        meter.encoding(desc or "images", len(files))
    for images, errors in loader:
        bad = [e for e in errors if e]
        if bad:
            raise BenchError(f"cannot read image {bad[0]} (a truncated download or not an image? "
                             f"replace the file, or check the dataset with `bench data check`)")
        if files.normalization:
            images = normalize_uint8(images.to(backbone.device, non_blocking=True),
                                     *files.normalization)
        if images.ndim == 5:  # (B, V, 3, H, W): encode all views of the batch at once
            b, v = images.shape[:2]
            feats = backbone.encode_images(images.flatten(0, 1), autocast=autocast)
            out.append(feats.view(b, v, -1).transpose(0, 1))
        else:
            out.append(backbone.encode_images(images, autocast=autocast))
        bar.update(len(images))
        if meter is not None:
            meter.encoded(len(images))
    bar.close()
    if meter is not None:
        meter.encoding_done()
    if not out:
        return torch.empty(0, 0)
    return torch.cat(out, dim=-2).cpu()


# The train augmentations a method may ask for (methods.base.ViewSpec.transform): the crop scale
# of RandomResizedCrop (bicubic) + horizontal flip + CLIP normalization.
TRAIN_TRANSFORMS = {
    "protocol": (0.08, 1.0),  # docs/protocol.md §1: CoOp's and CLIP-Adapter's augmentation
    "tip": (0.5, 1.0),  # docs/protocol.md §8: Tip-Adapter's cache augmentation
}


class DatasetFeatures:
    """Features of one dataset under one backbone, through the cache.

    ``eval_features(split, positions)``: eval transform (docs/protocol.md §1), positions into the
    split list, cached. ``augmented(positions, views, transform, salt)``: (V, N, D) features of
    augmented views of train images (each image decoded once for all its views); cached on disk
    unless ``cache=False`` (the protocol's per-epoch views, which are many and read once per run:
    see bench.views.EpochViewStore).

    ``decode="gpu"``: images are decoded and cropped on the backbone's device
    (bench.gpu_images; the same crop boxes, slightly different pixels), which changes the cache
    key and :meth:`describe`. The default "cpu" leaves both as they were before the option.
    """

    def __init__(self, backbone, splits, cache: FeatureCache, batch_size: int = 64,
                 workers: int = 0, autocast: bool = False, progress: bool = True,
                 decode: str = "cpu"):
        if decode not in DECODES:
            raise BenchError(f"decode must be one of {', '.join(DECODES)}, not {decode!r}")
        self.decode = decode
        self.decode_fallbacks = 0  # --decode gpu: images PIL decoded (not JPEG, or refused)
        self.backbone = backbone
        self.splits = splits
        self.cache = cache
        self.batch_size = batch_size
        self.workers = workers
        self.autocast = autocast
        self.progress = progress
        self._list_hash = {s: stable_hash(splits.split(s)) for s in ("train", "val", "test")}
        self._identities: dict[str, dict[int, int]] = {"train": {}, "val": {}, "test": {}}
        self.encode_seconds = 0.0
        self.encoded_images = 0
        self.meter = None  # a bench.progress.LogProgress told of every encoding pass

    def precision(self) -> str:
        return "amp" if self.autocast and self.backbone.device.type == "cuda" else "fp32"

    def describe(self) -> dict:
        """How these features were computed and stored (recorded in every result)."""
        out = {"device": self.backbone.device.type, "precision": self.precision(),
               "cache_dtype": self.cache.dtype}
        if self.decode != "cpu":  # absent for cpu: records from before the option stay equal
            out["decode"] = self.decode
        return out

    def _key(self, split: str, transform: str, view: int | None = None) -> dict:
        return {"weights": self.backbone.fingerprint, "dataset": self.splits.name, "split": split,
                "items": self._list_hash[split], "transform": transform, "view": view,
                "image_size": self.backbone.image_size, "precision": self.precision(),
                **({"decode": self.decode} if self.decode != "cpu" else {})}

    def identity(self, split: str) -> Callable[[int], int]:
        """position -> :func:`file_identity` of that image, each file stat'ed once per job."""
        memo = self._identities[split]
        items = self.splits.split(split)

        def ident(position: int) -> int:
            if position not in memo:
                memo[position] = file_identity(self.splits.image_dir / items[position][0])
            return memo[position]

        return ident

    def _encode(self, split: str, positions: list[int], transform, views=None, salt=0,
                desc="", augment: CropFlip | None = None) -> torch.Tensor:
        import time

        items = self.splits.split(split)
        relpaths = [items[p][0] for p in positions]
        if self.decode == "gpu":
            files = self._device_images(relpaths, transform, views, salt, augment)
        else:
            files = ImageFiles(self.splits.image_dir, relpaths, transform, views=views,
                               salt=salt, image_size=self.backbone.image_size, augment=augment)
        t0 = time.perf_counter()
        with torch_threads(encode_threads()):  # a fit may run with fewer (bench.threads)
            feats = encode_files(self.backbone, files, self.batch_size, self.workers, desc=desc,
                                 autocast=self.autocast, progress=self.progress,
                                 meter=self.meter)
        if self.decode == "gpu" and files.fallbacks:
            self.decode_fallbacks += len(files.fallbacks)
            log.info("--decode gpu: %d of %d %s images are not JPEG (or nvJPEG refused them) and "
                     "were decoded by PIL on the CPU, e.g. %s", len(files.fallbacks),
                     len(relpaths), self.splits.name, files.fallbacks[0])
        self.encode_seconds += time.perf_counter() - t0
        self.encoded_images += len(positions) * (len(views) if views is not None else 1)
        return feats

    def _device_images(self, relpaths, transform, views, salt, augment) -> DeviceImages:
        bb = self.backbone
        if augment is not None:
            return DeviceImages(self.splits.image_dir, relpaths, bb.device, self.batch_size,
                                augment=augment, views=views, salt=salt,
                                image_size=bb.image_size)
        try:
            geometry = EvalGeometry(transform)
        except ValueError as exc:
            raise BenchError(f"{exc}; run it with --decode cpu") from None
        split = split_normalization(transform)  # the eval transform's own mean and std
        return DeviceImages(self.splits.image_dir, relpaths, bb.device, self.batch_size,
                            eval=geometry, image_size=bb.image_size,
                            normalization=split[1:] if split else (bb.mean, bb.std))

    def eval_features(self, split: str, positions: Sequence[int]) -> torch.Tensor:
        return self.cache.get(
            self._key(split, "eval"), positions,
            lambda missing: self._encode(split, missing, self.backbone.eval_transform, None,
                                         desc=f"{self.splits.name} {split}"),
            self.identity(split))

    def augmented(self, positions: Sequence[int], views: Sequence[int], transform: str,
                  salt: str, cache: bool = True, desc: str = "") -> torch.Tensor:
        """(len(views), len(positions), D): view ``v`` of each train image under the named
        train ``transform`` (TRAIN_TRANSFORMS, by bench.augment.CropFlip), its crop drawn from a
        generator keyed by (image path, v, salt)."""
        if transform not in TRAIN_TRANSFORMS:
            raise BenchError(f"unknown train transform {transform!r}; known: "
                             f"{', '.join(TRAIN_TRANSFORMS)}")
        views = list(views)
        augment = CropFlip(self.backbone.image_size, TRAIN_TRANSFORMS[transform],
                           self.backbone.mean, self.backbone.std)
        desc = desc or f"{self.splits.name} train x{len(views)} views"

        def compute(missing: list[int]) -> torch.Tensor:
            return self._encode("train", missing, None, views, salt=salt, desc=desc,
                                augment=augment)

        if not cache:
            return compute(list(positions))
        keys = [self._key("train", f"aug:{transform}:{salt}", v) for v in views]
        return self.cache.get_many(keys, positions, compute, self.identity("train"))
