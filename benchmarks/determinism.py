"""What the reproducibility policy costs, and what it buys: the demo sweep under each policy.

Runs ``bench run`` on the built-in demo (default: the README's main job, the paper's six methods
x shots 1-16 x seeds 1-3) once per policy per repeat, alternating the policies (A B A B ...) so
that a drift of the machine's speed hits both alike, each run in a fresh output and cache (the
demo data is generated once, outside the timing). Reports each policy's wall times, the ratio
per pair, and whether every cell's logits hash is the same across the repeats of a policy.

    .venv/bin/python benchmarks/determinism.py --repeats 2
    .venv/bin/python benchmarks/determinism.py --methods zero_shot,coop --seeds 1 --policies portable,native,off

``--compare OUT_A OUT_B`` instead compares two output folders cell by cell (for instance the
same command run on an Intel and an AMD machine): how many cells share a logits hash.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, machine_info, machine_md, table, write_results

MAIN_JOB = "zero_shot,linear_probe,coop,clip_adapter_*"


def hashes(output: Path) -> dict[str, str]:
    """cell id -> logits_sha256 of every ok record under ``output``."""
    from results.records import cell_id
    from results.store import ResultStore

    return {cell_id(r): r["logits_sha256"] for r in ResultStore(output).iter_records()
            if r.get("status") == "ok"}


def compare(a: Path, b: Path) -> dict:
    ha, hb = hashes(a), hashes(b)
    common = sorted(set(ha) & set(hb))
    same = sum(ha[c] == hb[c] for c in common)
    return {"a": str(a), "b": str(b), "cells_a": len(ha), "cells_b": len(hb),
            "common": len(common), "same": same, "different": len(common) - same}


def run_once(policy: str, args, demo_dir: Path, work: Path) -> tuple[float, Path]:
    out = Path(tempfile.mkdtemp(prefix=f"{policy}-", dir=work))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "BENCH_DEMO_DIR": str(demo_dir),
           "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "bench", "run", "--methods", args.methods, "--shots",
           args.shots, "--seeds", args.seeds, "--output", str(out / "out"), "--cache-dir",
           str(out / "cache"), "--quiet", "--determinism", policy]
    t = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if done.returncode != 0:
        sys.exit(f"bench run failed under {policy}:\n{done.stderr[-2000:]}")
    return wall, out / "out"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", default=MAIN_JOB)
    p.add_argument("--shots", default="1,2,4,8,16")
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--policies", default="portable,off")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--compare", nargs=2, metavar="OUT", help="compare two output folders")
    p.add_argument("--name", default="determinism")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    if args.compare:
        print(json.dumps(compare(*map(Path, args.compare)), indent=1))
        return
    policies = args.policies.split(",")
    work = Path(tempfile.mkdtemp(prefix="bench-determinism-"))
    demo_dir = work / "demo"
    warm = subprocess.run([sys.executable, "-m", "bench", "run", "--methods", "zero_shot",
                           "--shots", "1", "--seeds", "1", "--output", str(work / "warm"),
                           "--quiet"], env={**os.environ, "HF_HUB_OFFLINE": "1",
                                            "BENCH_DEMO_DIR": str(demo_dir),
                                            "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True)
    if warm.returncode != 0:
        sys.exit(warm.stderr[-2000:])
    info = machine_info()
    walls: dict[str, list[float]] = {pol: [] for pol in policies}
    outs: dict[str, list[Path]] = {pol: [] for pol in policies}
    for r in range(args.repeats):
        for pol in policies:
            wall, out = run_once(pol, args, demo_dir, work)
            walls[pol].append(round(wall, 1))
            outs[pol].append(out)
            print(f"repeat {r + 1}: {pol}: {wall:.1f} s", flush=True)
    result = {"machine": info, "command": {"methods": args.methods, "shots": args.shots,
                                           "seeds": args.seeds}, "policies": {}}
    base = policies[0]
    for pol in policies:
        same = [compare(outs[pol][0], o) for o in outs[pol][1:]]
        entry = {"wall_s": walls[pol], "median_s": statistics.median(walls[pol]),
                 "repeats_identical": all(c["different"] == 0 for c in same),
                 "cells": len(hashes(outs[pol][0]))}
        if pol != base:
            entry["ratio_to_" + base] = [round(a / b, 3) for a, b in zip(walls[pol], walls[base])]
            entry["same_bits_as_" + base] = compare(outs[base][0], outs[pol][0])
        result["policies"][pol] = entry
    rows = [[pol, ", ".join(map(str, e["wall_s"])), e["median_s"], e["cells"],
             "yes" if e["repeats_identical"] else "NO",
             e.get(f"same_bits_as_{base}", {}).get("same", "")] for pol, e in
            result["policies"].items()]
    md = (f"# The reproducibility policy's cost on the demo\n\n{machine_md(info)}\n\n"
          f"`bench run --methods {args.methods} --shots {args.shots} --seeds {args.seeds}` on "
          f"the demo, a fresh output and cache per run, policies alternated.\n\n"
          + table(["policy", "wall s (each repeat)", "median s", "cells",
                   "repeats bit-identical", f"cells with {base}'s bits"], rows))
    write_results(args.name, result, md, args.out)
    print(md)


if __name__ == "__main__":
    main()
