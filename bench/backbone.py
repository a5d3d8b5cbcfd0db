"""The frozen CLIP backbone: an open_clip model in eval mode, its transforms and tokenizer.

``--pretrained`` takes an open_clip tag (``openai``, ``laion2b_s34b_b79k``...), a local checkpoint
file, an open_clip ``local-dir:`` folder, or ``none`` (random init, seeded, for tests). Model
configs shipped in ``configs/models/`` are registered with open_clip, so they load through its
own factory exactly as built-in architectures do.
"""

from __future__ import annotations

import hashlib
import logging
import os
from functools import lru_cache
from pathlib import Path

import torch
from torchvision import transforms as T

from bench.base.determinism import MIN_BATCH  # batches pad to it (why: there)
from bench.base.errors import BenchError, UsageError, did_you_mean
from configs import MODEL_DIR

log = logging.getLogger(__name__)

# docs/protocol.md §1: CoOp/CLIP-Adapter train augmentation (not open_clip's own, which uses 0.9-1.0).
TRAIN_CROP_SCALE = (0.08, 1.0)


@lru_cache(maxsize=None)
def _open_clip():
    import open_clip

    open_clip.add_model_config(MODEL_DIR)
    return open_clip


def is_random_init(pretrained: str | None) -> bool:
    return pretrained is None or str(pretrained).lower() in ("", "none", "random")


def _looks_like_path(pretrained: str) -> bool:
    return (os.sep in pretrained or pretrained.startswith(".")
            or pretrained.endswith((".pt", ".pth", ".bin", ".safetensors", ".ckpt")))


def check_backbone_name(name: str) -> None:
    oc = _open_clip()
    models = oc.list_models()
    if name not in models:
        hint = did_you_mean(name, models, n=3)
        raise UsageError(f"unknown backbone {name!r}.{hint} See `bench ls backbones` for the "
                         f"{len(models)} open_clip architectures.")


def resolve_pretrained(name: str, pretrained: str | None) -> str | None:
    """Check ``pretrained`` before any loading; return the value to hand to open_clip."""
    if is_random_init(pretrained):
        return None
    pretrained = str(pretrained)
    if pretrained.startswith("local-dir:"):
        folder = Path(pretrained[len("local-dir:"):]).expanduser()
        if not (folder / "open_clip_config.json").is_file():
            raise UsageError(f"--pretrained {pretrained}: {folder} has no open_clip_config.json "
                             f"(a local-dir: folder needs open_clip_config.json and "
                             f"open_clip_pytorch_model.bin or .safetensors)")
        return f"local-dir:{folder.resolve()}"
    path = Path(pretrained).expanduser()
    if path.exists():
        if path.is_dir():
            raise UsageError(f"--pretrained {pretrained} is a folder; pass a checkpoint file, "
                             f"or local-dir:{pretrained} for an open_clip model folder")
        return str(path.resolve())
    if _looks_like_path(pretrained):
        raise UsageError(f"--pretrained {pretrained}: no such checkpoint file")
    tags = _open_clip().list_pretrained_tags_by_model(name)
    if pretrained not in tags:
        known = ", ".join(tags) if tags else "none (use a local checkpoint file or 'none')"
        raise UsageError(f"--pretrained {pretrained!r} is neither a file nor a known open_clip "
                         f"tag for {name}; known tags: {known}")
    return pretrained


@lru_cache(maxsize=None)
def _file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def weights_fingerprint(name: str, pretrained: str | None) -> str:
    """Identifies the weights for the feature cache: tag, or content hash of a local file."""
    if pretrained is None:
        return f"{name}:random-init-seed0"
    if pretrained.startswith("local-dir:"):
        folder = Path(pretrained[len("local-dir:"):])
        files = sorted(p for p in folder.iterdir() if p.is_file())
        return f"{name}:local-dir:" + ",".join(_file_sha256(str(p)) for p in files)
    if Path(pretrained).is_file():
        return f"{name}:file:{_file_sha256(pretrained)}"
    return f"{name}:{pretrained}"


def unavailable_weights(name: str, tag: str) -> str:
    """The message for weights of an open_clip tag that are neither cached nor downloadable."""
    hub = os.environ.get("HF_HUB_CACHE") or os.environ.get("HF_HOME") or "~/.cache/huggingface"
    offline = " (HF_HUB_OFFLINE=1 is set)" if os.environ.get("HF_HUB_OFFLINE") else ""
    return (f"could not get the pretrained weights {name}/{tag}: they are not in the local "
            f"open_clip/Hugging Face cache ({hub}) and cannot be downloaded{offline}; download "
            f"them where there is network, or pass a local file with --pretrained "
            f"/path/to/checkpoint.pt (or --pretrained local-dir:/folder)")


def cached_weights(name: str, tag: str, hub_cache: str | None = None) -> bool | None:
    """Whether open_clip would find the weights of ``tag`` on this machine without the network
    (the Hugging Face cache, or ``~/.cache/clip`` for a URL), None when it cannot be told. Looks
    at files only: for `bench run` to stop at once, offline, instead of after planning."""
    pretrained = _open_clip().pretrained
    cfg = pretrained.get_pretrained_cfg(name, tag)
    if not cfg:
        return None
    if cfg.get("file"):
        return Path(cfg["file"]).is_file()
    hub = cfg.get("hf_hub", "")
    if hub and pretrained.has_hf_hub():
        from huggingface_hub import try_to_load_from_cache

        model_id, filename = os.path.split(hub)
        filename = filename or pretrained.HF_WEIGHTS_NAME
        names = [filename]  # and the .safetensors open_clip looks for first
        if filename == pretrained.HF_WEIGHTS_NAME:
            names.insert(0, pretrained.HF_SAFE_WEIGHTS_NAME)
        elif filename.endswith((".bin", ".pth")):
            names.insert(0, filename[:-4] + ".safetensors")
        return any(isinstance(try_to_load_from_cache(model_id, f, cache_dir=hub_cache), str)
                   for f in names)
    if cfg.get("url"):
        return (Path("~/.cache/clip").expanduser() / os.path.basename(cfg["url"])).is_file()
    return None


class Backbone:
    """A loaded, frozen open_clip model plus what methods need from it."""

    def __init__(self, name: str, pretrained: str | None, device: str | torch.device = "cpu"):
        check_backbone_name(name)
        self.name = name
        self.pretrained_arg = pretrained
        self.pretrained = resolve_pretrained(name, pretrained)
        self.device = torch.device(device)
        self.fingerprint = weights_fingerprint(name, self.pretrained)
        self.model, self.eval_transform = self._create()
        self.model.eval().requires_grad_(False)
        self.tokenizer = _open_clip().get_tokenizer(
            self.pretrained if self.pretrained and self.pretrained.startswith("local-dir:") else name)
        self.context_length = int(getattr(self.model, "context_length", 77))
        self.logit_scale = float(self.model.logit_scale.exp().item())
        size = self.model.visual.image_size
        self.image_size = size[0] if isinstance(size, (tuple, list)) else int(size)
        self.mean = tuple(getattr(self.model.visual, "image_mean", None) or _open_clip().OPENAI_DATASET_MEAN)
        self.std = tuple(getattr(self.model.visual, "image_std", None) or _open_clip().OPENAI_DATASET_STD)
        self._class_weight_memo: dict = {}

    def _create(self):
        oc = _open_clip()
        if self.pretrained is None:
            torch.manual_seed(0)  # random init is deterministic, so its features can be cached
        model_name = self.pretrained if (self.pretrained or "").startswith("local-dir:") else self.name
        pretrained = None if model_name != self.name else self.pretrained
        try:
            model, _, preprocess = oc.create_model_and_transforms(
                model_name, pretrained=pretrained, device=self.device)
        except Exception as exc:  # noqa: BLE001 - open_clip raises many kinds for bad weights
            msg = str(exc) or type(exc).__name__
            if self.pretrained is None:
                raise
            if Path(self.pretrained).is_file():
                raise UsageError(f"could not load weights {self.pretrained} into {self.name}: "
                                 f"the file is not an open_clip/CLIP checkpoint for this model "
                                 f"({type(exc).__name__}: {msg.splitlines()[0][:200]})") from None
            if "size mismatch" in msg or "Missing key" in msg or "Unexpected key" in msg:
                raise UsageError(f"weights {self.pretrained} do not fit {self.name}: "
                                 f"{msg.splitlines()[0][:300]}") from None
            raise BenchError(unavailable_weights(self.name, self.pretrained)) from None
        return model, preprocess

    # -- images -------------------------------------------------------------------------------
    def train_transform(self, scale=TRAIN_CROP_SCALE):
        """docs/protocol.md §1 train augmentation: RandomResizedCrop (bicubic), flip, CLIP normalization."""
        return T.Compose([
            T.RandomResizedCrop(self.image_size, scale=scale,
                                interpolation=T.InterpolationMode.BICUBIC),
            T.RandomHorizontalFlip(),
            T.Lambda(_to_rgb),
            T.ToTensor(),
            T.Normalize(self.mean, self.std),
        ])

    @torch.inference_mode()
    def encode_images(self, images: torch.Tensor, autocast: bool = False,
                      amp_dtype: torch.dtype = torch.float16) -> torch.Tensor:
        """Raw image features (N, D) float32 on the device; ``autocast``: fp16 (or ``amp_dtype``)
        autocast on CUDA. ``images`` may be in pinned memory: the copy does not block."""
        images = images.to(self.device, non_blocking=True)
        n = images.shape[0]
        if 0 < n < MIN_BATCH:
            pad = images.new_zeros((MIN_BATCH - n, *images.shape[1:]))
            images = torch.cat([images, pad])
        with torch.autocast(self.device.type, dtype=amp_dtype,
                            enabled=autocast and self.device.type == "cuda"):
            return self.model.encode_image(images).float()[:n]

    # -- text ---------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_text(self, prompts: list[str], batch_size: int = 256) -> torch.Tensor:
        out = []
        for i in range(0, len(prompts), batch_size):
            tokens = self.tokenizer(prompts[i:i + batch_size]).to(self.device)
            out.append(self.model.encode_text(tokens).float())
        return torch.cat(out)

    def class_weights(self, classnames: list[str], templates: list[str]) -> torch.Tensor:
        """Zero-shot classifier (docs/protocol.md §4): normalize per template, average, re-normalize.

        Memoized per (classnames, templates): text features that do not change are computed once.
        """
        key = (tuple(classnames), tuple(templates))
        if key not in self._class_weight_memo:
            prompts = [t.format(c) for t in templates for c in classnames]
            emb = self.encode_text(prompts).view(len(templates), len(classnames), -1)
            emb = emb / emb.norm(dim=-1, keepdim=True)
            mean = emb.mean(dim=0)
            self._class_weight_memo[key] = mean / mean.norm(dim=-1, keepdim=True)
        return self._class_weight_memo[key]


def _to_rgb(img):
    return img.convert("RGB") if img.mode != "RGB" else img


def list_backbones() -> list[tuple[str, list[str]]]:
    oc = _open_clip()
    return [(m, list(oc.list_pretrained_tags_by_model(m))) for m in oc.list_models()]
