"""Protocol views benchmark: the default (a fresh crop of every train image every epoch, one
shared store per seed) against the original code's loop and against the cached approximation.

    .venv/bin/python benchmarks/views.py             # defaults: see --help

On a generated dataset (JPEGs at 224 px on disk in DTD's CoOp layout) and one small backbone
(random init), for CoOp + CLIP-Adapter visual/text/both at the given shots x seeds, in one run:

* default: ``bench.runner.run_job`` on all those cells from an empty cache (the protocol: each
  (seed, image, epoch) crop encoded once and read by the four methods and every shot count);
* cached: the same cells with ``feature_mode: cached`` (10 views per image and seed: the opt-in
  approximation), from an empty cache;
* reference: the original way, written here: per cell, the test set re-encoded, and every epoch a
  DataLoader over the cell's own train images (fresh RandomResizedCrop + flip from the global RNG,
  float tensors, batch 32, shuffled: Dassl's loader) whose batches go through the image encoder
  and the method's step. Each cell runs ``--reference-epochs`` epochs (the method's real fit
  with that many epochs); its time is projected as test + epochs x (measured per-epoch time).
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from _common import generated_setup, machine_md, median, table, write_results

METHODS = ["coop", "clip_adapter_visual", "clip_adapter_text", "clip_adapter_both"]


def build_cells(backbone, shots, seeds, overrides=None):
    from bench.config import MethodSpec
    from bench.planner import expand_cells

    return expand_cells([(backbone, None)], ["dtd"], [MethodSpec(m) for m in METHODS], shots,
                        seeds, overrides)


def run_harness(cells, data_root, work: Path, tag: str, opts) -> dict:
    from bench.planner import plan
    from bench.runner import run_job

    out, cache = work / f"out-{tag}", work / f"cache-{tag}"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)
    jobs = plan(cells, data_root=str(data_root), output=str(out), cache_dir=str(cache),
                device="cpu", options=opts)
    t = time.perf_counter()
    counts = run_job(jobs[0])
    return {"seconds": time.perf_counter() - t, "encode_s": counts["encode_s"],
            "view_encodes": counts["view_encodes"], "done": counts["done"],
            "failed": counts["failed"]}


class DasslLoaderViews:
    """The original per-epoch data path: a new DataLoader each epoch over the cell's images."""

    mode = "online"
    n_views = 0

    def __init__(self, backbone, image_dir, relpaths, batch_size, workers):
        import torch

        from bench.features import ImageFiles

        self.backbone = backbone
        self.files = ImageFiles(image_dir, relpaths, backbone.train_transform(), uint8=False,
                                image_size=backbone.image_size)
        self.batch_size, self.workers = batch_size, workers
        self.torch = torch
        self.encoded = 0

    def for_epoch(self, epoch):
        loader = self.torch.utils.data.DataLoader(self.files, batch_size=self.batch_size,
                                                  num_workers=self.workers)
        feats = self.torch.cat([self.backbone.encode_images(x) for x, _ in loader])
        self.encoded += len(feats)
        return feats

    def describe(self):
        return {"mode": "online"}


def reference(cells, data_root, backbone, opts, epochs_measured: int) -> dict:
    import torch

    from bench.features import ImageFiles
    from datasets_registry import DATASETS
    from datasets_registry.fewshot import sample_fewshot, seed_everything
    from methods import METHODS as REGISTRY
    from methods.base import FeatureSplit, Task

    ds = DATASETS.get("dtd")
    splits = ds.load(Path(data_root))

    def encode_test():
        files = ImageFiles(splits.image_dir, [p for p, _ in splits.test], backbone.eval_transform,
                           image_size=backbone.image_size, uint8=False)
        loader = torch.utils.data.DataLoader(files, batch_size=opts["batch_size"],
                                             num_workers=opts["workers"])
        return torch.cat([backbone.encode_images(x) for x, _ in loader])

    test_times, rows = [], []
    for cell in cells:
        t = time.perf_counter()
        encode_test()
        test_times.append(time.perf_counter() - t)
        sub = sample_fewshot(splits.train, splits.val, cell["shots"], cell["seed"])
        views = DasslLoaderViews(backbone, splits.image_dir, [p for p, _ in sub.train], 32,
                                 opts["workers"])
        labels = torch.tensor([lbl for _, lbl in sub.train])
        empty = FeatureSplit(torch.empty(0, 1), torch.empty(0, dtype=torch.long))
        cfg = {**cell["config"], "epochs": epochs_measured}
        task = Task(dataset="dtd", classnames=splits.prompt_classnames, templates=ds.templates,
                    shots=cell["shots"], seed=cell["seed"], config=cfg,
                    device=torch.device("cpu"), train=FeatureSplit(torch.empty(0, 1), labels),
                    val=empty, train_views=views, backbone=backbone)
        seed_everything(cell["seed"])
        t = time.perf_counter()
        REGISTRY.get(cell["method"])(task)
        epoch_s = (time.perf_counter() - t) / epochs_measured
        epochs = cell["config"]["epochs"]
        rows.append({"method": cell["method"], "shots": cell["shots"], "seed": cell["seed"],
                     "images": len(sub.train), "epochs": epochs, "epoch_s": epoch_s,
                     "encodes": len(sub.train) * epochs + len(splits.test)})
    test_s = median(test_times)
    for r in rows:
        r["projected_s"] = test_s + r["epochs"] * r["epoch_s"]
    return {"test_s": test_s, "rows": rows, "total_s": sum(r["projected_s"] for r in rows),
            "encodes": sum(r["encodes"] for r in rows)}


def render(res) -> str:
    a = res["args"]
    d, c, ref = res["default"], res["cached"], res["reference"]
    lines = [
        "# Protocol views: the default against the original loop and the cached approximation",
        "",
        f"Dataset: generated, {a['classes']} classes, {a['train']} train / {a['val']} val / "
        f"{a['test']} test images per class, JPEG {a['size']} px on disk. Backbone "
        f"`{a['backbone']}` (random init), CPU, {a['threads']} torch thread(s), {a['workers']} "
        f"DataLoader workers. Methods: {', '.join(METHODS)}; shots {a['shots']}, seeds "
        f"{a['seeds']} ({res['n_cells']} cells), each method's own epoch counts. One run; the "
        f"three measurements follow each other in one process.",
        "",
        table(["what", "seconds", "image encodes", "ratio to default"], [
            ["reference (original loop), projected", ref["total_s"], ref["encodes"],
             ref["total_s"] / d["seconds"]],
            ["**default** (protocol, shared per-epoch store), from an empty cache", d["seconds"],
             d["view_encodes"], 1.0],
            ["cached approximation (10 views per image and seed), from an empty cache",
             c["seconds"], "", c["seconds"] / d["seconds"]],
        ]),
        "",
        f"**Speed-up of the default over the reference loop: {ref['total_s'] / d['seconds']:.2f}x** "
        f"(target >= 5x); the cached approximation is "
        f"{ref['total_s'] / c['seconds']:.2f}x faster than the reference. The default spent "
        f"{d['encode_s']:.1f} s of its {d['seconds']:.1f} s encoding images "
        f"({100 * d['encode_s'] / d['seconds']:.0f}%). Reference: the test set "
        f"({a['test'] * a['classes']} images) takes {ref['test_s']:.2f} s per cell, "
        f"re-encoded for each of the {res['n_cells']} cells.",
        "",
        "Reference, per cell (projected = test + epochs x epoch):",
        "",
        table(["method", "shots", "seed", "train images", "epochs", "epoch s", "projected s"],
              [[r["method"], r["shots"], r["seed"], r["images"], r["epochs"], r["epoch_s"],
                r["projected_s"]] for r in ref["rows"]]),
        "",
        "## Machine",
        "",
        machine_md(res["machine"]),
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--train", type=int, default=40, help="train images per class")
    ap.add_argument("--val", type=int, default=10)
    ap.add_argument("--test", type=int, default=30)
    ap.add_argument("--size", type=int, default=224, help="JPEG size on disk")
    ap.add_argument("--backbone", default="bench-bench-vit64")
    ap.add_argument("--shots", default="1,2,4")
    ap.add_argument("--seeds", default="1,2")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reference-epochs", type=int, default=3)
    ap.add_argument("--work", default="/tmp/bench-views")
    args = ap.parse_args()

    from bench.backbone import Backbone

    info, work, data_root, shots, seeds, opts = generated_setup(args)
    cells = build_cells(args.backbone, shots, seeds)
    res = {"args": vars(args), "machine": info, "n_cells": len(cells)}
    res["default"] = run_harness(cells, data_root, work, "default", opts)
    print(f"default: {res['default']['seconds']:.1f} s", flush=True)
    cached = build_cells(args.backbone, shots, seeds,
                         {m: {"feature_mode": "cached"} for m in METHODS})
    res["cached"] = run_harness(cached, data_root, work, "cached", opts)
    print(f"cached: {res['cached']['seconds']:.1f} s", flush=True)
    backbone = Backbone(args.backbone, None, "cpu")
    res["reference"] = reference(cells, data_root, backbone, opts, args.reference_epochs)
    print(f"reference (projected): {res['reference']['total_s']:.1f} s", flush=True)
    jpath, mpath = write_results("views", res, render(res))
    print(f"wrote {jpath} and {mpath}")


if __name__ == "__main__":
    main()
