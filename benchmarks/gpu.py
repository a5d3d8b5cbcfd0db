"""GPU: feature-extraction throughput (model alone vs the whole pipeline from JPEG files on
disk) and CoOp on 1,000 classes (peak memory, step time). Runs only where CUDA is present; on a
machine without it, writes a JSON saying so and exits 0.

    .venv/bin/python benchmarks/gpu.py [--images 4096] [--workers 16]

Extraction: RN50 and ViT-B-16 (random init, 224 px) in fp32 and under fp16 / bf16 autocast.
"model alone": the same batches already on the GPU, encode_images in a loop. "pipeline":
bench.features.encode_files over generated 224 px JPEG files (DataLoader workers decode and
transform, pinned memory, non-blocking copy, inference_mode, autocast). Target: pipeline >= 80%
of model alone with 16 workers. CoOp: benchmarks/coop_memory.py on RN50's text tower, 1,000
classes, default and memory-saving settings. Target: within 16 GB.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from _common import RESULTS, machine_info, machine_md, make_dtd_like, table, write_results


def model_alone(bb, batch: int, iters: int, amp, dtype) -> float:
    import torch

    x = torch.randn(batch, 3, bb.image_size, bb.image_size, device=bb.device)
    for _ in range(3):
        bb.encode_images(x, autocast=amp, amp_dtype=dtype)
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(iters):
        bb.encode_images(x, autocast=amp, amp_dtype=dtype)
    torch.cuda.synchronize()
    return batch * iters / (time.perf_counter() - t)


def pipeline(bb, data_root: Path, batch: int, workers: int, amp, dtype) -> tuple[float, int]:
    import torch

    from bench.features import ImageFiles, encode_files
    from datasets_registry import DATASETS

    splits = DATASETS.get("dtd").load(data_root)
    rel = [p for p, _ in splits.train + splits.val + splits.test]
    files = ImageFiles(splits.image_dir, rel, bb.eval_transform, image_size=bb.image_size)
    orig = bb.encode_images
    bb.encode_images = lambda images, autocast=False: orig(images, autocast=amp, amp_dtype=dtype)
    try:
        encode_files(bb, ImageFiles(splits.image_dir, rel[:batch * 2], bb.eval_transform),
                     batch, workers, progress=False)  # warm-up
        torch.cuda.synchronize()
        t = time.perf_counter()
        encode_files(bb, files, batch, workers, progress=False)
        torch.cuda.synchronize()
        return len(rel) / (time.perf_counter() - t), len(rel)
    finally:
        bb.encode_images = orig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=4096, help="JPEG files for the pipeline run")
    ap.add_argument("--workers", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--models", default="RN50,ViT-B-16")
    ap.add_argument("--work", default="/tmp/bench-gpu")
    ap.add_argument("--no-coop", action="store_true")
    args = ap.parse_args()

    import torch

    info = machine_info()
    if not torch.cuda.is_available():
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "gpu.json").write_text(json.dumps(
            {"cuda": False, "note": "no CUDA on this machine: GPU benchmarks not run",
             "machine": info}, indent=2) + "\n")
        print("gpu benchmark: no CUDA; wrote benchmarks/results/gpu.json saying so")
        return
    torch.backends.cudnn.benchmark = True
    from bench.backbone import Backbone

    classes = 64
    per = max(args.images // classes, 3)
    data_root = make_dtd_like(Path(args.work) / "data", classes, per - 2, 1, 1, size=224)
    precisions = [("fp32", False, torch.float32), ("fp16", True, torch.float16),
                  ("bf16", True, torch.bfloat16)]
    rows, out = [], {"machine": info, "args": vars(args), "extraction": [], "coop": []}
    for name in args.models.split(","):
        bb = Backbone(name, None, "cuda")
        for label, amp, dtype in precisions:
            alone = model_alone(bb, args.batch_size, args.iters, amp, dtype)
            pipe, n = pipeline(bb, data_root, args.batch_size, args.workers, amp, dtype)
            r = {"model": name, "precision": label, "model_alone_img_s": alone,
                 "pipeline_img_s": pipe, "ratio": pipe / alone, "images": n,
                 "workers": args.workers, "batch_size": args.batch_size}
            out["extraction"].append(r)
            rows.append([name, label, alone, pipe, f"{100 * pipe / alone:.0f}%"])
            print(rows[-1], flush=True)
        del bb
        torch.cuda.empty_cache()
    md = ["# GPU: extraction throughput and CoOp memory", "",
          f"{info.get('gpu')}; {args.workers} DataLoader workers, batch {args.batch_size}, "
          f"{out['extraction'][0]['images'] if out['extraction'] else 0} generated 224 px JPEGs. "
          "Random-init weights. Target: pipeline >= 80% of model alone.", "",
          table(["model", "precision", "model alone img/s", "pipeline img/s", "pipeline / alone"],
                rows)]
    if not args.no_coop:
        sys.path.insert(0, str(Path(__file__).parent))
        import coop_memory

        out["coop"] = coop_memory.sweep("RN50", [1000], ["default", "memory_saving"], 3, "cuda",
                                        "auto", torch.get_num_threads())
        md += ["", "## CoOp, RN50 text tower, 1,000 classes (target: within 16 GB)", "",
               coop_memory.render_rows(out["coop"])]
    md += ["", "## Machine", machine_md(info)]
    write_results("gpu", out, "\n".join(md))


if __name__ == "__main__":
    main()
