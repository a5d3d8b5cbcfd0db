"""bench from Python, cell by cell as in a notebook, on the built-in demo (no data to download).

    python examples/notebook.py [OUTPUT]        # default OUTPUT: bench-notebook

Each step is one call of the core API (bench/api.py), the same code `bench run`, `bench report`
and `bench plot` call. Run it twice: the second time every cell is already done.
"""

import sys

import bench

output = sys.argv[1] if len(sys.argv) > 1 else "bench-notebook"

# %% A sweep from Python values: the `bench run` flags as keywords (no data_root: the demo).
sweep = bench.Sweep(methods=["zero_shot", "linear_probe"], datasets="demo_signs",
                    shots=[1, 2], seeds=[1, 2], output=output, quiet=True)

# %% The plan: every cell of the grid, and the jobs that run those not done yet.
plan = sweep.plan()
print(f"{len(plan.cells)} cells, {plan.n_done} done, {plan.n_todo} to run")

# %% Execute it (in this process; launcher="local" or "slurm" runs the same jobs elsewhere).
outcome = bench.execute(plan)
print(f"ran {outcome.ran} cells, {outcome.failed} failed")

# %% One row per record: accuracy, what the method selected on val, timings, config, ...
cells = bench.cells(output)
print(cells[["method", "shots", "seed", "top1", "mean_per_class", "timings.fit_s"]]
      .to_string(index=False))
print("linear probe's C per cell:", cells["selected.C"].dropna().tolist())

# %% Your own statistics start from there; the summary `bench report` prints is one call away.
summary = bench.summary(output)
print(summary[["dataset", "method", "shots", "mean", "std", "n"]].to_string(index=False))

# %% And the report itself, as text (terminal, markdown, latex or csv).
print(bench.report(output, format="markdown", layout="main"))
