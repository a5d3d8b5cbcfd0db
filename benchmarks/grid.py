"""The paper grid (11 datasets x shots 1-16 x seeds 1-3 x every method): measured on generated
stand-ins through the real CLI, then projected to full scale.

    .venv/bin/python benchmarks/grid.py --scale 1 --device cuda                 # a GPU, full size
    .venv/bin/python benchmarks/grid.py --scales 0.01,0.02 --backbone bench-bench-vit64 \\
        --set epochs=2 --device cpu                                             # this CPU

Per scale: writes the eleven datasets (grid_data.py: real class counts, test sizes, per-class
pools and typical image sizes, classes and test images times ``--scale``), runs
``python -m bench run`` on them (random weights), reads the result records (timings: job_setup_s,
encode_s, fit_s, eval_s) and the run's log (wall time, total encoding time), and fits a cost model:

* encoding, per dataset: seconds per eval-transform image (test set, train/val unions) and per
  augmented train view (the protocol's (seed, image, epoch) crops, methods' fixed views), solved
  from the records' set-up time (test set + the first seed's fixed views) and in-cell encode time
  (per-epoch views + eval unions);
* fits, per method: seconds = a per cell + b per unit of work (steps for the SGD methods, steps x
  classes for CoOp, whose text encoder runs over every class each step; train images x classes for
  the closed-form / full-batch ones), least squares over the run's cells;
* evaluation: a per cell + b x (test images x classes).

The counts (images, views, steps) come from the plan itself (``plan_counts``: the same few-shot
samplers and method configs the run uses), at the measured scale and at full scale (real configs,
no ``--set``). With several ``--scales`` the model fitted on the smallest predicts the others: the
scaling table's measured / predicted ratios say whether time grows as the counts say.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from _common import ROOT, machine_info, machine_md, table, write_results
from grid_data import BY_NAME, GRID, Scaled, scaled, write_dataset

PHASES = ["test encoding", "train views", "fits", "evaluation"]
COOP_LIKE = {"coop"}  # a step runs the text encoder over every class
PER_IMAGE_TEXT = {"cocoop"}  # the text encoder over every class for every image (train and test)


# --------------------------------------------------------------------------- plan counts
def _lists(s: Scaled):
    """(train, val) item lists of a stand-in (paths are placeholders; only labels matter)."""
    train = [(f"{c}/t{i}", c) for c in range(s.classes) for i in range(s.train_per_class)]
    if s.name == "imagenet":
        return train, train  # val_from_train: the sampler draws val outside the train subset
    val = [(f"{c}/v{i}", c) for c in range(s.classes) for i in range(s.val_per_class)]
    return train, val


def _epochs(cfg: dict, shots: int) -> int:
    e = cfg.get("epochs", 0)
    if isinstance(e, dict):
        e = e.get("by_shots", {}).get(shots, e.get("by_shots", {}).get(str(shots), 0))
    return int(e)


def fit_units(method: str, cfg: dict, shots: int, n_train: int, n_val: int,
              classes: int) -> float:
    """The unit of fitting work the cost model counts for one cell (see the module doc)."""
    if "batch_size" in cfg and _epochs(cfg, shots):
        steps = _epochs(cfg, shots) * math.ceil(n_train / int(cfg["batch_size"]))
        if method in PER_IMAGE_TEXT:
            return _epochs(cfg, shots) * n_train * classes
        return steps * classes if method in COOP_LIKE else steps
    if method == "zero_shot":
        return classes
    return max(n_train, n_val) * classes


def plan_counts(s: Scaled, cells: list[dict]) -> dict:
    """What the sweep of ``cells`` (one dataset) encodes and fits, from its few-shot subsets:
    test images, eval-transform train/val union, per-epoch view encodes (per seed and transform:
    each image for the most epochs any cell trains it), fixed views (per seed and transform:
    each image's largest view count; ``fixed_first``: those of the first seed, encoded in the
    set-up), and each cell's fit and eval units."""
    from bench.identity import SAMPLERS, sampler_of
    from bench.views import resolve_views
    from methods import METHODS

    train, val = _lists(s)
    subsets = {}
    epoch_need: dict = defaultdict(dict)
    fixed_need: dict = defaultdict(dict)
    union = {"train": set(), "val": set()}
    per_cell = []
    for cell in cells:
        key = (cell["shots"], cell["seed"], sampler_of(cell["config"]))
        if key not in subsets:
            subsets[key] = SAMPLERS[key[2]](train, val, cell["shots"], cell["seed"])
        sub = subsets[key]
        union["train"].update(sub.train)
        union["val"].update(sub.val)
        views = resolve_views(METHODS.entry(cell["method"]).extra.get("views"), cell["config"],
                              cell["seed"])
        if views["mode"] == "online":
            need = epoch_need[(views["transform"], cell["seed"])]
            for it in sub.train:
                need[it] = max(need.get(it, 0), views["epochs"])
        elif views["mode"] in ("fixed", "cached"):
            need = fixed_need[(views["transform"], cell["seed"])]
            for it in sub.train:
                need[it] = max(need.get(it, 0), views["n_views"])
        per_cell.append({"method": cell["method"], "shots": cell["shots"], "seed": cell["seed"],
                         "fit_units": fit_units(cell["method"], cell["config"], cell["shots"],
                                                len(sub.train), len(sub.val), s.classes),
                         "eval_units": s.test * s.classes})
    first_seed = min((c["seed"] for c in cells), default=None)
    return {"classes": s.classes, "test": s.test,
            "eval_union": len(union["train"]) + len(union["val"] - union["train"]),
            "epoch_views": sum(sum(n.values()) for n in epoch_need.values()),
            "fixed_views": sum(sum(n.values()) for n in fixed_need.values()),
            "fixed_first": sum(sum(n.values()) for (t, seed), n in fixed_need.items()
                               if seed == first_seed),
            "cells": per_cell}


def grid_cells(datasets, methods, shots, seeds, backbone, overrides_pairs):
    from bench.config import MethodSpec, parse_overrides
    from bench.planner import expand_cells

    overrides = parse_overrides(overrides_pairs, methods) if overrides_pairs else None
    cells = expand_cells([(backbone, None)], datasets, [MethodSpec(m) for m in methods], shots,
                         seeds, overrides)
    by_ds = defaultdict(list)
    for c in cells:
        by_ds[c["dataset"]].append(c)
    return by_ds


# --------------------------------------------------------------------------- the cost model
def lstsq2(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """y = a + b x by least squares with a, b >= 0 (a constant fit when x does not vary)."""
    n = len(xs)
    if n == 0:
        return 0.0, 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx <= 1e-12 * max(1.0, mx * mx):
        return (0.0, my / mx) if mx > 0 else (my, 0.0)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    a = my - b * mx
    if b < 0:
        return my, 0.0
    if a < 0:
        return 0.0, sum(x * y for x, y in zip(xs, ys)) / sum(x * x for x in xs)
    return a, b


def encode_rates(counts: dict, setup_s: float, cell_encode_s: float) -> tuple[float, float]:
    """(s per eval image, s per train view) of one dataset from two equations:
    setup = r_eval * test + r_view * fixed_first;  in-cell encodes = r_eval * eval_union +
    r_view * epoch_views. Falls back to one rate for both when they cannot be told apart."""
    a11, a12, a21, a22 = (counts["test"], counts["fixed_first"], counts["eval_union"],
                          counts["epoch_views"])
    det = a11 * a22 - a12 * a21
    if abs(det) > 1e-9 * max(1.0, a11 * a22):
        r_eval = (setup_s * a22 - a12 * cell_encode_s) / det
        r_view = (a11 * cell_encode_s - a21 * setup_s) / det
        if r_eval > 0 and r_view > 0:
            return r_eval, r_view
    total = a11 + a12 + a21 + a22
    r = (setup_s + cell_encode_s) / total if total else 0.0
    return r, r


def fit_model(measured: dict) -> dict:
    """The cost model from one measured run (see ``measure``)."""
    rates = {ds: encode_rates(m["counts"], m["setup_s"], m["cell_encode_s"])
             for ds, m in measured["datasets"].items()}
    by_method = defaultdict(lambda: ([], []))
    ev = defaultdict(lambda: ([], []))
    for ds, m in measured["datasets"].items():
        for c in m["cells"]:
            xs, ys = by_method[c["method"]]
            xs.append(c["fit_units"])
            ys.append(c["fit_s"])
            xs, ys = ev[c["method"]]
            xs.append(c["eval_units"])
            ys.append(c["eval_s"])
    return {"encode": {ds: {"s_per_eval_image": r[0], "s_per_view": r[1]}
                       for ds, r in rates.items()},
            "fit": {meth: dict(zip(("per_cell", "per_unit"), lstsq2(*xy)))
                    for meth, xy in by_method.items()},
            "eval": {meth: dict(zip(("per_cell", "per_unit"), lstsq2(*xy)))
                     for meth, xy in ev.items()}}


def predict(model: dict, counts_by_ds: dict, rates_from: dict | None = None) -> dict:
    """Seconds per phase (and fits per method) for the plan counts ``counts_by_ds``.
    A dataset without its own encode rates uses the mean rates of the measured ones."""
    enc = model["encode"]
    mean = {k: sum(r[k] for r in enc.values()) / len(enc) for k in
            ("s_per_eval_image", "s_per_view")} if enc else {"s_per_eval_image": 0,
                                                             "s_per_view": 0}
    out = {p: 0.0 for p in PHASES}
    fits = defaultdict(float)
    per_ds = {}
    for ds, c in counts_by_ds.items():
        r = enc.get(ds, mean)
        test = r["s_per_eval_image"] * c["test"]
        views = (r["s_per_eval_image"] * c["eval_union"]
                 + r["s_per_view"] * (c["epoch_views"] + c["fixed_views"]))
        fit = ev = 0.0
        zero = {"per_cell": 0.0, "per_unit": 0.0}
        for x in c["cells"]:
            f = model["fit"].get(x["method"], zero)
            s = f["per_cell"] + f["per_unit"] * x["fit_units"]
            fits[x["method"]] += s
            fit += s
            e = model["eval"].get(x["method"], zero)
            ev += e["per_cell"] + e["per_unit"] * x["eval_units"]
        out["test encoding"] += test
        out["train views"] += views
        out["fits"] += fit
        out["evaluation"] += ev
        per_ds[ds] = {"test encoding": test, "train views": views, "fits": fit, "evaluation": ev}
    out["total"] = sum(out[p] for p in PHASES)
    return {"phases": out, "fits_by_method": dict(fits), "datasets": per_ds}


# --------------------------------------------------------------------------- one measured run
def run_cli(args, data_root: Path, out: Path, datasets: list[str]) -> dict:
    cmd = [sys.executable, "-m", "bench", "run", "--data-root", str(data_root),
           "--datasets", ",".join(datasets), "--methods", args.methods, "--shots", args.shots,
           "--seeds", args.seeds, "--backbone", args.backbone, "--pretrained", "none",
           "--device", args.device, "--output", str(out), "--quiet", "--progress-every", "0"]
    for pair in args.set or []:
        cmd += ["--set", pair]
    if args.workers is not None:
        cmd += ["--workers", str(args.workers)]
    if args.batch_size is not None:
        cmd += ["--batch-size", str(args.batch_size)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
           "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=args.timeout)
    wall = time.perf_counter() - t
    log = proc.stdout + proc.stderr
    (out / "grid_run.log").parent.mkdir(parents=True, exist_ok=True)
    (out / "grid_run.log").write_text(" ".join(cmd) + "\n" + log)
    if proc.returncode != 0:
        tail = "\n".join(log.strip().splitlines()[-15:])
        raise SystemExit(f"grid.py: bench run failed (exit {proc.returncode}); its log is "
                         f"{out / 'grid_run.log'}:\n{tail}")
    return {"wall_s": wall, **_parse_log(log), "command": " ".join(cmd)}


def _parse_log(log: str) -> dict:
    m = re.search(r"image encoding \(feature extraction\) took ([\d.]+) s", log)
    f = re.search(r"bench: finished in ([\d.]+) s", log)
    return {"encode_s": float(m.group(1)) if m else None,
            "run_s": float(f.group(1)) if f else None}


def reused_run(out: Path) -> dict:
    """--reuse: the log of an earlier run on ``out`` (its wall time = bench's own 'finished in')."""
    path = out / "grid_run.log"
    if not path.is_file():
        raise SystemExit(f"grid.py: --reuse: {path} not found; run without --reuse first")
    text = path.read_text()
    parsed = _parse_log(text)
    if parsed["run_s"] is None:
        raise SystemExit(f"grid.py: --reuse: {path} has no 'bench: finished in' line (the run "
                         f"did not finish); run without --reuse")
    return {**parsed, "wall_s": parsed["run_s"], "command": text.splitlines()[0]}


def measure(args, scale: float, work: Path) -> dict:
    """Generate the stand-ins at ``scale``, run the CLI, read the records."""
    from results.store import ResultStore

    datasets = args.datasets
    specs = {d: scaled(BY_NAME[d], scale, args.cap) for d in datasets}
    data_root = work / f"data-{scale:g}"
    out = work / f"out-{scale:g}"
    # the configs as the run reads them (planned before it starts)
    cells = grid_cells(datasets, args.method_names, args.shot_list, args.seed_list,
                       args.backbone, args.set)
    gen_s = 0.0
    if args.reuse:
        run = reused_run(out)
    else:
        t = time.perf_counter()
        files = sum(write_dataset(data_root, s, args.distinct, processes=args.gen_processes)
                    for s in specs.values())
        gen_s = time.perf_counter() - t
        print(f"scale {scale:g}: {files} files written in {gen_s:.1f} s "
              f"({sum(s.files for s in specs.values())} listed)", flush=True)
        shutil.rmtree(out, ignore_errors=True)
        run = run_cli(args, data_root, out, datasets)
    res = {"scale": scale, "generate_s": gen_s, "run": run, "datasets": {}}
    everything = ResultStore(out).load_all()
    records = [r for r in everything if r.get("status") == "ok"]
    failed = [r for r in everything if r.get("status") != "ok"]
    if failed:
        raise SystemExit(f"grid.py: {len(failed)} cell(s) failed, e.g. "
                         f"{failed[0]['dataset']}/{failed[0]['method']}: "
                         f"{failed[0].get('error', {}).get('message')}; see {out}")
    by_key = {(r["dataset"], r["method"], r["shots"], r["seed"]): r for r in records}
    missing = [c for ds in datasets for c in cells[ds]
               if (ds, c["method"], c["shots"], c["seed"]) not in by_key]
    if missing:  # --reuse after methods were added: count only the cells that ran
        print(f"grid.py: note: {len(missing)} planned cell(s) have no record (e.g. "
              f"{missing[0]['dataset']}/{missing[0]['method']}); left out", file=sys.stderr)
    for ds in datasets:
        ran = [c for c in cells[ds] if (ds, c["method"], c["shots"], c["seed"]) in by_key]
        counts = plan_counts(specs[ds], ran)
        rows = []
        for c in counts["cells"]:
            r = by_key[(ds, c["method"], c["shots"], c["seed"])]
            tm = r["timings"]
            rows.append({**c, "fit_s": tm.get("fit_s", 0.0), "eval_s": tm.get("eval_s", 0.0),
                         "encode_s": tm.get("encode_s", 0.0), "n_train": r["fewshot"]["n_train"]})
        setup = max(r["timings"].get("job_setup_s", 0.0) for r in records if r["dataset"] == ds)
        res["datasets"][ds] = {"counts": {k: v for k, v in counts.items() if k != "cells"},
                               "setup_s": setup,
                               "cell_encode_s": sum(x["encode_s"] for x in rows),
                               "cells": rows}
    return res


def measured_phases(m: dict, model: dict) -> dict:
    """Seconds per phase of one run: test encoding from the fitted per-image rates, train views
    = the run's whole encoding time minus that, fits and evaluation summed from the records,
    other = the rest of the wall time (start-up, model loading, planning, writing)."""
    test = sum(model["encode"][ds]["s_per_eval_image"] * d["counts"]["test"]
               for ds, d in m["datasets"].items())
    enc_total = m["run"]["encode_s"]
    if enc_total is None:
        enc_total = sum(d["setup_s"] + d["cell_encode_s"] for d in m["datasets"].values())
    cells = [c for d in m["datasets"].values() for c in d["cells"]]
    out = {"test encoding": test, "train views": max(0.0, enc_total - test),
           "fits": sum(c["fit_s"] for c in cells), "evaluation": sum(c["eval_s"] for c in cells)}
    out["total"] = sum(out.values())
    out["other"] = max(0.0, m["run"]["wall_s"] - out["total"])
    out["wall"] = m["run"]["wall_s"]
    return out


def totals(counts_by_ds: dict) -> dict:
    keys = ["test", "eval_union", "epoch_views", "fixed_views"]
    t = {k: sum(c[k] for c in counts_by_ds.values()) for k in keys}
    t["cells"] = sum(len(c["cells"]) for c in counts_by_ds.values())
    t["fit_units"] = sum(x["fit_units"] for c in counts_by_ds.values() for x in c["cells"])
    return t


# --------------------------------------------------------------------------- report
def render(res: dict) -> str:
    a = res["args"]
    proj = res["projection"]["phases"]
    goal = 3600.0
    lines = [
        "# The paper grid: measured on generated stand-ins, projected to full scale", "",
        f"Backbone `{a['backbone']}` (random weights), device `{a['device']}`, methods "
        f"`{a['methods']}`, shots {a['shots']}, seeds {a['seeds']}, datasets: "
        f"{', '.join(a['datasets'])}. Overrides for the measured runs: "
        f"{', '.join(a['set'] or []) or 'none'} (the projection uses the real configs). "
        f"Per-class pools capped at {a['cap']} images; {a['distinct']} distinct JPEGs per class "
        f"(the other files hard links to them).", ""]
    if not res["machine"].get("cuda"):
        lines += ["**No GPU in this session**: these are CPU numbers at reduced scale; "
                  "`bash benchmarks/gpu_check.sh` runs the full-scale grid on a GPU.", ""]
    lines += ["## Measured runs", ""]
    rows = []
    for m in res["runs"]:
        ph, t = m["phases"], m["totals"]
        rows.append([m["scale"], t["cells"], t["test"], t["eval_union"] + t["epoch_views"]
                     + t["fixed_views"], ph["test encoding"], ph["train views"], ph["fits"],
                     ph["evaluation"], ph["other"], ph["wall"]])
    lines += [table(["scale", "cells", "test images", "train encodes", "test enc s",
                     "train views s", "fits s", "eval s", "other s", "wall s"], rows), ""]
    if res.get("scaling"):
        lines += ["## Scaling: the smallest scale's model predicts the others", "",
                  "Predicted from the plan's counts at each scale with the rates fitted on scale "
                  f"{res['runs'][0]['scale']:g}; ratio = measured / predicted (1.0 = time grows "
                  "exactly as the counts say).", ""]
        rows = []
        for s in res["scaling"]:
            rows += [[s["scale"], p, s["predicted"][p], s["measured"][p],
                      s["measured"][p] / s["predicted"][p] if s["predicted"][p] else ""]
                     for p in PHASES + ["total"]]
        lines += [table(["scale", "phase", "predicted s", "measured s", "ratio"], rows), ""]
    ft = res["projection"]["totals"]
    lines += [
        "## Projection to full scale", "",
        f"Full-scale plan: {ft['cells']} cells; {ft['test']:,} test images, {ft['eval_union']:,} "
        f"eval-transform train/val images, {ft['epoch_views']:,} per-epoch view encodes, "
        f"{ft['fixed_views']:,} fixed-view encodes. Rates from the largest measured scale "
        f"({res['runs'][-1]['scale']:g}).", "",
        table(["phase", "projected s", "projected h", "share"],
              [[p, proj[p], proj[p] / 3600, f"{100 * proj[p] / proj['total']:.0f}%"]
               for p in PHASES] + [["**total**", proj["total"], proj["total"] / 3600, "100%"]]),
        "",
        f"Against the goal of one hour for the whole grid: {proj['total'] / goal:.2f}x the goal "
        f"on this machine with this backbone.", "",
        "Fits by method (projected seconds):", "",
        table(["method", "projected s", "per cell s (fitted)", "per unit s (fitted)"],
              [[k, v, res["model"]["fit"][k]["per_cell"], res["model"]["fit"][k]["per_unit"]]
               for k, v in sorted(res["projection"]["fits_by_method"].items(),
                                  key=lambda kv: -kv[1])]), "",
        "Encoding rates (fitted, largest scale):", "",
        table(["dataset", "image size", "ms per eval image", "ms per train view"],
              [[ds, "x".join(map(str, BY_NAME[ds].size)), 1000 * r["s_per_eval_image"],
                1000 * r["s_per_view"]] for ds, r in res["model"]["encode"].items()]), "",
        "## Machine", "", machine_md(res["machine"])]
    return "\n".join(lines)


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=None, help="one scale in (0, 1]")
    ap.add_argument("--scales", default=None, help="several, comma list (a scaling table)")
    ap.add_argument("--datasets", default="all", help="comma list or 'all' (the eleven)")
    ap.add_argument("--methods", default="all")
    ap.add_argument("--shots", default="1,2,4,8,16")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--backbone", default="RN50-quickgelu")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="override for the measured runs (e.g. epochs=2 on a CPU); repeatable")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the run (CPU)")
    ap.add_argument("--cap", type=int, default=200, help="per-class train/val pool cap")
    ap.add_argument("--distinct", type=int, default=4, help="generated JPEGs per class")
    ap.add_argument("--gen-processes", type=int, default=max(1, (os.cpu_count() or 1) - 1))
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per bench run")
    ap.add_argument("--work", default="/tmp/bench-grid")
    ap.add_argument("--name", default="grid", help="results/<name>.{json,md}")
    ap.add_argument("--reuse", action="store_true",
                    help="analyse the runs already in --work (same flags) instead of running")
    args = ap.parse_args(argv)
    try:
        if args.scales:
            args.scale_list = sorted(float(x) for x in args.scales.split(","))
        else:
            args.scale_list = [args.scale if args.scale is not None else 1.0]
        if not all(0 < s <= 1 for s in args.scale_list):
            raise ValueError
    except ValueError:
        ap.error(f"--scale/--scales: numbers in (0, 1] expected, got "
                 f"{args.scales or args.scale!r}")
    args.datasets = ([d.name for d in GRID] if args.datasets == "all"
                     else [d.strip() for d in args.datasets.split(",")])
    unknown = [d for d in args.datasets if d not in BY_NAME]
    if unknown:
        ap.error(f"--datasets: unknown {', '.join(unknown)}; choose from "
                 f"{', '.join(BY_NAME)}")
    try:
        args.shot_list = [int(x) for x in args.shots.split(",")]
        args.seed_list = [int(x) for x in args.seeds.split(",")]
    except ValueError:
        ap.error("--shots/--seeds: comma lists of integers expected")
    return args


def main(argv=None) -> None:
    args = parse(argv)
    from bench.errors import BenchError

    try:
        from methods import METHODS

        args.method_names = METHODS.select(args.methods)
        grid_cells(args.datasets[:1], args.method_names, args.shot_list, args.seed_list,
                   args.backbone, args.set)  # bad --set / methods: one line, before any work
    except BenchError as exc:
        print(f"grid.py: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    work = Path(args.work)
    runs, models = [], []
    for scale in args.scale_list:
        m = measure(args, scale, work)
        model = fit_model(m)
        m["phases"] = measured_phases(m, model)
        m["totals"] = totals({ds: {**d["counts"], "cells": d["cells"]}
                              for ds, d in m["datasets"].items()})
        runs.append(m)
        models.append(model)
        print(f"scale {scale:g}: wall {m['run']['wall_s']:.1f} s, phases "
              + ", ".join(f"{k} {v:.1f}" for k, v in m["phases"].items()), flush=True)
    scaling = []
    for m in runs[1:]:
        counts = {ds: {**d["counts"], "cells": d["cells"]} for ds, d in m["datasets"].items()}
        pred = predict(models[0], counts)["phases"]
        scaling.append({"scale": m["scale"], "predicted": pred, "measured": m["phases"]})
    measured_methods = [m for m in args.method_names if m in models[-1]["fit"]]
    full_cells = grid_cells(args.datasets, measured_methods, args.shot_list, args.seed_list,
                            args.backbone, None)
    full = {ds: plan_counts(scaled(BY_NAME[ds], 1.0, args.cap), full_cells[ds])
            for ds in args.datasets}
    projection = predict(models[-1], full)
    projection["totals"] = totals(full)
    projection["datasets_counts"] = {ds: {k: v for k, v in c.items() if k != "cells"}
                                     for ds, c in full.items()}
    res = {"args": {k: v for k, v in vars(args).items()}, "machine": machine_info(),
           "runs": runs, "model": models[-1], "scaling": scaling, "projection": projection}
    write_results(args.name, res, render(res))


if __name__ == "__main__":
    main()
