"""Decode and augment on the model's device (``--decode gpu``): the image pipeline past the CPU.

The CPU path (bench.features.ImageFiles) decodes with PIL in DataLoader workers, crops and resizes
with PIL and sends uint8 crops to the device. Here the workers only read the files' bytes; JPEGs
are decoded in batches by ``torchvision.io.decode_jpeg(list, device=...)`` (nvJPEG on CUDA), and
the crops are cut and resized on the device tensors. Files that are not JPEG (PNG in the demo
data), and JPEGs that the batched decoder refuses (CMYK, for one), are decoded with PIL in the
workers instead: :attr:`DeviceImages.fallbacks` counts them.

Same crops, not the same pixels: the crop box and flip of every (image, view, salt) come from
:meth:`bench.augment.CropFlip.params` with the same seeds as the CPU path, box for box. The
resampling differs: torch's antialiased bicubic on the tensor against PIL's bicubic, and on CUDA
nvJPEG's decoder against libjpeg's. tests/test_gpu_images.py bounds the difference on CPU tensors,
and benchmarks/gpu_check.sh measures it on the GPU; docs/protocol.md §9 gives the numbers. Because
pixels differ, the decode path is part of every result's identity (bench.identity.feature_inputs).

Everything here also runs on CPU tensors (``device="cpu"``): that is how it is tested.

torchvision 0.29 marks its image decoders deprecated in favour of TorchCodec (not a dependency of
bench yet); :func:`_decode_jpeg` silences that one warning. If a later torchvision drops
``decode_jpeg``, this module is the one place to port.
"""

from __future__ import annotations

import random
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as F

from bench.augment import CropFlip, view_seed

DECODES = ("cpu", "gpu")
JPEG_MAGIC = b"\xff\xd8\xff"
BICUBIC = InterpolationMode.BICUBIC


def _decode_jpeg(data, device: torch.device):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The image decoding", DeprecationWarning)
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)


def is_jpeg(data: bytes) -> bool:
    return data[:3] == JPEG_MAGIC


class EvalGeometry:
    """The eval transform as numbers: resize the shorter side to ``resize`` (bicubic), center
    crop ``crop``. Read from open_clip's eval Compose (Resize(int), CenterCrop, then only the
    RGB conversion, ToTensor and Normalize); anything else is refused with ValueError."""

    def __init__(self, transform):
        steps = list(getattr(transform, "transforms", None) or [])
        names = [type(s).__name__ for s in steps]
        if (len(steps) < 2 or names[0] != "Resize" or names[1] != "CenterCrop"
                or not set(names[2:]) <= {"MaybeConvertMode", "Lambda", "MaybeToTensor",
                                          "ToTensor", "Normalize"}):
            raise ValueError(f"--decode gpu knows the eval transform Resize + CenterCrop; this "
                             f"model's is {' + '.join(names) or transform!r}")
        resize, crop = steps[0], steps[1]
        size = resize.size
        if isinstance(size, (list, tuple)):
            if len(size) != 1:
                raise ValueError(f"--decode gpu needs a shorter-side Resize, not size={size}")
            size = size[0]
        if resize.interpolation != BICUBIC or resize.max_size is not None:
            raise ValueError(f"--decode gpu needs Resize(bicubic, max_size=None), not "
                             f"{resize!r}")
        self.resize = int(size)
        self.crop = [int(c) for c in crop.size]

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        """(3, H, W) uint8 -> (3, crop, crop) uint8, on img's device."""
        out = F.resize(img, [self.resize], interpolation=BICUBIC, antialias=True)
        return F.center_crop(out, self.crop)


def crop_flip(img: torch.Tensor, augment: CropFlip, seed: int) -> torch.Tensor:
    """The view of (3, H, W) uint8 ``img`` for ``seed``: the box and flip of
    ``augment.pil(pil_image, seed)``, resized on the tensor (bicubic, antialiased)."""
    height, width = img.shape[-2:]
    top, left, h, w, flip = augment.params(int(width), int(height), random.Random(seed))
    out = F.resized_crop(img, top, left, h, w, [augment.size, augment.size],
                         interpolation=BICUBIC, antialias=True)
    return out.flip(-1) if flip else out


def pil_rgb(path: Path) -> torch.Tensor:
    """(3, H, W) uint8 of an image decoded by PIL, as the CPU path decodes it."""
    with Image.open(path) as img:
        img.load()
        arr = np.asarray(img.convert("RGB"))
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


class _Bytes(torch.utils.data.Dataset):
    """Item i: ("jpeg", its bytes as a uint8 tensor), ("pixels", PIL-decoded (3, H, W) uint8)
    for any other format, or ("error", message)."""

    def __init__(self, image_dir: Path, relpaths: list[str]):
        self.image_dir, self.relpaths = Path(image_dir), relpaths

    def __len__(self) -> int:
        return len(self.relpaths)

    def __getitem__(self, i: int):
        path = self.image_dir / self.relpaths[i]
        try:
            data = path.read_bytes()
            if is_jpeg(data):
                return "jpeg", torch.frombuffer(bytearray(data), dtype=torch.uint8)
            return "pixels", pil_rgb(path)
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            return "error", f"{path}: {type(exc).__name__}: {exc}"


def _as_list(batch):
    return batch


class DeviceImages:
    """Batches of (images uint8 on ``device``, errors) over ``relpaths``, like iterating the
    DataLoader of bench.features.ImageFiles: (B, 3, S, S) with ``eval`` geometry, or
    (B, V, 3, S, S) with ``augment`` and ``views`` (the crop of view v of image rel drawn from
    ``view_seed(rel, v, salt)``). ``errors[i]`` is "" or the reason image i could not be read.
    ``normalization``: (mean, std) of the eval transform (with ``augment``: the augment's).
    """

    def __init__(self, image_dir: Path, relpaths: list[str], device: torch.device | str,
                 batch_size: int, workers: int = 0, eval: EvalGeometry | None = None,
                 augment: CropFlip | None = None, views: Sequence[int] | None = None,
                 salt=0, image_size: int = 224, normalization: tuple | None = None):
        if (eval is None) == (augment is None) or (augment is not None and views is None):
            raise ValueError("DeviceImages needs eval geometry, or augment with views")
        self.image_dir, self.relpaths = Path(image_dir), relpaths
        self.device = torch.device(device)
        self.batch_size, self.workers = batch_size, workers
        self.eval, self.augment = eval, augment
        self.views = list(views) if views is not None else None
        self.salt, self.image_size = salt, image_size
        # (mean, std) for bench.features.normalize_uint8, applied by encode_files
        self.normalization = normalization or (
            (augment.mean, augment.std) if augment is not None else None)
        self.fallbacks: list[str] = []  # relpaths decoded by PIL (not JPEG, or refused)

    def _decode(self, kinds, payloads, rels) -> list[torch.Tensor | str]:
        """Each item as (3, H, W) uint8 on the device, or an error message."""
        out: list = [None] * len(kinds)
        jpegs = [i for i, k in enumerate(kinds) if k == "jpeg"]
        if jpegs:
            datas = [payloads[i] for i in jpegs]
            try:
                decoded = _decode_jpeg(datas, self.device)
            except RuntimeError:  # one bad file fails the batch: decode one by one
                decoded = []
                for data in datas:
                    try:
                        decoded.append(_decode_jpeg(data, self.device))
                    except RuntimeError:
                        decoded.append(None)
            for i, img in zip(jpegs, decoded):
                out[i] = img
        for i, kind in enumerate(kinds):
            if kind == "pixels":
                self.fallbacks.append(rels[i])
                out[i] = payloads[i].to(self.device, non_blocking=True)
            elif kind == "error":
                out[i] = payloads[i]
            elif out[i] is None:  # a JPEG the decoder refused: PIL reads it as the CPU path does
                self.fallbacks.append(rels[i])
                path = self.image_dir / rels[i]
                try:
                    out[i] = pil_rgb(path).to(self.device)
                except (OSError, UnidentifiedImageError, ValueError) as exc:
                    out[i] = f"{path}: {type(exc).__name__}: {exc}"
        return out

    def _views(self, img: torch.Tensor, rel: str) -> torch.Tensor:
        if self.eval is not None:
            return self.eval(img)
        return torch.stack([crop_flip(img, self.augment, view_seed(rel, v, self.salt))
                            for v in self.views])

    def __iter__(self):
        extra = {"prefetch_factor": 4} if self.workers > 0 else {}
        loader = torch.utils.data.DataLoader(
            _Bytes(self.image_dir, self.relpaths), batch_size=self.batch_size, shuffle=False,
            num_workers=self.workers, collate_fn=_as_list, **extra)
        start = 0
        for batch in loader:
            rels = self.relpaths[start:start + len(batch)]
            start += len(batch)
            images = self._decode([k for k, _ in batch], [p for _, p in batch], rels)
            size = self.image_size
            blank = (3, size, size) if self.views is None else (len(self.views), 3, size, size)
            outs, errors = [], []
            for img, rel in zip(images, rels):
                if isinstance(img, str):
                    outs.append(torch.zeros(blank, dtype=torch.uint8, device=self.device))
                    errors.append(img)
                else:
                    outs.append(self._views(img, rel))
                    errors.append("")
            yield torch.stack(outs), errors

    def __len__(self) -> int:
        return len(self.relpaths)
