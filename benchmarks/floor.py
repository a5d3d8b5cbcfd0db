"""Floor benchmark: how close a harness sweep comes to the irreducible encoding work, and how
much faster it is than the original code's loop (re-encode every image every epoch, and the
test set for every run).

    .venv/bin/python benchmarks/floor.py            # defaults: see --help; a few minutes on 2 cores

On a generated dataset (JPEG files at 224 px on disk, registered as ``dtd`` in CoOp's layout) and
one small backbone (random init), it measures, each in a fresh feature cache:

* floor: the harness's own extraction code (bench.features.DatasetFeatures) encoding the test
  set once and the union of all cells' few-shot train images once per augmented view;
* sweep: bench.runner.run_job on all methods but CoOp (shots x seeds), from an empty cache, so
  it includes its extraction; ratio sweep / floor;
* CoOp: its cells run separately on the warm cache;
* reference: CLIP-Adapter (visual) cells the way the original code runs them (written here: a
  DataLoader over the few-shot images with fresh augmentation each epoch, the image encoder on
  every batch of every epoch, the adapter step, then the whole test set re-encoded per run),
  against the harness running the same cells from an empty cache.

The reference loop runs ``--reference-epochs`` epochs of every cell (median epoch time) plus the
test encoding of every cell; the full cell time is projected as test + epochs x epoch time. One
cell (the first shot count, first seed) is also run in full to check the projection.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from _common import generated_setup, machine_md, median, table, write_results

ADAPTER = "clip_adapter_visual"


def build_cells(backbone, methods, shots, seeds):
    from bench.config import MethodSpec
    from bench.planner import expand_cells

    return expand_cells([(backbone, None)], ["dtd"], [MethodSpec(m) for m in methods],
                        shots, seeds)


def make_job(cells, data_root, out, cache, opts):
    from bench.planner import plan

    jobs = plan(cells, data_root=str(data_root), output=str(out), cache_dir=str(cache),
                device="cpu", options=opts)
    assert len(jobs) == 1
    return jobs[0]


def run_sweep(cells, data_root, work: Path, tag: str, opts) -> dict:
    from bench.runner import run_job

    out, cache = work / f"out-{tag}", work / f"cache-{tag}"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)
    job = make_job(cells, data_root, out, cache, opts)
    t = time.perf_counter()
    counts = run_job(job)
    secs = time.perf_counter() - t
    recs = [json.loads(p.read_text()) for p in out.rglob("*.json")
            if p.parent.name != "splits" and "fewshot" in p.read_text()]
    per_method: dict = {}
    for r in recs:
        m = per_method.setdefault(r["method"], {"cells": 0, "fit_s": 0.0, "eval_s": 0.0, "acc": []})
        m["cells"] += 1
        m["fit_s"] += r["timings"].get("fit_s", 0.0)
        m["eval_s"] += r["timings"].get("eval_s", 0.0)
        if r.get("metrics"):
            m["acc"].append(r["metrics"].get("accuracy", r["metrics"].get("top1")))
    setup = median([r["timings"].get("job_setup_s", 0.0) for r in recs])
    return {"seconds": secs, "counts": counts, "job_setup_s": setup, "per_method": per_method,
            "output": str(out), "cache": str(cache)}


def floor_time(cells, data_root, work: Path, backbone, opts) -> dict:
    """The harness's extraction of exactly what the cells need, in a fresh cache."""
    from bench.features import DatasetFeatures, FeatureCache
    from datasets_registry import DATASETS
    from datasets_registry.fewshot import sample_fewshot

    cache = work / "cache-floor"
    shutil.rmtree(cache, ignore_errors=True)
    splits = DATASETS.get("dtd").load(Path(data_root))
    feats = DatasetFeatures(backbone, splits, FeatureCache(cache, opts["cache_dtype"]),
                            batch_size=opts["batch_size"], workers=opts["workers"],
                            progress=False)
    pos = {s: {tuple(it): i for i, it in enumerate(splits.split(s))} for s in ("train", "val")}
    subsets = {(c["shots"], c["seed"]) for c in cells}
    subs = [sample_fewshot(splits.train, splits.val, k, s) for k, s in sorted(subsets)]
    train_union = sorted({pos["train"][tuple(it)] for sub in subs for it in sub.train})
    val_union = sorted({pos["val"][tuple(it)] for sub in subs for it in sub.val})
    # The protocol's views (bench.views): each (seed, image, epoch) crop once, for the most
    # epochs any cell of that seed trains the image.
    from bench.views import epoch_salt

    needs: dict = {}
    for c, sub in ((c, sample_fewshot(splits.train, splits.val, c["shots"], c["seed"]))
                   for c in cells if c["config"].get("feature_mode") == "online"):
        seed_needs = needs.setdefault(c["seed"], {})
        for it in sub.train:
            p = pos["train"][tuple(it)]
            seed_needs[p] = max(seed_needs.get(p, 0), int(c["config"]["epochs"]))
    n_crops = sum(sum(n.values()) for n in needs.values())
    out = {"n_test": len(splits.test), "n_train_union": len(train_union),
           "n_val_union": len(val_union), "n_view_crops": n_crops}
    t = time.perf_counter()
    feats.eval_features("test", list(range(len(splits.test))))
    out["test_s"] = time.perf_counter() - t
    t = time.perf_counter()
    for seed, seed_needs in needs.items():
        groups: dict = {}
        for p, n in seed_needs.items():
            groups.setdefault(n, []).append(p)
        for n, group in groups.items():
            feats.augmented(sorted(group), range(n), "protocol", epoch_salt("protocol", seed),
                            cache=False)
    out["train_views_s"] = time.perf_counter() - t
    t = time.perf_counter()
    feats.eval_features("train", train_union)
    feats.eval_features("val", val_union)
    out["train_val_eval_s"] = time.perf_counter() - t
    out["floor_s"] = out["test_s"] + out["train_views_s"]
    out["all_extraction_s"] = out["floor_s"] + out["train_val_eval_s"]
    return out


def reference_cells(cells, data_root, backbone, opts, epochs_measured: int,
                    full_cell: tuple | None) -> dict:
    """CLIP-Adapter (visual) the original way: encoder in the loop, test re-encoded per run."""
    import torch
    import torch.nn.functional as F

    from bench.features import ImageFiles
    from datasets_registry import DATASETS
    from datasets_registry.fewshot import sample_fewshot
    from methods._training import OptimConfig, lr_at
    from methods.clip_adapter import AdapterClassifier

    ds = DATASETS.get("dtd")
    splits = ds.load(Path(data_root))
    weights = backbone.class_weights(splits.prompt_classnames, ds.templates)
    loader_kw = dict(num_workers=opts["workers"], pin_memory=False)

    def encode_test():
        # float tensors from the loader, as torchvision transforms give them (the original way)
        files = ImageFiles(splits.image_dir, [p for p, _ in splits.test], backbone.eval_transform,
                           image_size=backbone.image_size, uint8=False)
        loader = torch.utils.data.DataLoader(files, batch_size=opts["batch_size"], **loader_kw)
        return torch.cat([backbone.encode_images(x) for x, _ in loader])

    def run_cell(cell, n_epochs):
        cfg = cell["config"]
        opt = OptimConfig.from_config(cfg)
        sub = sample_fewshot(splits.train, splits.val, cell["shots"], cell["seed"])
        torch.manual_seed(cell["seed"])
        head = AdapterClassifier(weights, alpha=float(cfg["alpha"]), beta=None,
                                 reduction=int(cfg["reduction"]),
                                 final_relu=bool(cfg["final_relu"]),
                                 logit_scale=backbone.logit_scale).train()
        sgd = torch.optim.SGD(head.parameters(), lr=opt.lr, momentum=opt.momentum,
                              weight_decay=opt.weight_decay)
        labels = torch.tensor([l for _, l in sub.train])
        epoch_s = []
        for epoch in range(n_epochs):
            t = time.perf_counter()
            for g in sgd.param_groups:
                g["lr"] = lr_at(epoch, opt)
            # fresh augmentation each epoch (view index = epoch), batches shuffled, as Dassl does
            files = ImageFiles(splits.image_dir, [p for p, _ in sub.train],
                               backbone.train_transform(), views=[epoch], salt=cell["seed"],
                               image_size=backbone.image_size, uint8=False)
            idx = torch.randperm(len(files))
            sampler = idx.tolist()
            loader = torch.utils.data.DataLoader(
                files, batch_size=opt.batch_size, sampler=sampler,
                drop_last=len(files) >= opt.batch_size, **loader_kw)
            offset = 0
            for x, _ in loader:
                x = x[:, 0]  # one view per image: (B, 1, 3, H, W) -> (B, 3, H, W)
                y = labels[idx[offset:offset + len(x)]]
                offset += len(x)
                feats = backbone.encode_images(x).clone()  # encoder on every batch of every epoch
                sgd.zero_grad(set_to_none=True)
                loss = F.cross_entropy(head(feats), y)
                loss.backward()
                sgd.step()
            epoch_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        test = encode_test()  # the whole test set re-encoded for this run
        with torch.no_grad():
            head.eval()(test)
        test_s = time.perf_counter() - t
        return {"epochs_total": opt.epochs, "epochs_run": n_epochs, "epoch_s": epoch_s,
                "test_s": test_s, "n_train": len(files),
                "projected_s": test_s + opt.epochs * median(epoch_s),
                "measured_s": sum(epoch_s) + test_s}

    out = {"cells": []}
    for cell in cells:
        r = run_cell(cell, min(epochs_measured, OptimConfig.from_config(cell["config"]).epochs))
        out["cells"].append({"shots": cell["shots"], "seed": cell["seed"], **r})
        print(f"  reference k={cell['shots']} seed={cell['seed']}: epoch {median(r['epoch_s']):.2f} s"
              f" x {r['epochs_total']} + test {r['test_s']:.2f} s -> {r['projected_s']:.1f} s",
              flush=True)
    out["projected_total_s"] = sum(c["projected_s"] for c in out["cells"])
    if full_cell:
        cell = next(c for c in cells if (c["shots"], c["seed"]) == full_cell)
        epochs = OptimConfig.from_config(cell["config"]).epochs
        full = run_cell(cell, epochs)
        proj = next(c for c in out["cells"] if (c["shots"], c["seed"]) == full_cell)["projected_s"]
        out["check"] = {"shots": full_cell[0], "seed": full_cell[1], "epochs": epochs,
                        "measured_s": full["measured_s"], "projected_s": proj}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--train", type=int, default=100, help="train images per class")
    ap.add_argument("--val", type=int, default=20)
    ap.add_argument("--test", type=int, default=50)
    ap.add_argument("--size", type=int, default=224, help="JPEG size on disk")
    ap.add_argument("--backbone", default="bench-bench-vit64")
    ap.add_argument("--shots", default="1,2,4,8,16")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--repeats", type=int, default=3, help="floor and sweep runs (median)")
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers for decoding")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1 is fastest on a shared 2-core machine)")
    ap.add_argument("--reference-epochs", type=int, default=3)
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--no-coop", action="store_true")
    ap.add_argument("--work", default="/tmp/bench-floor", help="data, caches and outputs")
    args = ap.parse_args()

    info, work, data_root, shots, seeds, opts = generated_setup(args)
    from bench.backbone import Backbone
    from methods import METHODS

    methods = [m for m in METHODS.names() if m != "coop"]
    cells = build_cells(args.backbone, methods, shots, seeds)
    backbone = Backbone(args.backbone, None, "cpu")
    # warm-up (imports, first-call costs) on a throw-away run: not timed
    run_sweep(build_cells(args.backbone, methods, [1], [seeds[0]]), data_root, work, "warm", opts)

    floors, sweeps = [], []
    for i in range(args.repeats):
        floors.append(floor_time(cells, data_root, work, backbone, opts))
        print(f"floor run {i + 1}: {floors[-1]['floor_s']:.1f} s", flush=True)
        sweeps.append(run_sweep(cells, data_root, work, "sweep", opts))
        print(f"sweep run {i + 1}: {sweeps[-1]['seconds']:.1f} s", flush=True)
    floor_s = median([f["floor_s"] for f in floors])
    extraction_s = median([f["all_extraction_s"] for f in floors])
    sweep_s = median([s["seconds"] for s in sweeps])
    res = {"machine": info, "args": vars(args), "dataset": {
        "classes": args.classes, "train_per_class": args.train, "val_per_class": args.val,
        "test_per_class": args.test, "jpeg_px": args.size}, "backbone": args.backbone,
        "backbone_input_px": backbone.image_size, "methods": methods,
        "floor_runs": floors, "sweep_runs": sweeps, "floor_s": floor_s,
        "extraction_s": extraction_s, "sweep_s": sweep_s, "ratio_sweep_floor": sweep_s / floor_s,
        "ratio_sweep_extraction": sweep_s / extraction_s}
    if not args.no_coop:
        coop_cells = build_cells(args.backbone, ["coop"], shots, seeds)
        # CoOp on the sweep's (warm) cache: its extraction is already done
        from bench.runner import run_job

        out = work / "out-coop"
        shutil.rmtree(out, ignore_errors=True)
        job = make_job(coop_cells, data_root, out, Path(sweeps[-1]["cache"]), opts)
        t = time.perf_counter()
        run_job(job)
        res["coop_s"] = time.perf_counter() - t
        print(f"coop cells: {res['coop_s']:.1f} s", flush=True)
    if not args.no_reference:
        ad_cells = build_cells(args.backbone, [ADAPTER], shots, seeds)
        harness = [run_sweep(ad_cells, data_root, work, "adapter", opts)
                   for _ in range(args.repeats)]
        ref = reference_cells(ad_cells, data_root, backbone, opts, args.reference_epochs,
                              (shots[0], seeds[0]))
        h = median([r["seconds"] for r in harness])
        res["reference"] = {**ref, "harness_runs_s": [r["seconds"] for r in harness],
                            "harness_s": h, "speedup": ref["projected_total_s"] / h}
    write_results("floor", res, render(res))


def render(res) -> str:
    d, a = res["dataset"], res["args"]
    f0 = res["floor_runs"][0]
    lines = [
        "# Floor: sweep time against the irreducible encoding work", "",
        f"Dataset: generated, {d['classes']} classes, {d['train_per_class']} train / "
        f"{d['val_per_class']} val / {d['test_per_class']} test images per class, JPEG "
        f"{d['jpeg_px']} px on disk. Backbone `{res['backbone']}` (random init, "
        f"{res['backbone_input_px']} px input), CPU, {a['threads']} torch thread(s), "
        f"{a['workers']} DataLoader workers. Shots {a['shots']}, seeds {a['seeds']}. Timings are "
        f"in-process wall clock; medians of {a['repeats']} runs; the machine is shared, so "
        f"expect noise.", "",
        f"Floor = encode the test set once ({f0['n_test']} images) + the union of few-shot train "
        f"images, each for every epoch a cell of its seed trains it ({f0['n_view_crops']} crops). The harness's "
        f"full extraction also encodes that union and the val union ({f0['n_val_union']}) with "
        f"the eval transform.", "",
        table(["what", "seconds (median)", "runs"], [
            ["floor (test + train views)", res["floor_s"],
             ", ".join(f"{r['floor_s']:.1f}" for r in res["floor_runs"])],
            ["all extraction (floor + train/val eval)", res["extraction_s"],
             ", ".join(f"{r['all_extraction_s']:.1f}" for r in res["floor_runs"])],
            [f"sweep, all methods but CoOp ({', '.join(res['methods'])}), from an empty cache",
             res["sweep_s"], ", ".join(f"{r['seconds']:.1f}" for r in res["sweep_runs"])],
            ["**sweep / floor** (target <= 1.5)", res["ratio_sweep_floor"], ""],
            ["sweep / all extraction", res["ratio_sweep_extraction"], ""],
            ["sweep / floor, run by run (floor and sweep alternate)", "",
             ", ".join(f"{s['seconds'] / f['floor_s']:.2f}"
                       for f, s in zip(res["floor_runs"], res["sweep_runs"]))],
        ] + ([["CoOp cells (warm cache, separately)", res["coop_s"], ""]] if "coop_s" in res else [])),
        "", "Per-method fit and evaluation time in the last sweep run (seconds, summed over cells):",
        "", table(["method", "cells", "fit s", "eval s"],
                  [[m, v["cells"], v["fit_s"], v["eval_s"]]
                   for m, v in res["sweep_runs"][-1]["per_method"].items()]),
    ]
    if "reference" in res:
        r = res["reference"]
        chk = r.get("check", {})
        lines += ["", "## Reference loop (original code's way) vs harness, CLIP-Adapter visual cells",
                  "", f"Reference: image encoder on every batch of every epoch, test set re-encoded "
                  f"per run; per cell {a['reference_epochs']} epochs measured, full cell projected as "
                  f"test + epochs x median epoch. Harness: run_job on the same cells from an empty "
                  f"cache (extraction included).", "",
                  table(["what", "seconds"], [
                      ["reference, projected total", r["projected_total_s"]],
                      ["harness (median)", r["harness_s"]],
                      ["**speed-up** (target >= 20x)", r["speedup"]],
                      [f"projection check, k={chk.get('shots')} seed={chk.get('seed')} run in full "
                       f"({chk.get('epochs')} epochs): measured / projected",
                       f"{chk.get('measured_s', 0):.1f} / {chk.get('projected_s', 0):.1f}"]]),
                  "", table(["shots", "seed", "train images", "epochs", "epoch s", "test s",
                             "projected s"],
                            [[c["shots"], c["seed"], c["n_train"], c["epochs_total"],
                              median(c["epoch_s"]), c["test_s"], c["projected_s"]]
                             for c in r["cells"]])]
    lines += ["", "## Machine", machine_md(res["machine"])]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
