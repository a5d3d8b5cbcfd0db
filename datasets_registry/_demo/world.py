"""The demo world: small procedurally generated images with captions.

Everything is drawn with Pillow and numpy from a ``numpy.random.Generator``, so a seed fixes every
pixel and every word. Images are ``IMAGE_SIZE`` x ``IMAGE_SIZE`` RGB uint8 arrays.

What the pretraining world contains (``sample_pair``):
- shapes (circle, square, triangle, ...) with a color, a size, a fill texture (solid, striped,
  dotted, checkered) and a position, on plain, gradient or noisy backgrounds;
- digits 0-9 drawn in fonts or as jittered thick strokes, sometimes downsampled to 8-12 px and back,
  both polarities; captions name them by word and numeral ("seven", "7");
- letters in fonts;
- full-field patterns (eight textures: stripes, dots, checks, zigzags, waves, bricks, grids, rings);
- signs: eight colored shapes named by a word ("a stop sign" is a red hexagon).

Half of the captions start with a run of class-free words (``CONTEXT_WORDS``) so that all 32
positions of the text context are trained (CoOp's 16-token context needs that).

The few-shot demo datasets (``datasets_registry._demo.suite``) reuse these primitives with a shift: outline
sketches, unseen fonts, unseen textures, real handwriting.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

IMAGE_SIZE = 32
_SS = 2  # supersampling factor for anti-aliased masks
_BIG = IMAGE_SIZE * _SS

DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]

COLORS = {
    "red": (220, 30, 30), "green": (40, 170, 50), "blue": (35, 70, 220), "yellow": (240, 220, 30),
    "orange": (245, 140, 20), "purple": (140, 50, 180), "pink": (245, 130, 190),
    "brown": (130, 80, 35), "black": (15, 15, 15), "white": (245, 245, 245),
    "gray": (128, 128, 128), "cyan": (40, 210, 220),
}
COLOR_NAMES = list(COLORS)

SHAPES = ["circle", "square", "triangle", "star", "cross", "diamond", "hexagon", "pentagon",
          "arrow", "heart"]
FILL_TEXTURES = ["solid", "striped", "dotted", "checkered"]
POSITIONS = {"left": (0.3, 0.5), "right": (0.7, 0.5), "top": (0.5, 0.3), "bottom": (0.5, 0.7),
             "center": (0.5, 0.5)}
POSITION_PHRASES = {"left": "on the left", "right": "on the right", "top": "at the top",
                    "bottom": "at the bottom", "center": "in the center"}

# Full-field textures of the world's patterns (the demo textures dataset uses the same eight);
# shapes are filled with the first four only.
PATTERNS = ["striped", "dotted", "checkered", "zigzag", "wavy", "brick", "grid", "concentric"]
PATTERN_NOUNS = {"striped": "stripes", "dotted": "dots", "checkered": "checks", "zigzag": "zigzags",
                 "wavy": "waves", "brick": "bricks", "grid": "grid lines", "concentric": "rings"}

# Signs: a shape in a color, named by a word (the demo signs dataset draws the same eight).
SIGNS = {"stop": ("hexagon", "red"), "yield": ("triangle", "yellow"), "info": ("circle", "blue"),
         "hospital": ("cross", "red"), "exit": ("arrow", "green"), "favorite": ("star", "yellow"),
         "love": ("heart", "pink"), "warning": ("diamond", "orange")}

# Words that carry no class: a random run of them is put before half of the captions, so that
# every position of the 32-token context is trained. CoOp's prompt (16 context vectors, then the
# class name) puts the name and the end token at positions 17-20; captions of at most 16 tokens
# left those positional embeddings at their random init and CoOp's random context could not learn.
CONTEXT_WORDS = ["a", "an", "the", "this", "is", "of", "photo", "picture", "image", "close-up",
                 "clean", "blurry", "bright", "dark", "nice", "good", "drawing", "scan", "rendering",
                 "snapshot", "example", "showing", "view", "simple", "cropped", "here", "with", "in",
                 "low", "resolution", "sample", "shot", "kind", "my", "some", "look", "at"]

_FONT_DIR = None


def font_dir() -> Path:
    """The TrueType fonts that ship inside matplotlib (DejaVu, STIX, Computer Modern)."""
    global _FONT_DIR
    if _FONT_DIR is None:
        import matplotlib

        _FONT_DIR = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return _FONT_DIR


# Fonts the pretraining world uses; the glyph demo dataset uses others (Computer Modern).
PRETRAIN_FONTS = ["DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf",
                  "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf",
                  "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "STIXGeneral.ttf",
                  "STIXGeneralBol.ttf"]
UNSEEN_FONTS = ["cmr10.ttf", "cmss10.ttf", "cmtt10.ttf", "cmb10.ttf", "cmti10.ttf"]


@lru_cache(maxsize=512)
def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(font_dir() / name), size)


# -- colors and backgrounds ---------------------------------------------------------------------

def jitter_color(rng: np.random.Generator, rgb, amount: float = 18.0) -> np.ndarray:
    return np.clip(np.asarray(rgb, np.float32) + rng.normal(0, amount, 3), 0, 255)


def random_rgb(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 255, 3).astype(np.float32)


def contrasting(rng: np.random.Generator, rgb: np.ndarray, min_dist: float = 110.0) -> np.ndarray:
    for _ in range(20):
        c = random_rgb(rng)
        if np.abs(c - rgb).sum() > min_dist * 1.5 and abs(c.mean() - rgb.mean()) > 40:
            return c
    return 255.0 - rgb


def background(rng: np.random.Generator, avoid: np.ndarray | None = None, size: int = IMAGE_SIZE
               ) -> np.ndarray:
    """A plain, gradient or noisy background as a float32 HxWx3 array."""
    base = random_rgb(rng) if avoid is None else contrasting(rng, avoid, 90.0)
    kind = rng.integers(4)
    img = np.broadcast_to(base, (size, size, 3)).astype(np.float32).copy()
    if kind == 1:  # gradient
        other = np.clip(base + rng.normal(0, 50, 3), 0, 255)
        t = np.linspace(0, 1, size, dtype=np.float32)
        ramp = t[:, None] if rng.random() < 0.5 else t[None, :]
        img = base + (other - base) * ramp[..., None]
        img = np.broadcast_to(img, (size, size, 3)).astype(np.float32).copy()
    elif kind == 2:  # pixel noise
        img += rng.normal(0, rng.uniform(5, 25), (size, size, 1 if rng.random() < 0.5 else 3))
    elif kind == 3:  # smooth blobs
        low = rng.normal(0, 30, (4, 4, 3)).astype(np.float32)
        up = np.asarray(Image.fromarray(np.clip(low + 128, 0, 255).astype(np.uint8)).resize(
            (size, size), Image.BILINEAR), np.float32) - 128
        img += up
    return np.clip(img, 0, 255)


# -- fill patterns ------------------------------------------------------------------------------

def _coords(rng: np.random.Generator, size: int, angle: float | None = None):
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    a = rng.uniform(0, math.pi) if angle is None else angle
    u = x * math.cos(a) + y * math.sin(a)
    v = -x * math.sin(a) + y * math.cos(a)
    return u + rng.uniform(0, 50), v + rng.uniform(0, 50)


def pattern_mask(rng: np.random.Generator, kind: str, size: int = IMAGE_SIZE) -> np.ndarray:
    """A binary-ish float mask in [0, 1] for a named texture (1 = second color)."""
    p = rng.uniform(5, 9) * size / IMAGE_SIZE
    if kind in ("solid", "plain"):
        return np.zeros((size, size), np.float32)
    if kind == "striped":
        u, _ = _coords(rng, size, rng.choice([0.0, math.pi / 2, math.pi / 4, 3 * math.pi / 4]))
        return (np.sin(2 * math.pi * u / p) > 0).astype(np.float32)
    if kind == "dotted":
        u, v = _coords(rng, size, 0.0)
        r = p * rng.uniform(0.2, 0.32)
        return (((u % p) - p / 2) ** 2 + ((v % p) - p / 2) ** 2 < r * r).astype(np.float32)
    if kind == "checkered":
        u, v = _coords(rng, size, rng.choice([0.0, math.pi / 4]))
        q = p * 0.6
        return ((np.floor(u / q) + np.floor(v / q)) % 2).astype(np.float32)
    # Textures that only the demo textures dataset uses (never in pretraining).
    if kind == "zigzag":
        u, v = _coords(rng, size, rng.choice([0.0, math.pi / 2]))
        q = p * 1.2
        tri = np.abs(((v / q) % 1.0) - 0.5) * q * 1.4
        return ((((u + tri) / p) % 1.0) < 0.45).astype(np.float32)
    if kind == "wavy":
        u, v = _coords(rng, size, rng.choice([0.0, math.pi / 2]))
        return (np.sin(2 * math.pi * (u + 2.2 * np.sin(2 * math.pi * v / (p * 1.6))) / p) > 0
                ).astype(np.float32)
    if kind == "brick":
        u, v = _coords(rng, size, rng.choice([0.0, math.pi / 2]))
        h, w, t = p, p * 2, max(1.2, p * 0.22)
        row = np.floor(v / h)
        m = ((v % h) < t) | (((u + (row % 2) * w / 2) % w) < t)
        return m.astype(np.float32)
    if kind == "grid":
        u, v = _coords(rng, size, rng.choice([0.0, math.pi / 4]))
        t = max(1.2, p * 0.2)
        return (((u % p) < t) | ((v % p) < t)).astype(np.float32)
    if kind == "concentric":
        y, x = np.mgrid[0:size, 0:size].astype(np.float32)
        cx, cy = rng.uniform(0, size, 2)
        r = np.sqrt((x - cx) ** 2 + (y - cy) ** 2)
        return (np.sin(2 * math.pi * r / p) > 0).astype(np.float32)
    if kind == "speckled":
        m = rng.random((size, size)) < 0.18
        return m.astype(np.float32)
    raise ValueError(f"unknown pattern {kind!r}")


def fill(rng: np.random.Generator, kind: str, color: np.ndarray, size: int = IMAGE_SIZE
         ) -> np.ndarray:
    """The foreground: ``color`` with a texture drawn in a second color."""
    m = pattern_mask(rng, kind, size)
    second = contrasting(rng, color, 80.0) if rng.random() < 0.5 else (
        color * 0.35 if color.mean() > 110 else np.clip(color + 140, 0, 255))
    return color * (1 - m[..., None]) + second * m[..., None]


# -- shape masks --------------------------------------------------------------------------------

def shape_points(shape: str, cx: float, cy: float, r: float, rot: float) -> list[list[tuple]]:
    """Polygon(s) of a shape in pixel coordinates (each a list of (x, y))."""
    def poly(n, start=-math.pi / 2, radius=r):
        return [(cx + radius * math.cos(start + rot + 2 * math.pi * i / n),
                 cy + radius * math.sin(start + rot + 2 * math.pi * i / n)) for i in range(n)]

    def transform(pts):
        c, s = math.cos(rot), math.sin(rot)
        return [(cx + (x * c - y * s) * r, cy + (x * s + y * c) * r) for x, y in pts]

    if shape == "circle":
        return [poly(40)]
    if shape == "square":
        return [poly(4, start=-math.pi / 4, radius=r * 1.1)]
    if shape == "triangle":
        return [poly(3, radius=r * 1.15)]
    if shape == "diamond":
        return [transform([(0, -1.15), (0.75, 0), (0, 1.15), (-0.75, 0)])]
    if shape == "pentagon":
        return [poly(5)]
    if shape == "hexagon":
        return [poly(6)]
    if shape == "star":
        pts = []
        for i in range(10):
            rad = r * (1.15 if i % 2 == 0 else 0.45)
            a = -math.pi / 2 + rot + math.pi * i / 5
            pts.append((cx + rad * math.cos(a), cy + rad * math.sin(a)))
        return [pts]
    if shape == "cross":
        w = 0.34
        return [transform([(-w, -1), (w, -1), (w, -w), (1, -w), (1, w), (w, w), (w, 1), (-w, 1),
                           (-w, w), (-1, w), (-1, -w), (-w, -w)])]
    if shape == "arrow":
        return [transform([(-1, -0.3), (0.15, -0.3), (0.15, -0.75), (1, 0), (0.15, 0.75),
                           (0.15, 0.3), (-1, 0.3)])]
    if shape == "heart":
        pts = []
        for i in range(40):
            t = 2 * math.pi * i / 40
            x = 16 * math.sin(t) ** 3
            y = -(13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t))
            pts.append((x / 16, y / 16 + 0.1))
        return [transform(pts)]
    raise ValueError(f"unknown shape {shape!r}")


def shape_mask(shape: str, cx: float, cy: float, r: float, rot: float = 0.0,
               outline: float = 0.0, rng: np.random.Generator | None = None,
               wobble: float = 0.0) -> np.ndarray:
    """Anti-aliased mask (float32 in [0, 1]) of a filled shape, or its outline of width
    ``outline`` pixels; ``wobble`` jitters the vertices (hand-drawn look). Coordinates in pixels
    of the final image."""
    canvas = Image.new("L", (_BIG, _BIG), 0)
    draw = ImageDraw.Draw(canvas)
    for pts in shape_points(shape, cx * _SS, cy * _SS, r * _SS, rot):
        if wobble and rng is not None:
            pts = _densify(pts, 3)
            pts = [(x + rng.normal(0, wobble * _SS), y + rng.normal(0, wobble * _SS)) for x, y in pts]
        if outline > 0:
            draw.line(pts + [pts[0]], fill=255, width=max(1, int(round(outline * _SS))),
                      joint="curve")
        else:
            draw.polygon(pts, fill=255)
    return np.asarray(canvas.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BOX), np.float32) / 255.0


def _densify(pts, k):
    out = []
    for i, (x0, y0) in enumerate(pts):
        x1, y1 = pts[(i + 1) % len(pts)]
        for j in range(k):
            t = j / k
            out.append((x0 + (x1 - x0) * t, y0 + (y1 - y0) * t))
    return out


# -- digits and letters -------------------------------------------------------------------------

def _arc(cx, cy, rx, ry, t0, t1, n=12):
    return [(cx + rx * math.cos(math.radians(t0 + (t1 - t0) * i / (n - 1))),
             cy + ry * math.sin(math.radians(t0 + (t1 - t0) * i / (n - 1)))) for i in range(n)]


# Strokes of each digit in a unit box (x right, y down), as polylines.
DIGIT_STROKES = {
    0: [_arc(0.5, 0.5, 0.28, 0.4, 0, 360, 24)],
    1: [[(0.36, 0.25), (0.52, 0.1), (0.52, 0.9)]],
    2: [_arc(0.5, 0.33, 0.27, 0.22, 190, 390) + [(0.2, 0.9), (0.82, 0.9)]],
    3: [_arc(0.48, 0.3, 0.24, 0.2, 200, 450), _arc(0.48, 0.69, 0.28, 0.21, 270, 520)],
    4: [[(0.66, 0.9), (0.66, 0.1), (0.16, 0.66), (0.86, 0.66)]],
    5: [[(0.76, 0.1), (0.32, 0.1), (0.29, 0.45)] + _arc(0.5, 0.66, 0.28, 0.24, 235, 510)],
    6: [[(0.7, 0.1), (0.45, 0.22), (0.28, 0.45)] + _arc(0.5, 0.67, 0.25, 0.23, 180, 540)],
    7: [[(0.18, 0.1), (0.82, 0.1), (0.42, 0.9)]],
    8: [_arc(0.5, 0.29, 0.21, 0.19, 0, 360, 20), _arc(0.5, 0.7, 0.26, 0.21, 0, 360, 20)],
    9: [_arc(0.5, 0.32, 0.25, 0.22, 0, 360, 20), [(0.75, 0.32), (0.7, 0.9)]],
}


def stroke_digit_mask(rng: np.random.Generator, digit: int) -> np.ndarray:
    """A digit drawn as jittered thick strokes (a crude handwriting model)."""
    canvas = Image.new("L", (_BIG, _BIG), 0)
    draw = ImageDraw.Draw(canvas)
    h = rng.uniform(0.55, 0.9) * _BIG
    w = h * rng.uniform(0.6, 0.95)
    cx, cy = _BIG / 2 + rng.normal(0, 2.5 * _SS, 2)
    rot, shear = rng.normal(0, 0.15), rng.normal(0, 0.2)
    c, s = math.cos(rot), math.sin(rot)
    width = int(rng.uniform(2.0, 4.5) * _SS)
    for line in DIGIT_STROKES[digit]:
        pts = []
        for x, y in line:
            x, y = x + rng.normal(0, 0.025), y + rng.normal(0, 0.025)
            x, y = (x - 0.5) + shear * (y - 0.5), y - 0.5
            x, y = x * w, y * h
            pts.append((cx + x * c - y * s, cy + x * s + y * c))
        draw.line(pts, fill=255, width=width, joint="curve")
    return np.asarray(canvas.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BOX), np.float32) / 255.0


def text_mask(rng: np.random.Generator, text: str, font: str, height: float = None,
              outline: int = 0, rot_std: float = 12.0) -> np.ndarray:
    """A glyph rendered in ``font``, scaled so its ink is about ``height`` pixels tall."""
    height = height or rng.uniform(16, 28)
    size = max(8, int(height * _SS * 1.25))
    f = _font(font, size)
    canvas = Image.new("L", (_BIG * 2, _BIG * 2), 0)
    draw = ImageDraw.Draw(canvas)
    kw = {"stroke_width": outline * _SS, "stroke_fill": 255, "fill": 0} if outline else {"fill": 255}
    draw.text((_BIG, _BIG), text, font=f, anchor="mm", **kw)
    bbox = canvas.getbbox()
    if bbox is None:
        return np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.float32)
    glyph = canvas.crop(bbox)
    gh = bbox[3] - bbox[1]
    scale = height * _SS / max(gh, 1)
    gw = max(1, int(glyph.width * scale))
    glyph = glyph.resize((gw, max(1, int(gh * scale))), Image.BILINEAR)
    glyph = glyph.rotate(rng.normal(0, rot_std), resample=Image.BILINEAR, expand=True)
    out = Image.new("L", (_BIG, _BIG), 0)
    jx, jy = rng.normal(0, 2.0 * _SS, 2)
    out.paste(glyph, (int(_BIG / 2 - glyph.width / 2 + jx), int(_BIG / 2 - glyph.height / 2 + jy)))
    return np.asarray(out.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BOX), np.float32) / 255.0


def degrade(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Downsample to 8-12 px and back up (blocky or blurry), as tiny scans look."""
    small = int(rng.integers(8, 13))
    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    pil = pil.resize((small, small), Image.BOX)
    return np.asarray(pil.resize((IMAGE_SIZE, IMAGE_SIZE),
                                 Image.NEAREST if rng.random() < 0.3 else Image.BILINEAR), np.float32)


def composite(bg: np.ndarray, fg: np.ndarray | tuple, mask: np.ndarray) -> np.ndarray:
    fg = np.asarray(fg, np.float32)
    return bg * (1 - mask[..., None]) + fg * mask[..., None]


def to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def ink_colors(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(ink, paper): grayscale most of the time, both polarities."""
    if rng.random() < 0.6:
        lo, hi = rng.uniform(0, 70), rng.uniform(180, 255)
        ink, paper = (lo, hi) if rng.random() < 0.5 else (hi, lo)
        return np.full(3, ink, np.float32), np.full(3, paper, np.float32)
    paper = random_rgb(rng)
    return contrasting(rng, paper), paper


# -- the pretraining world ----------------------------------------------------------------------

def _digit_pair(rng):
    d = int(rng.integers(10))
    if rng.random() < 0.5:
        mask = stroke_digit_mask(rng, d)
        hand = True
    else:
        mask = text_mask(rng, str(d), PRETRAIN_FONTS[rng.integers(len(PRETRAIN_FONTS))])
        hand = False
    ink, paper = ink_colors(rng)
    bg = background(rng, avoid=ink) if rng.random() < 0.3 else np.broadcast_to(
        paper, (IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)
    img = composite(bg, ink, mask)
    if rng.random() < 0.35:
        img = degrade(rng, img)
    word = DIGIT_WORDS[d]
    caps = [f"the digit {word}", f"the number {d}", f"a {d}", f"{word}", f"{d}",
            f"the digit {word} ({d})", f"a photo of the digit {word}.", f"the number {word}",
            f"a {word}", f"{word} {d}"]
    if hand:
        caps += [f"a handwritten {word}", f"a handwritten {d}"]
    return img, caps[rng.integers(len(caps))]


def _letter_pair(rng):
    ch = chr(ord("a") + int(rng.integers(26)))
    text = ch.upper() if rng.random() < 0.5 else ch
    mask = text_mask(rng, text, PRETRAIN_FONTS[rng.integers(len(PRETRAIN_FONTS))])
    ink, paper = ink_colors(rng)
    bg = background(rng, avoid=ink) if rng.random() < 0.4 else np.broadcast_to(
        paper, (IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)
    img = composite(bg, ink, mask)
    if rng.random() < 0.15:
        img = degrade(rng, img)
    caps = [f"the letter {ch}", f"a letter {ch}", f"{ch}", f"a photo of the letter {ch}."]
    return img, caps[rng.integers(len(caps))]


def _shape_pair(rng):
    shape = SHAPES[rng.integers(len(SHAPES))]
    cname = COLOR_NAMES[rng.integers(len(COLOR_NAMES))]
    color = jitter_color(rng, COLORS[cname])
    tex = FILL_TEXTURES[rng.integers(len(FILL_TEXTURES))] if rng.random() < 0.5 else "solid"
    size = "large" if rng.random() < 0.5 else "small"
    pos = list(POSITIONS)[rng.integers(len(POSITIONS))]
    r = rng.uniform(9, 13) if size == "large" else rng.uniform(4.5, 7)
    px, py = POSITIONS[pos]
    spread = 0.5 if size == "large" else 1.0
    cx = (px + rng.normal(0, 0.04)) * IMAGE_SIZE
    cy = (py + rng.normal(0, 0.04)) * IMAGE_SIZE
    if size == "large":  # keep large shapes mostly inside
        cx = 0.5 * IMAGE_SIZE + (cx - 0.5 * IMAGE_SIZE) * spread
        cy = 0.5 * IMAGE_SIZE + (cy - 0.5 * IMAGE_SIZE) * spread
    mask = shape_mask(shape, cx, cy, r, rot=rng.normal(0, 0.2))
    bg = background(rng, avoid=color)
    img = composite(bg, fill(rng, tex, color), mask)
    words = []
    if rng.random() < 0.6:
        words.append(size)
    if rng.random() < 0.85:
        words.append(cname)
    if tex != "solid" and rng.random() < 0.8:
        words.append(tex)
    words.append(shape)
    cap = "a " + " ".join(words)
    if rng.random() < 0.5:
        cap += " " + POSITION_PHRASES[pos]
    if rng.random() < 0.2:
        cap = "a photo of " + cap + "."
    return img, cap


def _pattern_pair(rng):
    kind = PATTERNS[rng.integers(len(PATTERNS))]
    cname = COLOR_NAMES[rng.integers(len(COLOR_NAMES))]
    color = jitter_color(rng, COLORS[cname])
    img = fill(rng, kind, color)
    if rng.random() < 0.5:
        img = img + rng.normal(0, rng.uniform(2, 10), img.shape)
    noun = PATTERN_NOUNS[kind]
    caps = [f"a {kind} pattern", f"{kind} texture.", f"{cname} {noun}", f"a {cname} {kind} pattern",
            f"{noun}", f"{kind} texture", f"a {kind} texture"]
    return img, caps[rng.integers(len(caps))]


def _sign_pair(rng):
    name = list(SIGNS)[rng.integers(len(SIGNS))]
    shape, cname = SIGNS[name]
    color = jitter_color(rng, COLORS[cname], 25)
    cx, cy = IMAGE_SIZE / 2 + rng.normal(0, 4, 2)
    mask = shape_mask(shape, cx, cy, rng.uniform(5, 13), rot=rng.normal(0, 0.2))
    img = composite(background(rng, avoid=color), color, mask)
    caps = [f"a {name} sign", f"a {name} sign.", f"the {name} sign", f"{name}", f"a {name} symbol",
            f"a {cname} {name} sign", f"a {name} sign, a {cname} {shape}"]
    return img, caps[rng.integers(len(caps))]


_KINDS = [(_shape_pair, 0.32), (_digit_pair, 0.30), (_letter_pair, 0.14), (_pattern_pair, 0.14),
          (_sign_pair, 0.10)]


def with_context(rng: np.random.Generator, caption: str) -> str:
    """Half of the captions get a run of 1-20 class-free words in front (see CONTEXT_WORDS)."""
    if rng.random() < 0.5:
        return caption
    k = int(rng.integers(1, 21))
    words = [CONTEXT_WORDS[i] for i in rng.integers(len(CONTEXT_WORDS), size=k)]
    return " ".join(words) + " " + caption


def crop_view(rng: np.random.Generator, img: np.ndarray, mirror: bool = True) -> np.ndarray:
    """A random resized crop (8-100% of the area, aspect 3/4-4/3, bicubic), half of the time
    mirrored (if ``mirror``): the few-shot protocol's train augmentation, drawn from ``rng``."""
    area = IMAGE_SIZE * IMAGE_SIZE
    pil = Image.fromarray(img)
    for _ in range(10):
        s, r = rng.uniform(0.08, 1.0), math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        w, h = int(round(math.sqrt(s * area * r))), int(round(math.sqrt(s * area / r)))
        if 0 < w <= IMAGE_SIZE and 0 < h <= IMAGE_SIZE:
            x0, y0 = int(rng.integers(0, IMAGE_SIZE - w + 1)), int(rng.integers(0, IMAGE_SIZE - h + 1))
            pil = pil.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BICUBIC, box=(x0, y0, x0 + w, y0 + h))
            break
    out = np.asarray(pil)
    return np.ascontiguousarray(out[:, ::-1]) if mirror and rng.random() < 0.5 else out


def sample_pair(rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """One (uint8 image, caption) pair of the pretraining world. Half of the images are seen
    through the protocol's train augmentation (``crop_view``; never mirrored when the caption says
    left or right), so that the features of the crops few-shot methods train on stay near their
    class instead of far off (a 32 px digit cut to 8% of its area is a fragment)."""
    u = rng.random()
    acc = 0.0
    fn = _KINDS[-1][0]
    for kind, p in _KINDS:
        acc += p
        if u < acc:
            fn = kind
            break
    img, cap = fn(rng)
    img = to_uint8(img)
    if rng.random() < 0.5:
        img = crop_view(rng, img, mirror="left" not in cap and "right" not in cap)
    return img, with_context(rng, cap)


def batch_rng(seed: int, step: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(step), 20240527])


def make_batch(seed: int, step: int, n: int) -> tuple[np.ndarray, list[str]]:
    """Batch ``step`` of the world for ``seed``: (n x H x W x 3 uint8, n captions)."""
    rng = batch_rng(seed, step)
    imgs, caps = zip(*(sample_pair(rng) for _ in range(n)))
    return np.stack(imgs), list(caps)
