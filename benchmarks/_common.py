"""Shared helpers for the benchmark scripts: machine info, a generated dataset, result files.

Not part of the test suite. Each script writes ``benchmarks/results/<name>.json`` and ``<name>.md``.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import random
import shutil
import statistics
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import bench  # noqa: E402,F401 - first: the reproducibility policy (bench/base/determinism.py) before torch starts


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict:
    import torch

    info = {"date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "cpu": cpu_model(), "cores": os.cpu_count(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "torch": torch.__version__, "platform": platform.platform(),
            "cuda": torch.cuda.is_available()}
    from bench.base import determinism
    from bench.threads import encode_threads

    info["determinism"] = determinism.describe(determinism.requested(), torch.device("cpu"),
                                               encode_threads())
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda_version"] = torch.version.cuda
    try:
        import numpy, scipy, sklearn  # noqa: E401

        info.update(numpy=numpy.__version__, scipy=scipy.__version__, sklearn=sklearn.__version__)
    except ImportError:
        pass
    return info


def machine_md(info: dict) -> str:
    keys = ["date_utc", "cpu", "cores", "load_average_at_start", "torch_threads", "torch",
            "python", "gpu", "cuda_version"]
    return "\n".join(f"- {k}: {info[k]}" for k in keys if k in info)


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def write_results(name: str, data: dict, markdown: str, out: str | Path | None = None
                  ) -> tuple[Path, Path]:
    """benchmarks/results/NAME.{json,md}; with ``out``, copies there too (the GPU machine's
    folder that comes back)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    jpath, mpath = RESULTS / f"{name}.json", RESULTS / f"{name}.md"
    jpath.write_text(json.dumps(data, indent=2, default=str) + "\n")
    mpath.write_text(markdown.rstrip() + "\n")
    print(markdown)
    print(f"\nwrote {jpath} and {mpath}")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        for p in (jpath, mpath):
            shutil.copy(p, Path(out) / p.name)
    return jpath, mpath


def table(headers: list[str], rows: list[list]) -> str:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.3e}"
        return str(v)

    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(out)


def make_dtd_like(data_root: Path, classes: int, train: int, val: int, test: int,
                  size: int = 224, seed: int = 0, quality: int = 90) -> Path:
    """A generated dataset in DTD's CoOp layout (``dtd/images/<class>/*.jpg`` + split file),
    so the harness loads it through the registered ``dtd`` dataset. Images are noisy
    class-coloured textures, JPEG at ``size`` px. Reused if already complete."""
    import numpy as np
    from PIL import Image

    base = Path(data_root) / "dtd"
    split_file = base / "split_zhou_DescribableTextures.json"
    marker = base / f".complete-{classes}-{train}-{val}-{test}-{size}-{seed}"
    if marker.exists() and split_file.exists():
        return Path(data_root)
    rng = np.random.default_rng(seed)
    names = [f"texture{c:04d}" for c in range(classes)]
    splits = {"train": [], "val": [], "test": []}
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    for c, name in enumerate(names):
        folder = base / "images" / name
        folder.mkdir(parents=True, exist_ok=True)
        color = rng.uniform(40, 215, size=3)
        freq = 2 + (c % 7) * 2
        n = 0
        for split, count in (("train", train), ("val", val), ("test", test)):
            for _ in range(count):
                phase = rng.uniform(0, 6.28)
                wave = np.sin(2 * np.pi * freq * (xx * np.cos(c) + yy * np.sin(c)) + phase)
                img = color[None, None, :] + 40 * wave[..., None]
                img = img + rng.normal(0, 25, size=(size, size, 3))
                arr = np.clip(img, 0, 255).astype(np.uint8)
                rel = f"{name}/{name}_{n:04d}.jpg"
                Image.fromarray(arr).save(folder / f"{name}_{n:04d}.jpg", quality=quality)
                splits[split].append([rel, c, name])
                n += 1
    for items in splits.values():
        random.Random(seed).shuffle(items)
    split_file.write_text(json.dumps(splits))
    marker.touch()
    return Path(data_root)


def generated_setup(args):
    """What floor.py and views.py share after parsing their flags: torch threads, machine info,
    the generated DTD-like data root, the shot and seed lists and the run options."""
    import torch

    torch.set_num_threads(args.threads)
    info = machine_info()
    work = Path(args.work)
    data_root = make_dtd_like(work / "data", args.classes, args.train, args.val, args.test,
                              size=args.size)
    shots = [int(s) for s in args.shots.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    opts = {"batch_size": args.batch_size, "workers": args.workers, "cache_dtype": "float32",
            "autocast": "off", "progress": False}
    return info, work, data_root, shots, seeds, opts
