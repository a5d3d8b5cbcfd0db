"""GPU: feature-extraction throughput (model alone vs the whole pipeline from JPEG files on
disk), CoOp on 1,000 classes (peak memory, step time) and the linear probe's C search on the GPU.
Runs only where CUDA is present; on a machine without it, writes a JSON saying so and exits 0.

    .venv/bin/python benchmarks/gpu.py [--images 8192] [--workers 16]

Extraction: RN50 and ViT-B-16 (random init, 224 px) in fp32 and under fp16 / bf16 autocast.
"model alone": the same batch already on the GPU, encode_images in a loop. "pipeline":
bench.features.encode_files over generated 224 px JPEG files (DataLoader workers decode and
transform, pinned memory, non-blocking copy, inference_mode, autocast), as the harness runs it:
batches cross as uint8 and are normalized on the GPU. "pipeline, float32 transfer": the same with
ToTensor + Normalize in the workers (the plain torchvision way), for comparison; the two must
give identical features. Target: pipeline >= 80% of model alone with 16 workers.
CoOp: benchmarks/coop_memory.py on RN50's text tower, 1,000 classes, default, float-mask (the
default without the causal attention kernels) and memory-saving settings (precision auto =
CoOp's fp16 on CUDA) and the default under bf16 autocast: steps/s and memory. Target: within
16 GB. Linear probe: benchmarks/linear_probe.py's harness search on the GPU (100 and
1,000 classes); scikit-learn's side stays the CPU measurement in linear_probe.md.

``--device cpu --models bench-bench-vit64`` runs the same code on the CPU with a small model
(a dry run of the script; its numbers mean nothing). Results are written after every row, so a
run cut short keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from multiprocessing import Pool
from pathlib import Path

from _common import RESULTS, machine_info, machine_md, table, write_results

sys.path.insert(0, str(Path(__file__).parent))


def _write_jpegs(job):
    import numpy as np
    from PIL import Image

    folder, start, count, size = job
    rng = np.random.default_rng(start)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    for i in range(start, start + count):
        freq, angle = rng.uniform(1, 12), rng.uniform(0, 3.14)
        wave = np.sin(2 * np.pi * freq * (xx * np.cos(angle) + yy * np.sin(angle)))
        img = rng.uniform(40, 215, size=3)[None, None, :] + 50 * wave[..., None]
        img = img + rng.normal(0, 20, size=(size, size, 3))
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(
            Path(folder) / f"{i:06d}.jpg", quality=90)


def make_jpegs(folder: Path, n: int, size: int = 224) -> list[str]:
    """``n`` generated JPEG files (textures + noise) in ``folder``, written in parallel."""
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"{i:06d}.jpg" for i in range(n)]
    if all((folder / f).exists() for f in names):
        return names
    chunk = 256
    with Pool(os.cpu_count()) as pool:
        pool.map(_write_jpegs, [(str(folder), s, min(chunk, n - s), size)
                                for s in range(0, n, chunk)])
    return names


def model_alone(bb, batch: int, iters: int, amp, dtype) -> float:
    import torch

    x = torch.randn(batch, 3, bb.image_size, bb.image_size, device=bb.device)
    for _ in range(3):
        bb.encode_images(x, autocast=amp, amp_dtype=dtype)
    sync(bb.device)
    t = time.perf_counter()
    for _ in range(iters):
        bb.encode_images(x, autocast=amp, amp_dtype=dtype)
    sync(bb.device)
    return batch * iters / (time.perf_counter() - t)


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def pipeline(bb, folder: Path, names: list[str], batch: int, workers: int, amp, dtype,
             uint8: bool):
    """Images/s of encode_files over the JPEG files, and the features."""
    from bench.features import ImageFiles, encode_files

    orig = bb.encode_images
    bb.encode_images = lambda images, autocast=False: orig(images, autocast=amp, amp_dtype=dtype)
    try:
        files = ImageFiles(folder, names, bb.eval_transform, image_size=bb.image_size, uint8=uint8)
        warm = ImageFiles(folder, names[:batch * 2], bb.eval_transform, uint8=uint8)
        encode_files(bb, warm, batch, workers, progress=False)
        sync(bb.device)
        t = time.perf_counter()
        feats = encode_files(bb, files, batch, workers, progress=False)
        sync(bb.device)
        return len(names) / (time.perf_counter() - t), feats
    finally:
        bb.encode_images = orig


def loader_alone(bb, folder: Path, names: list[str], batch: int, workers: int) -> float:
    """Images/s of the input side alone: decode, transform, pinned copy to the device and
    normalization, no model. Bounds what the pipeline can reach."""
    from bench.features import ImageFiles, image_loader, normalize_uint8

    files = ImageFiles(folder, names, bb.eval_transform, image_size=bb.image_size)
    t = time.perf_counter()
    for images, _ in image_loader(files, batch, workers, bb.device):
        normalize_uint8(images.to(bb.device, non_blocking=True), *files.normalization)
    sync(bb.device)
    return len(names) / (time.perf_counter() - t)


class Report:
    """Collects rows and rewrites the JSON + Markdown after each one."""

    def __init__(self, name: str, info: dict, args, out_dir: str | None):
        self.name, self.info, self.args, self.out_dir = name, info, args, out_dir
        self.data = {"machine": info, "args": vars(args), "extraction": [], "coop": [],
                     "linear_probe": [], "errors": []}

    def markdown(self) -> str:
        a, d = self.args, self.data
        rows = [[r["model"], r["precision"], r["model_alone_img_s"], r["pipeline_img_s"],
                 f"{100 * r['ratio']:.0f}%", r.get("loader_alone_img_s", ""),
                 r.get("pipeline_float_img_s", ""),
                 r.get("max_abs_diff_uint8_vs_float", "")] for r in d["extraction"]]
        md = ["# GPU: extraction throughput, CoOp memory, linear probe", "",
              f"{self.info.get('gpu', a.device)}; {a.workers} DataLoader workers, batch "
              f"{a.batch_size}, {a.images} generated 224 px JPEGs (textures + noise), random-init "
              "weights; model alone: the mean over "
              f"{a.iters} batches after 3 warm-ups. Target: pipeline >= 80% of model alone.", "",
              table(["model", "precision", "model alone img/s", "pipeline img/s",
                     "pipeline / alone", "loader alone img/s",
                     "pipeline, float32 transfer img/s",
                     "max |uint8 - float32 transfer| features"], rows)]
        if d["coop"]:
            import coop_memory

            md += ["", f"## CoOp, {self.args.coop_backbone} text tower, 1,000 classes (target: within 16 GB)", "",
                   coop_memory.render_rows(d["coop"])]
        if d["linear_probe"]:
            md += ["", "## Linear probe C search on the GPU (harness solver)", "",
                   "Same synthetic features and search as benchmarks/linear_probe.py; "
                   "scikit-learn's time is the CPU measurement committed in linear_probe.md.", "",
                   table(["classes", "dim", "seconds", "fits", "C", "test acc"],
                         [[r["classes"], r["dim"], r["seconds"], r["fits"], f"{r['C']:.3g}",
                           f"{r['test_acc']:.2f}"] for r in d["linear_probe"]])]
        if d["errors"]:
            md += ["", "## Errors", ""] + [f"- {e}" for e in d["errors"]]
        md += ["", "## Machine", machine_md(self.info)]
        return "\n".join(md)

    def save(self) -> None:
        write_results(self.name, self.data, self.markdown(), self.out_dir)


def extraction(args, report: Report) -> None:
    import torch

    from bench.backbone import Backbone

    names = make_jpegs(Path(args.work) / "jpegs", args.images)
    folder = Path(args.work) / "jpegs"
    precisions = [("fp32", False, torch.float32), ("fp16", True, torch.float16),
                  ("bf16", True, torch.bfloat16)]
    float_for = set(args.float_transfer.split(","))
    for name in args.models.split(","):
        bb = Backbone(name, None, args.device)
        loader = loader_alone(bb, folder, names, args.batch_size, args.workers)
        print(f"{name}: loader alone {loader:.0f} img/s", flush=True)
        for label, amp, dtype in precisions:
            alone = model_alone(bb, args.batch_size, args.iters, amp, dtype)
            pipe, feats = pipeline(bb, folder, names, args.batch_size, args.workers, amp, dtype,
                                   uint8=True)
            r = {"model": name, "precision": label, "model_alone_img_s": alone,
                 "pipeline_img_s": pipe, "ratio": pipe / alone, "images": len(names),
                 "workers": args.workers, "batch_size": args.batch_size,
                 "loader_alone_img_s": loader}
            if label in float_for:
                pf, ffeats = pipeline(bb, folder, names, args.batch_size, args.workers, amp, dtype,
                                      uint8=False)
                r["pipeline_float_img_s"] = pf
                r["max_abs_diff_uint8_vs_float"] = float((feats - ffeats).abs().max())
            report.data["extraction"].append(r)
            report.save()
            print(r, flush=True)
        del bb
        if args.device == "cuda":
            torch.cuda.empty_cache()


def coop(args, report: Report) -> None:
    import coop_memory

    # float_mask: the default without the is_causal hint (open_clip's own block call), to
    # measure the causal attention kernels (flash on CUDA) against the float mask
    for precision, settings in (("auto", ["default", "float_mask", "memory_saving"]),
                                ("amp_bf16", ["default"])):
        report.data["coop"] += coop_memory.sweep(args.coop_backbone, [1000], settings, 3,
                                                 args.device, precision, 4, timeout=240)
        report.save()


def linear_probe(args, report: Report) -> None:
    import linear_probe as lp

    lp.run_search("torch", lp.make_features(3, 8, 4, 2, 2), 3, None, args.device)  # warm-up
    for classes in [int(c) for c in args.probe_classes.split(",")]:
        data = lp.make_features(classes, 1024, 16, 4, 20)
        r = lp.run_search("torch", data, classes, None, args.device)
        report.data["linear_probe"].append({"classes": classes, "dim": 1024, **r})
        report.save()
        print(report.data["linear_probe"][-1], flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=32768, help="JPEG files for the pipeline runs")
    ap.add_argument("--workers", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--models", default="RN50,ViT-B-16")
    ap.add_argument("--coop-backbone", default="RN50")
    ap.add_argument("--probe-classes", default="100,1000")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--work", default="/tmp/bench-gpu")
    ap.add_argument("--name", default="gpu", help="results file name (benchmarks/results/NAME.*)")
    ap.add_argument("--out", help="also copy the result files into this folder")
    ap.add_argument("--parts", default="extraction,coop,linear_probe")
    ap.add_argument("--float-transfer", default="fp16",
                    help="precisions that also run the float32-transfer comparison ('' for none)")
    args = ap.parse_args()

    import torch

    info = machine_info()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"{args.name}.json").write_text(json.dumps(
            {"cuda": False, "note": "no CUDA on this machine: GPU benchmarks not run",
             "machine": info}, indent=2) + "\n")
        print(f"gpu benchmark: no CUDA; wrote benchmarks/results/{args.name}.json saying so")
        return
    torch.backends.cudnn.benchmark = True
    report = Report(args.name, info, args, args.out)
    parts = {"extraction": extraction, "coop": coop, "linear_probe": linear_probe}
    for part in args.parts.split(","):
        t = time.perf_counter()
        try:
            parts[part](args, report)
        except Exception as exc:  # noqa: BLE001 - keep the other parts' numbers
            import traceback

            traceback.print_exc()
            report.data["errors"].append(f"{part}: {type(exc).__name__}: {exc}"[:500])
        report.data.setdefault("part_seconds", {})[part] = time.perf_counter() - t
        report.save()


if __name__ == "__main__":
    main()
