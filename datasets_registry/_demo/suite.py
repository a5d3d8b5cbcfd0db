"""The demo few-shot suite: small datasets in the CoOp split-file layout, generated on first use.

Each dataset is shifted away from the pretraining world (``datasets_registry._demo.world``) so that zero-shot
is imperfect and a few labelled examples help:

- ``demo_digits``: real handwriting, scikit-learn's 1,797 8x8 digits (the model only saw rendered
  digits);
- ``demo_sketches``: the ten shapes drawn as wobbly pen outlines on paper (the model saw them filled);
- ``demo_glyphs``: ten letters in fonts the model never saw (Computer Modern), in color on
  varied backgrounds;
- ``demo_textures``: the world's eight full-field textures in random colors under pixel noise;
- ``demo_signs``: the world's eight signs ("a stop sign" is a red hexagon) at other sizes: the easy
  dataset of the suite.

Layout under the data root (one folder per dataset, as for the real datasets)::

    <root>/<folder>/images/<class>/<split>_<i>.png
    <root>/<folder>/split_zhou_<folder>.json   {train, val, test: [[relpath, label, classname]]}

The datasets are registered in ``datasets_registry/demo.py`` (which imports this module; this
module imports nothing of the registry). Generation is deterministic (fixed seeds) and atomic: everything is written into a temporary
folder that is renamed into place, so a killed generation never leaves a half dataset.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from datasets_registry._demo import world as W

# Bump when any generator below changes: the cache folder name carries it, so old data is never
# mixed with new.
SUITE_VERSION = "v2"
SUITE_SEED = 1234
SPLITS = ("train", "val", "test")


@dataclass
class GeneratedSplit:
    images: np.ndarray  # N x H x W x 3 uint8
    labels: list[int]


@dataclass
class DemoSpec:
    name: str
    classnames: list[str]
    generate: Callable[[], dict[str, GeneratedSplit]]
    description: str


def _per_class(rng_key: list[int], classnames: list[str], counts: dict[str, int],
               draw: Callable[[np.random.Generator, int], np.ndarray]) -> dict[str, GeneratedSplit]:
    out = {}
    for s, split in enumerate(SPLITS):
        rng = np.random.default_rng(rng_key + [s])
        imgs, labels = [], []
        for i in range(counts[split]):
            for label in range(len(classnames)):
                imgs.append(W.to_uint8(draw(rng, label)))
                labels.append(label)
        out[split] = GeneratedSplit(np.stack(imgs), labels)
    return out


_COUNTS = {"train": 32, "val": 8, "test": 50}


# -- demo_digits: real handwriting from scikit-learn ---------------------------------------------

def _digits() -> dict[str, GeneratedSplit]:
    from sklearn.datasets import load_digits

    d = load_digits()
    imgs = []
    for a in d.images:  # 8x8, 0..16, ink high
        gray = (255.0 * (1.0 - a / 16.0)).astype(np.uint8)  # dark ink on white paper
        up = Image.fromarray(gray).resize((W.IMAGE_SIZE, W.IMAGE_SIZE), Image.BILINEAR)
        imgs.append(np.repeat(np.asarray(up)[..., None], 3, axis=2))
    imgs = np.stack(imgs)
    rng = np.random.default_rng(SUITE_SEED)
    parts = {s: [] for s in SPLITS}
    for label in range(10):  # CoOp's 50/20/30 split per class
        idx = np.flatnonzero(d.target == label)
        idx = idx[rng.permutation(len(idx))]
        n_tr, n_va = round(0.5 * len(idx)), round(0.2 * len(idx))
        parts["train"] += list(idx[:n_tr])
        parts["val"] += list(idx[n_tr:n_tr + n_va])
        parts["test"] += list(idx[n_tr + n_va:])
    return {s: GeneratedSplit(imgs[np.sort(ix)], [int(d.target[i]) for i in np.sort(ix)])
            for s, ix in parts.items()}


# -- demo_sketches: outlines instead of filled shapes --------------------------------------------

def _sketch(rng: np.random.Generator, label: int) -> np.ndarray:
    paper = np.full(3, rng.uniform(200, 255), np.float32) + rng.normal(0, 8, 3)
    bg = np.broadcast_to(paper, (W.IMAGE_SIZE, W.IMAGE_SIZE, 3)).astype(np.float32)
    bg = bg + rng.normal(0, 6, (W.IMAGE_SIZE, W.IMAGE_SIZE, 1))
    pen = np.array([[20, 20, 20], [30, 40, 150], [150, 30, 30], [60, 60, 60]],
                   np.float32)[rng.integers(4)]
    r = rng.uniform(7.5, 12)
    cx, cy = W.IMAGE_SIZE / 2 + rng.normal(0, 2.5, 2)
    mask = W.shape_mask(W.SHAPES[label], cx, cy, r, rot=rng.normal(0, 0.35),
                        outline=rng.uniform(1.0, 2.0), rng=rng, wobble=rng.uniform(0.3, 0.8))
    return W.composite(bg, pen, mask)


# -- demo_glyphs: letters in unseen fonts ---------------------------------------------------------

GLYPH_LETTERS = ["a", "b", "e", "g", "h", "k", "m", "r", "s", "w"]


def _glyph(rng: np.random.Generator, label: int) -> np.ndarray:
    ch = GLYPH_LETTERS[label]
    text = ch.upper() if rng.random() < 0.5 else ch
    font = W.UNSEEN_FONTS[rng.integers(len(W.UNSEEN_FONTS))]
    mask = W.text_mask(rng, text, font, height=rng.uniform(16, 26), rot_std=10)
    ink = W.random_rgb(rng)
    bg = W.background(rng, avoid=ink)
    return W.composite(bg, ink, mask)


# -- demo_textures: known and unknown textures ---------------------------------------------------

TEXTURES = ["striped", "dotted", "checkered", "zigzag", "wavy", "brick", "grid", "concentric"]


def _texture(rng: np.random.Generator, label: int) -> np.ndarray:
    base = W.random_rgb(rng)
    img = W.fill(rng, TEXTURES[label], base)
    return img + rng.normal(0, 6, img.shape)


# -- demo_signs: familiar pictures, unfamiliar names ----------------------------------------------

SIGNS = W.SIGNS


def _sign(rng: np.random.Generator, label: int) -> np.ndarray:
    shape, cname = list(SIGNS.values())[label]
    color = W.jitter_color(rng, W.COLORS[cname], 25)
    cx, cy = W.IMAGE_SIZE / 2 + rng.normal(0, 3, 2)
    mask = W.shape_mask(shape, cx, cy, rng.uniform(6, 12), rot=rng.normal(0, 0.15))
    bg = W.background(rng, avoid=color)
    return W.composite(bg, color, mask)


SUITE: dict[str, DemoSpec] = {
    "demo_digits": DemoSpec("demo_digits", list(W.DIGIT_WORDS), _digits,
                            "scikit-learn's handwritten 8x8 digits (real images)"),
    "demo_sketches": DemoSpec(
        "demo_sketches", list(W.SHAPES),
        lambda: _per_class([SUITE_SEED, 2], W.SHAPES, _COUNTS, _sketch),
        "hand-drawn shape outlines (the world has filled shapes)"),
    "demo_glyphs": DemoSpec(
        "demo_glyphs", list(GLYPH_LETTERS),
        lambda: _per_class([SUITE_SEED, 3], GLYPH_LETTERS, _COUNTS, _glyph),
        "letters in unseen fonts (Computer Modern)"),
    "demo_textures": DemoSpec(
        "demo_textures", list(TEXTURES),
        lambda: _per_class([SUITE_SEED, 4], TEXTURES, _COUNTS, _texture),
        "eight textures in random colors under pixel noise"),
    "demo_signs": DemoSpec(
        "demo_signs", list(SIGNS),
        lambda: _per_class([SUITE_SEED, 5], list(SIGNS), _COUNTS, _sign),
        "eight signs, each a colored shape (a stop sign is a red hexagon)"),
}


def split_file_name(name: str) -> str:
    return f"split_zhou_{name}.json"


# -- writing the data root ------------------------------------------------------------------------

def demo_cache_dir() -> Path:
    env = os.environ.get("BENCH_DEMO_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "bench" / "demo"


def demo_data_root() -> Path:
    return demo_cache_dir() / f"data-{SUITE_VERSION}"


def _png_bytes(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG", optimize=False, compress_level=1)
    return buf.getvalue()


def write_dataset(spec: DemoSpec, folder: Path) -> dict[str, int]:
    splits = spec.generate()
    img_dir = folder / "images"
    entries: dict[str, list] = {}
    for split in SPLITS:
        rows = []
        gs = splits[split]
        for i, (img, label) in enumerate(zip(gs.images, gs.labels)):
            cname = spec.classnames[label]
            rel = f"{cname}/{split}_{i:05d}.png"
            path = img_dir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(_png_bytes(img))
            rows.append([rel, int(label), cname])
        entries[split] = rows
    (folder / split_file_name(spec.name)).write_text(json.dumps(entries))
    return {s: len(v) for s, v in entries.items()}


def _is_complete(root: Path) -> bool:
    return (root / ".complete").is_file() and all(
        (root / name / split_file_name(name)).is_file() for name in SUITE)


def ensure_demo_data(root: Path | None = None, quiet: bool = True) -> Path:
    """Generate every demo dataset under ``root`` (default: the cache) unless already there."""
    root = Path(root) if root is not None else demo_data_root()
    if _is_complete(root):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".tmp", dir=root.parent))
    try:
        for spec in SUITE.values():
            sizes = write_dataset(spec, tmp / spec.name)
            if not quiet:
                print(f"  {spec.name}: {len(spec.classnames)} classes, "
                      f"{sizes['train']}/{sizes['val']}/{sizes['test']} train/val/test")
        (tmp / ".complete").write_text(SUITE_VERSION + "\n")
        try:
            os.rename(tmp, root)
        except OSError:
            if not _is_complete(root):  # an incomplete or outdated folder: swap it out
                old = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".old.tmp",
                                            dir=root.parent))
                os.rename(root, old / "data")
                os.rename(tmp, root)
                shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def in_memory_split(name: str, split: str = "test") -> tuple[np.ndarray, list[int], list[str]]:
    """A demo dataset's split without touching disk (images, labels, class names)."""
    spec = SUITE[name]
    gs = spec.generate()[split]
    return gs.images, gs.labels, spec.classnames
