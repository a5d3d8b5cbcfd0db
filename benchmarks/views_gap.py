"""Accuracy of the protocol's views (the default) against the cached approximation, on the demo.

    .venv/bin/python benchmarks/views_gap.py --seeds 1-12 [--views 10] [--work DIR]

Runs `bench run` on the built-in demo for CoOp and CLIP-Adapter visual/text/both (the methods
that train on augmented views; zero-shot and the linear probe do not depend on them) at
1, 2, 4, 8, 16 shots, once with the default (`feature_mode: online`) and once with
`--set feature_mode=cached --set n_views=V`, in two output folders (reruns resume). Both runs
draw the same few-shot subsets, so the comparison is paired by seed: for each seed, the gap is
the mean over methods x shots x datasets of default - cached top-1. Reports per method and shot
the means over seeds, and the demo-average gap with a 95% t-interval over seeds. Writes
benchmarks/results/views_gap.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from _common import machine_info, machine_md, table, write_results

METHODS = ["coop", "clip_adapter_visual", "clip_adapter_text", "clip_adapter_both"]
SHOTS = [1, 2, 4, 8, 16]
T975 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26,
        10: 2.23, 11: 2.20, 12: 2.18, 13: 2.16, 14: 2.14, 15: 2.13, 19: 2.09, 24: 2.06, 29: 2.05}


def t975(df: int) -> float:
    return T975.get(df) or T975[max(k for k in T975 if k <= df)] if df >= 1 else float("nan")


def parse_seeds(text: str) -> list[int]:
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(s) for s in text.split(",")]


def run(out: Path, seeds: list[int], extra: list[str]) -> float:
    import time

    cmd = [sys.executable, "-m", "bench.cli", "run", "--methods", ",".join(METHODS),
           "--shots", ",".join(map(str, SHOTS)), "--seeds", ",".join(map(str, seeds)),
           "--output", str(out), "--quiet", *extra]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def accuracies(out: Path) -> dict:
    """(method, shots, seed, dataset) -> top1 of the ok records under ``out``."""
    acc = {}
    for path in (out / "results").rglob("*.json"):
        rec = json.loads(path.read_text())
        if rec.get("status") == "ok":
            acc[(rec["method"], rec["shots"], rec["seed"], rec["dataset"])] = rec["metrics"]["top1"]
    return acc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="1-12")
    ap.add_argument("--views", type=int, default=10)
    ap.add_argument("--work", default="/tmp/bench-views-gap")
    args = ap.parse_args()
    seeds = parse_seeds(args.seeds)
    work = Path(args.work)
    secs = {"default": run(work / "default", seeds, []),
            "cached": run(work / f"cached{args.views}", seeds,
                          ["--set", "feature_mode=cached", "--set", f"n_views={args.views}"])}
    a, b = accuracies(work / "default"), accuracies(work / f"cached{args.views}")
    keys = sorted(k for k in set(a) & set(b) if k[0] in METHODS and k[2] in seeds)
    datasets = sorted({k[3] for k in keys})
    per_seed = defaultdict(list)
    cells = defaultdict(lambda: ([], []))
    for k in keys:
        per_seed[k[2]].append(a[k] - b[k])
        cells[(k[0], k[1])][0].append(a[k])
        cells[(k[0], k[1])][1].append(b[k])
    gaps = [statistics.mean(per_seed[s]) for s in sorted(per_seed)]
    n = len(gaps)
    mean = statistics.mean(gaps)
    sd = statistics.stdev(gaps) if n > 1 else float("nan")
    half = t975(n - 1) * sd / math.sqrt(n) if n > 1 else float("nan")
    rows = [[m, k, statistics.mean(cells[(m, k)][0]), statistics.mean(cells[(m, k)][1]),
             statistics.mean(cells[(m, k)][0]) - statistics.mean(cells[(m, k)][1])]
            for m in METHODS for k in SHOTS if (m, k) in cells]
    res = {"seeds": seeds, "views": args.views, "datasets": datasets, "seconds": secs,
           "per_seed_gap": dict(zip(sorted(per_seed), gaps)), "gap_mean": mean, "gap_sd": sd,
           "ci95_half_width": half, "rows": rows, "machine": machine_info()}
    md = "\n".join([
        f"# Default (fresh crops every epoch) vs cached views (V = {args.views}) on the demo",
        "",
        f"Demo suite ({', '.join(datasets)}), `bench run` with the demo model, methods "
        f"{', '.join(METHODS)}, shots {SHOTS}, seeds {seeds[0]}-{seeds[-1]} ({n}). Top-1 (%), "
        f"mean over seeds of the demo average (5 datasets).",
        "",
        table(["method", "shots", "default", f"cached x{args.views}", "default - cached"], rows),
        "",
        f"**Demo-average gap, default - cached: {mean:+.2f} points, 95% CI "
        f"[{mean - half:+.2f}, {mean + half:+.2f}]** (t-interval over {n} seeds; each seed's gap "
        f"is the mean over methods x shots x datasets of the paired difference; seed-to-seed "
        f"sd {sd:.2f}).",
        "",
        f"Run time of this invocation: default {secs['default']:.0f} s, cached "
        f"{secs['cached']:.0f} s (cells already in the output folders are not run again).",
        "",
        "## Machine",
        "",
        machine_md(res["machine"]),
    ])
    jpath, mpath = write_results(f"views_gap_v{args.views}", res, md)
    print(md)
    print(f"wrote {jpath} and {mpath}")


if __name__ == "__main__":
    main()
