"""--decode cpu vs gpu (bench.gpu_images): input-pipeline images/s, pixel differences, and the
effect on a tiny model's accuracy.

    .venv/bin/python benchmarks/gpu_decode.py --device cuda [--images 4096] [--workers 12]

1. Throughput: ``--images`` JPEG files (random crops of the photographs that ship with
   scikit-learn and matplotlib, 240-640 px a side, quality 90, like the datasets' photos), read
   through each path to normalized float batches on ``--device``, no model: the eval transform,
   and ``--views`` protocol train views per image. cpu = PIL in ``--workers`` DataLoader
   processes (bench.features.ImageFiles); gpu = workers read bytes, decode_jpeg and the crops
   run on the device (bench.gpu_images.DeviceImages).
2. Pixels: mean and max absolute difference per pixel (0-255) between the two paths' uint8
   outputs, same images and seeds.
3. Accuracy: the demo's pretrained tiny CLIP on demo datasets re-saved as JPEG (quality 95):
   zero-shot top-1 (eval path) and a class-mean classifier over 4 augmented views per train
   image (train path), each with both decode paths; features' cosine similarity.

On a CPU (``--device cpu``) the "gpu" path runs the same code on CPU tensors: its pixels and
accuracy are the CUDA path's up to nvJPEG's decoder; its speed means nothing.
Writes benchmarks/results/gpu_decode.{json,md} (gpu_decode_cpu.* with ``--device cpu``), and a
copy into ``--out`` if given.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import machine_info, machine_md, write_results  # noqa: E402
from _common import table as _table  # noqa: E402


def table(rows: list[dict]) -> str:
    headers = list(dict.fromkeys(k for r in rows for k in r))
    return _table(headers, [[r.get(h, "") for h in headers] for r in rows])


def _photos() -> list[Path]:
    import matplotlib
    import sklearn

    return [p for p in (Path(sklearn.__file__).parent / "datasets/images/china.jpg",
                        Path(sklearn.__file__).parent / "datasets/images/flower.jpg",
                        Path(matplotlib.__file__).parent / "mpl-data/sample_data/grace_hopper.jpg")
            if p.is_file()]


def _write(job):
    import random

    from PIL import Image

    folder, start, count = job
    photos = [Image.open(p).convert("RGB") for p in _photos()]
    rng = random.Random(start)
    for i in range(start, start + count):
        img = photos[i % len(photos)]
        w, h = rng.randint(200, img.width), rng.randint(200, img.height)
        x, y = rng.randint(0, img.width - w), rng.randint(0, img.height - h)
        scale = rng.uniform(0.8, 1.6)
        out = img.crop((x, y, x + w, y + h)).resize((int(w * scale), int(h * scale)))
        out.save(Path(folder) / f"{i:06d}.jpg", quality=90)


def make_jpegs(folder: Path, n: int, workers: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    chunk = 128
    with Pool(max(1, workers)) as pool:
        pool.map(_write, [(str(folder), s, min(chunk, n - s)) for s in range(0, n, chunk)])
    return [f"{i:06d}.jpg" for i in range(n)]


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def _sources(bb, folder, names, device, batch, workers, views):
    """(cpu iterable, gpu iterable, normalization) of uint8 batches on the device."""
    from bench.augment import CropFlip
    from bench.features import ImageFiles, image_loader, split_normalization
    from bench.gpu_images import DeviceImages, EvalGeometry

    if views:
        augment = CropFlip(bb.image_size, (0.08, 1.0), bb.mean, bb.std)
        cpu = ImageFiles(folder, names, None, views=list(range(views)), salt=1,
                         image_size=bb.image_size, augment=augment)
        per = max(1, batch // views)
        gpu = DeviceImages(folder, names, device, per, workers, augment=augment,
                           views=list(range(views)), salt=1, image_size=bb.image_size)
        return image_loader(cpu, per, workers, device), gpu, cpu.normalization
    cpu = ImageFiles(folder, names, bb.eval_transform, image_size=bb.image_size)
    norm = split_normalization(bb.eval_transform)[1:]
    gpu = DeviceImages(folder, names, device, batch, workers, eval=EvalGeometry(bb.eval_transform),
                       image_size=bb.image_size, normalization=norm)
    return image_loader(cpu, batch, workers, device), gpu, norm


def throughput(bb, folder, names, device, batch, workers, views) -> dict:
    from bench.features import normalize_uint8

    import torch

    row = {"views": views or "eval", "images": len(names)}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for warm in (True, False):
        subset = names[:batch * 2] if warm else names
        cpu, gpu, norm = _sources(bb, folder, subset, device, batch, workers, views)
        for name, source in (("cpu", cpu), ("gpu", gpu)):
            _sync(device)
            t = time.perf_counter()
            for images, _ in source:
                normalize_uint8(images.to(device, non_blocking=True), *norm)
            _sync(device)
            if not warm:
                row[f"{name} img/s"] = round(len(subset) / (time.perf_counter() - t), 1)
    row["gpu / cpu"] = round(row["gpu img/s"] / row["cpu img/s"], 2)
    if device.type == "cuda":
        row["peak GPU MiB"] = round(torch.cuda.max_memory_allocated(device) / 2**20)
    return row


def pixels(bb, folder, names, device, batch, views) -> dict:
    cpu, gpu, _ = _sources(bb, folder, names, device, batch, 0, views)
    total, count, worst = 0.0, 0, 0
    for (a, _), (b, _) in zip(cpu, gpu):
        d = (a.to(device).int() - b.int()).abs()
        total += float(d.float().sum())
        count += d.numel()
        worst = max(worst, int(d.max()))
    return {"views": views or "eval", "images": len(names), "mean |diff|": round(total / count, 3),
            "max |diff|": worst}


def accuracy(device, datasets: list[str], work: Path) -> list[dict]:
    import json

    import torch
    from PIL import Image

    from bench.backbone import Backbone
    from bench.demo import demo_defaults
    from bench.features import DatasetFeatures, FeatureCache
    from datasets_registry import DATASETS

    demo = demo_defaults()
    bb = Backbone(demo["backbone"], demo["pretrained"], device)
    rows = []
    for name in datasets:
        src = Path(demo["data_root"]) / name
        dst = work / "jpeg" / name
        split_file = next(src.glob("split_*.json"))
        split = json.loads(split_file.read_text())
        for part in split.values():
            for item in part:
                out = dst / "images" / Path(item[0]).with_suffix(".jpg")
                out.parent.mkdir(parents=True, exist_ok=True)
                Image.open(src / "images" / item[0]).convert("RGB").save(out, quality=95)
                item[0] = str(Path(item[0]).with_suffix(".jpg"))
        (dst / split_file.name).write_text(json.dumps(split))
        splits = DATASETS.get(name).load(work / "jpeg")
        weights = bb.class_weights(splits.classnames, DATASETS.get(name).templates)
        labels = torch.tensor([lbl for _, lbl in splits.test])
        train_labels = torch.tensor([lbl for _, lbl in splits.train])
        row, feats = {"dataset": name}, {}
        for decode in ("cpu", "gpu"):
            f = DatasetFeatures(bb, splits, FeatureCache(work / f"cache-{decode}"),
                                progress=False, decode=decode)
            test = f.eval_features("test", list(range(len(splits.test))))
            views = f.augmented(list(range(len(splits.train))), range(4), "protocol", "s1",
                                cache=False)
            test = test / test.norm(dim=-1, keepdim=True)
            zs = (test @ weights.cpu().T).argmax(-1)
            means = torch.stack([views[:, train_labels == c].mean((0, 1))
                                 for c in range(len(splits.classnames))])
            cm = (test @ (means / means.norm(dim=-1, keepdim=True)).T).argmax(-1)
            row[f"zero-shot {decode}"] = round(100 * float((zs == labels).float().mean()), 2)
            row[f"class-mean {decode}"] = round(100 * float((cm == labels).float().mean()), 2)
            feats[decode] = (test, views)
        cos = torch.nn.functional.cosine_similarity
        row["test 1-cos max"] = float(1 - cos(*[feats[d][0] for d in feats], dim=-1).min())
        row["view 1-cos mean"] = float(1 - cos(*[feats[d][1] for d in feats], dim=-1).mean())
        rows.append(row)
    return rows


def main() -> int:
    import torch

    from bench.backbone import Backbone

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--images", type=int, default=4096)
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--backbone", default="RN50-quickgelu", help="for its transforms only")
    ap.add_argument("--datasets", default="demo_textures,demo_digits,demo_signs")
    ap.add_argument("--out", default=None, help="also copy the results into this folder")
    args = ap.parse_args()
    device = torch.device(args.device)
    work = Path(tempfile.mkdtemp(prefix="gpu-decode-"))
    try:
        t = time.perf_counter()
        names = make_jpegs(work / "jpegs", args.images, args.workers)
        print(f"{len(names)} JPEGs written in {time.perf_counter() - t:.0f} s", flush=True)
        bb = Backbone(args.backbone, None, "cpu")  # the transforms only; no model runs
        speed = [throughput(bb, work / "jpegs", names, device, args.batch, args.workers, v)
                 for v in (0, args.views)]
        print(table(speed), flush=True)
        diffs = [pixels(bb, work / "jpegs", names[:256], device, 64, v) for v in (0, args.views)]
        print(table(diffs), flush=True)
        acc = accuracy(device, args.datasets.split(","), work)
        print(table(acc), flush=True)
        data = {"machine": machine_info(), "args": vars(args), "throughput": speed,
                "pixels": diffs, "accuracy": acc}
        md = "\n\n".join([
            "# --decode cpu vs gpu", machine_md(data["machine"]),
            f"Device {device}. Throughput: {args.images} JPEG files (240-640 px), decode + "
            f"transform + copy + normalization, no model; {args.workers} workers.",
            table(speed), "Pixels (0-255), same images and seeds:", table(diffs),
            "Tiny demo CLIP, demo datasets as JPEG (quality 95): top-1 (%) per decode path.",
            table(acc)])
        write_results("gpu_decode" if device.type == "cuda" else "gpu_decode_cpu", data, md,
                      args.out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
