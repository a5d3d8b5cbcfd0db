"""Two concurrent `bench run` on one output vs one run alone, on a small demo grid.

    python benchmarks/concurrent_runs.py [--methods zero_shot,linear_probe,clip_adapter_visual]
                                    [--datasets demo_digits,demo_glyphs] [--seeds 1,2,3]

Runs the grid once alone (fresh output and cache), then twice at the same time on another fresh
output, and reports the wall times, how many cells each process computed, and that every cell
was computed exactly once (every record's ``host``/pid is recorded by a spy on the runner).
Each process uses ``torch`` threads = cores / 2 in the pair and all cores alone, so the pair does
not win by oversubscription. Writes benchmarks/results/concurrent.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from pathlib import Path

from _common import ROOT, machine_info, machine_md, table, write_results

SPY = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    import bench.runner.cell as lifecycle
    from results.records import cell_id
    real = lifecycle.run_cell
    def run_cell(cell, *a, **k):
        with open(os.environ["SPY_LOG"], "a") as fh:
            fh.write(f"{os.getpid()} {cell_id(cell)}\\n")
        return real(cell, *a, **k)
    lifecycle.run_cell = run_cell
    from bench.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def run_group(n: int, grid: list[str], work: Path, threads: int) -> dict:
    out = work / f"out{n}"
    log = work / f"computed{n}.log"
    spy = work / "spy.py"
    spy.write_text(SPY)
    env = {**os.environ, "SPY_LOG": str(log), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT),
           "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    argv = [sys.executable, str(spy), "run", *grid, "--output", str(out), "--quiet"]
    t0 = time.perf_counter()
    procs = [subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True) for _ in range(n)]
    errs = [p.communicate()[1] for p in procs]
    wall = time.perf_counter() - t0
    for p, err in zip(procs, errs):
        if p.returncode != 0:
            raise SystemExit(f"bench run exited {p.returncode}:\n{err[-2000:]}")
    lines = log.read_text().split()
    per_pid = Counter(lines[0::2])
    per_cell = Counter(lines[1::2])
    records = [p for p in (out / "results").rglob("*.json") if not p.name.endswith(".failed.json")]
    return {"processes": n, "wall_s": round(wall, 1), "cells_per_process": sorted(per_pid.values()),
            "cells_computed": len(per_cell), "computed_twice": sum(v > 1 for v in per_cell.values()),
            "records": len(records)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="zero_shot,linear_probe,clip_adapter_visual")
    ap.add_argument("--datasets", default="demo_digits,demo_glyphs")
    ap.add_argument("--shots", default="1,4")
    ap.add_argument("--seeds", default="1,2,3")
    args = ap.parse_args()
    grid = ["--methods", args.methods, "--datasets", args.datasets, "--shots", args.shots,
            "--seeds", args.seeds, "--device", "cpu"]
    cores = os.cpu_count() or 2
    with tempfile.TemporaryDirectory() as tmp:
        alone = run_group(1, grid, Path(tmp), cores)
        pair = run_group(2, grid, Path(tmp), max(1, cores // 2))
    info = machine_info()
    data = {"machine": info, "grid": grid, "alone": alone, "pair": pair,
            "speedup": round(alone["wall_s"] / pair["wall_s"], 2)}
    rows = [[r["processes"], r["wall_s"], "/".join(map(str, r["cells_per_process"])),
             r["records"], r["computed_twice"]] for r in (alone, pair)]
    md = (f"# Two concurrent `bench run` on one output vs one alone\n\n{machine_md(info)}\n\n"
          f"Grid: `bench run {' '.join(grid)}` (built-in demo), fresh output and cache each.\n\n"
          + table(["processes", "wall s", "cells per process", "records", "cells computed twice"],
                  rows)
          + f"\n\nSpeed-up of the pair: {data['speedup']}x.\n")
    write_results("concurrent", data, md)
    print(md)


if __name__ == "__main__":
    main()
