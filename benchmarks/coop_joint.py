"""CoOp joint fits: K cells trained one by one vs together (one text-encoder pass per step for
all, methods.coop.train_together; ``bench run --joint-fits``).

K CoOp tasks of C classes (real ImageNet names, grid_data.py), each ``--steps`` steps of batch 32
on random image features (the frozen image encoder's output does not change the text side's
cost), the default CoOp config with the device's precision. Timed end to end (training; the
tasks' views are precomputed): the K fits one after another, then one joint fit of the K, in
turn ``--repeats`` times; the speed-up is the median of the pairwise ratios. Writes
benchmarks/results/coop_joint.{json,md} (``--name``).

    python benchmarks/coop_joint.py [--classes 10,100,397] [--members 3,5] [--device cuda]
                                    [--backbone RN50-quickgelu]
    python benchmarks/coop_joint.py --passes-only   # the paper grid's passes, counted
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

from _common import machine_info, machine_md, table, write_results


def _tasks(backbone, classes: int, members: int, steps: int, device, precision: str):
    import torch

    from bench.config import MethodSpec, resolve_method_config
    from bench.views import CachedViews
    from grid_data import class_names
    from methods.base import FeatureSplit, Task

    _, cfg = resolve_method_config(MethodSpec("coop"), "bench", 16)
    cfg = {**cfg, "epochs": 1, "warmup_epochs": 0, "precision": precision}
    proj = backbone.model.text_projection
    dim = proj.out_features if isinstance(proj, torch.nn.Module) else proj.shape[1]
    names = class_names(classes)
    tasks = []
    for seed in range(1, members + 1):
        g = torch.Generator().manual_seed(seed)
        n = 32 * steps
        feats = torch.randn(n, dim, generator=g).to(device)
        labels = torch.randint(classes, (n,), generator=g).to(device)
        tasks.append(Task(dataset="bench", classnames=names, templates=["a photo of a {}."],
                          shots=16, seed=seed, config=cfg, device=device,
                          train=FeatureSplit(feats, labels),
                          val=FeatureSplit(feats[:0], labels[:0]),
                          train_views=CachedViews(feats[None], seed), backbone=backbone))
    return tasks


def measure(backbone, classes: int, members: int, steps: int, device, precision: str,
            repeats: int) -> dict:
    import torch

    from methods.coop import fit, fit_together

    tasks = _tasks(backbone, classes, members, steps, device, precision)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    runs = {"one_by_one": lambda: [fit(t) for t in tasks],
            "joint": lambda: fit_together(tasks)}
    for fn in runs.values():  # warm-up: first-use imports, allocator, kernels
        fn()
    walls: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            sync()
            t = time.perf_counter()
            fn()
            sync()
            walls[name].append(time.perf_counter() - t)
    med = statistics.median
    return {"classes": classes, "members": members, "steps": steps,
            "one_by_one_s": med(walls["one_by_one"]), "joint_s": med(walls["joint"]),
            "one_by_one_step_s": med(walls["one_by_one"]) / (members * steps),
            "joint_step_s": med(walls["joint"]) / steps,
            "speedup": med(a / b for a, b in zip(walls["one_by_one"], walls["joint"])),
            "walls": {k: [round(t, 4) for t in v] for k, v in walls.items()}}


def grid_passes(limit: int = 1024) -> list[list]:
    """Per dataset of the paper grid (real class counts, CoOp's resolved configs, shots 1-16,
    one seed): text-encoder passes one by one and joined as the runner groups them
    (bench.joint.fit_units with ``limit`` prompts a pass)."""
    from bench.config import MethodSpec, resolve_method_config
    from bench.joint import fit_units
    from grid_data import GRID
    from methods._training import OptimConfig, total_steps

    rows = []
    for d in GRID:
        cells, steps = [], []
        for k in (1, 2, 4, 8, 16):
            _, cfg = resolve_method_config(MethodSpec("coop"), d.name, k)
            opt = OptimConfig.from_config(cfg)
            cells.append({"dataset": d.name, "method": "coop", "seed": 1, "shots": k,
                          "config": cfg})
            steps.append(total_steps(k * d.classes, opt))
        of = {id(c): s for c, s in zip(cells, steps)}
        units = fit_units(cells, limit, d.classes)
        rows.append([d.name, d.classes, sum(steps), sum(max(of[id(c)] for c in u) for u in units),
                     " ".join("+".join(str(c["shots"]) for c in u) for u in units)])
    rows.append(["all", "", sum(r[2] for r in rows), sum(r[3] for r in rows), ""])
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbone", default="bench-bench-vit64",
                   help="an open_clip model name, random weights (RN50-quickgelu on a GPU)")
    p.add_argument("--classes", default="10,100,397")
    p.add_argument("--members", default="3,5", help="cells per joint fit (comma list)")
    p.add_argument("--steps", type=int, default=10, help="training steps of each cell")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="auto",
                   help="CoOp's precision (auto: fp16 on CUDA, fp32 on a CPU)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1, as bench run fits: --fit-threads)")
    p.add_argument("--name", default="coop_joint")
    p.add_argument("--out", default=None, help="also write the results into this folder")
    p.add_argument("--passes-only", action="store_true",
                   help="print the paper grid's CoOp text-encoder passes per seed, one by one "
                        "and joined (no timing), and exit")
    args = p.parse_args()
    if args.passes_only:
        print(table(["dataset", "classes", "passes one by one", "passes joined",
                     "groups (shots)"], grid_passes()))
        return
    import torch

    from bench.backbone import Backbone

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    backbone = Backbone(args.backbone, None, device)
    rows = []
    for classes, members in itertools.product([int(c) for c in args.classes.split(",")],
                                              [int(k) for k in args.members.split(",")]):
        rows.append(measure(backbone, classes, members, args.steps, device, args.precision,
                            args.repeats))
        r = rows[-1]
        print(f"{classes} classes x {members} cells: one by one {r['one_by_one_s']:.3f} s, "
              f"joint {r['joint_s']:.3f} s, {r['speedup']:.2f}x", flush=True)
    info = machine_info()
    md = ["# CoOp joint fits: one by one vs one text-encoder pass for several cells", "",
          f"`python benchmarks/coop_joint.py --backbone {args.backbone} --device {args.device} "
          f"--steps {args.steps} --repeats {args.repeats} --threads {args.threads}` (random "
          f"weights; precision {args.precision}). Each row: K CoOp cells of C classes (ImageNet "
          f"names), {args.steps} steps each, fitted one after another and then jointly, in turn "
          f"{args.repeats} times; medians, the speed-up the median of the pairwise ratios.", "",
          table(["classes", "cells", "one by one s", "joint s", "s per step, one by one",
                 "s per joint step", "speed-up"],
                [[r["classes"], r["members"], round(r["one_by_one_s"], 3),
                  round(r["joint_s"], 3), round(r["one_by_one_step_s"], 5),
                  round(r["joint_step_s"], 5), f"{r['speedup']:.2f}x"] for r in rows]),
          "", "## Machine", machine_md(info)]
    write_results(args.name, {"machine": info, "args": vars(args), "rows": rows}, "\n".join(md),
                  out=args.out)


if __name__ == "__main__":
    main()
