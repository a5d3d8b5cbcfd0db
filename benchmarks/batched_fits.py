"""CLIP-Adapter's ratio search: K candidates trained one by one vs side by side (StackedHeads).

Real shapes (RN50's 1024-d features, the paper's batch 32, C classes x K shots), random
features standing in for the frozen encoder's; each search is timed end to end (training only:
the views are precomputed tensors). Writes benchmarks/results/batched_fits.{json,md}.

    python benchmarks/batched_fits.py [--epochs 20] [--device cpu|cuda] [--repeats 3]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

from _common import RESULTS, machine_info, machine_md, write_results  # noqa: F401


def _task(n_classes: int, shots: int, dim: int, device, cfg: dict):
    import torch

    from bench.views import CachedViews
    from methods.base import FeatureSplit, Task

    g = torch.Generator().manual_seed(0)
    y = torch.arange(n_classes).repeat_interleave(shots)
    x = torch.randn(len(y), dim, generator=g)
    views = torch.stack([x + 0.1 * torch.randn(x.shape, generator=g) for _ in range(2)])

    class _Backbone:
        logit_scale = 100.0

    return Task(dataset="bench", classnames=[f"c{i}" for i in range(n_classes)], templates=[],
                shots=shots, seed=1, config=cfg, device=torch.device(device),
                train=FeatureSplit(x.to(device), y.to(device)),
                val=FeatureSplit(x[:n_classes].to(device), y[:n_classes].to(device)),
                train_views=CachedViews(views.to(device), 1), backbone=_Backbone())


def measure(method: str, n_classes: int, shots: int, epochs: int, device: str, repeats: int):
    import torch

    from bench.config import MethodSpec, resolve_method_config
    from methods.clip_adapter import _fit_candidates, _fit_one, _ratio_candidates

    _, cfg = resolve_method_config(MethodSpec(method, "search"), "imagenet", shots,
                                   {"epochs": epochs})
    task = _task(n_classes, shots, 1024, device, cfg)
    grid = cfg["ratio_grid"]
    alphas = _ratio_candidates(cfg["alpha"], grid, "alpha") if "alpha" in cfg else [None]
    betas = _ratio_candidates(cfg["beta"], grid, "beta") if "beta" in cfg else [None]
    candidates = list(itertools.product(alphas, betas))
    weights = torch.nn.functional.normalize(torch.randn(n_classes, 1024), dim=-1).to(device)

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def one_by_one():
        for a, b in candidates:
            _fit_one(task, cfg, weights, a, b, 100.0)

    def side_by_side():
        _fit_candidates(task, cfg, weights, candidates, 100.0)

    one_by_one(), side_by_side()  # warm-up: first-use imports, allocator, kernels
    # A and B in turn, the ratio taken pair by pair (the shared machine's speed drifts); wall
    # and process CPU seconds (the latter less sensitive to other processes' load).
    walls = {"one_by_one": [], "side_by_side": []}
    cpus = {"one_by_one": [], "side_by_side": []}
    for _ in range(repeats):
        for name, fn in (("one_by_one", one_by_one), ("side_by_side", side_by_side)):
            sync()
            t, c = time.perf_counter(), time.process_time()
            fn()
            sync()
            walls[name].append(time.perf_counter() - t)
            cpus[name].append(time.process_time() - c)
    med = statistics.median
    out = {f"{k}_s": med(v) for k, v in walls.items()}
    out.update({f"{k}_cpu_s": med(v) for k, v in cpus.items()})
    out["speedup"] = med(a / b for a, b in zip(walls["one_by_one"], walls["side_by_side"]))
    out["speedup_cpu"] = med(a / b for a, b in zip(cpus["one_by_one"], cpus["side_by_side"]))
    out["walls"] = {k: [round(t, 3) for t in v] for k, v in walls.items()}
    steps = epochs * (n_classes * shots // 32 or 1)
    return {"method": method, "classes": n_classes, "shots": shots, "epochs": epochs,
            "candidates": len(candidates), "steps_per_candidate": steps, **out}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1, as bench run fits: --fit-threads)")
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    rows = []
    for method, (classes, shots) in itertools.product(
            ("clip_adapter_visual", "clip_adapter_both"), ((10, 16), (100, 4))):
        rows.append(measure(method, classes, shots, args.epochs, args.device, args.repeats))
        print(rows[-1], flush=True)
    info = machine_info()
    md = ["# CLIP-Adapter ratio search: one by one vs side by side", "",
          f"`python benchmarks/batched_fits.py --epochs {args.epochs} --device {args.device} "
          f"--threads {args.threads}`; "
          f"the two in turn {args.repeats} times, medians; the speed-up is the median of the "
          f"pairwise ratios; training time of the whole search (every candidate), wall and "
          f"process CPU seconds.", "",
          "| method | classes x shots | candidates | steps per candidate | one by one (s) | "
          "side by side (s) | speed-up (wall) | speed-up (CPU) |",
          "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['method']} | {r['classes']} x {r['shots']} | {r['candidates']} | "
                  f"{r['steps_per_candidate']} | {r['one_by_one_s']:.2f} | "
                  f"{r['side_by_side_s']:.2f} | {r['speedup']:.2f}x | {r['speedup_cpu']:.2f}x |")
    md += ["", "Machine:", machine_md(info), ""]
    write_results("batched_fits", {"machine": info, "rows": rows}, "\n".join(md))


if __name__ == "__main__":
    main()
