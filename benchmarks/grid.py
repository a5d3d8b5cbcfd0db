"""The paper grid (11 datasets x shots 1-16 x seeds 1-3 x every method): measured on generated
stand-ins through the real CLI, then projected to full scale.

    .venv/bin/python benchmarks/grid.py --scale 1 --device cuda                 # a GPU, full size
    .venv/bin/python benchmarks/grid.py --scales 0.01,0.02 --backbone bench-bench-vit64 \\
        --set epochs=2 --device cpu                                             # this CPU

Per scale: writes the datasets' stand-ins (grid_data.py: real class counts, test sizes,
per-class pools and typical image sizes; classes and test images times ``--scale``), runs
``python -m bench run`` on them (random weights), reads the result records (timings: job_setup_s,
encode_s, fit_s, eval_s) and the run's log (wall time, total encoding time), and fits a cost model
by non-negative least squares over every measured scale at once:

* encoding: a per-dataset set-up constant, and per eval-transform image (test set, train/val
  unions) and per augmented train view (the protocol's (seed, image, epoch) crops, methods' fixed
  views) a fixed cost plus a cost per megapixel of the file (decoding); fitted on the records'
  set-up time (test set + the first seed's fixed views), in-cell encode time (per-epoch views +
  eval unions) and the run's total encoding time;
* fits, per method: a cost per cell plus, for the SGD methods, per step and per (step, class)
  pair (prompt learners: the text encoder runs over every class each step) or per (image, epoch,
  class) triple (logits; CoCoOp's text encoder per image); for the others per (image, class) pair
  and per class;
* evaluation, per method: per cell and per (test image, class) pair.

The counts (images, views, steps) come from the plan itself (``plan_counts``: the same few-shot
samplers and method configs the run uses), at the measured scale and for the projection on the
paper grid (eleven datasets, shots 1-16, seeds 1-3, the real configs: no ``--set``). With several
``--scales``, each scale is also predicted from the model fitted on the smaller ones: the scaling
table's measured / predicted ratios say whether time grows as the counts say. Results are written
after each scale. ``--reuse`` re-analyses the runs already in ``--work``.
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
COOP_LIKE = {"coop", "kgcoop", "prograd"}  # a step runs the text encoder over every class
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


def fit_features(method: str, cfg: dict, shots: int, n_train: int, n_val: int,
                 classes: int) -> dict:
    """The fitting work of one cell, as the cost model counts it (see the module doc):
    SGD methods: optimizer steps, (step, class) pairs (a prompt learner's text encoder runs over
    every class each step) and (image, epoch, class) triples (logits, or CoCoOp's text encoder
    per image); the others: (image, class) pairs and classes. "units" is the headline count."""
    epochs = _epochs(cfg, shots) if "batch_size" in cfg else 0
    if epochs:
        steps = epochs * math.ceil(n_train / int(cfg["batch_size"]))
        if method in COOP_LIKE:  # text encoder over every class, once per step
            return {"cell": 1.0, "steps": steps, "step_classes": steps * classes,
                    "units": steps * classes}
        # logits of every (image, class) each epoch; CoCoOp: a text-encoder pass for each
        triples = epochs * n_train * classes
        return {"cell": 1.0, "steps": steps, "image_epoch_classes": triples,
                "units": triples if method in PER_IMAGE_TEXT else steps}
    pairs = max(n_train, n_val) * classes
    return {"cell": 1.0, "image_classes": pairs, "classes": classes,
            "units": classes if method == "zero_shot" else pairs}


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
                         "fit": fit_features(cell["method"], cell["config"], cell["shots"],
                                             len(sub.train), len(sub.val), s.classes),
                         "eval": {"cell": 1.0, "test_classes": s.test * s.classes}})
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
def nnls(rows: list[dict], ys: list[float]) -> dict:
    """Non-negative least squares: coefficients c >= 0 (one per feature name in ``rows``,
    "units" excluded) minimising sum (y - sum_k c_k x_k)^2. Columns are scaled to max 1 first."""
    import numpy as np
    from scipy.optimize import nnls as _nnls

    names = sorted({k for r in rows for k in r if k != "units"})
    if not rows or not names:
        return {}
    a = np.array([[float(r.get(k, 0.0)) for k in names] for r in rows])
    scale = np.abs(a).max(axis=0)
    scale[scale == 0] = 1.0
    coef, _ = _nnls(a / scale, np.array(ys, dtype=float))
    return {k: float(c / sc) for k, c, sc in zip(names, coef, scale)}


def apply(coef: dict, x: dict) -> float:
    return sum(c * x.get(k, 0.0) for k, c in coef.items())


def _megapixels(ds: str) -> float:
    w, h = BY_NAME[ds].size
    return w * h / 1e6


def encode_rows(ds: str, counts: dict) -> tuple[dict, dict, dict]:
    """Encoding features of one dataset: (test set, train side, set-up constant). An image costs
    a fixed part plus a part per megapixel of the file (decoding); eval-transform images and
    augmented views have their own two rates (a view store decodes an image once for all its
    epochs)."""
    px = _megapixels(ds)
    test = {"eval": counts["test"], "eval_px": counts["test"] * px}
    views = counts["epoch_views"] + counts["fixed_views"]
    train = {"eval": counts["eval_union"], "eval_px": counts["eval_union"] * px,
             "view": views, "view_px": views * px}
    return test, train, {f"setup_{ds}": 1.0}


def fit_model(runs: list[dict]) -> dict:
    """The cost model from measured runs (see ``measure``), fitted on all of them at once (the
    fixed costs can only be told from the per-image ones across scales). Encoding: per dataset
    and run, the set-up time (a per-dataset constant + test set + the first seed's fixed views)
    and the in-cell encode time (per-epoch views + eval-transform unions), plus each run's total
    encoding time (every fixed view included). Fits and evaluation: per method, over the cells."""
    rows, ys = [], []
    by_method = defaultdict(lambda: ([], [], [], []))
    for measured in runs:
        _encode_rows(measured, rows, ys)
        for m in measured["datasets"].values():
            for c in m["cells"]:
                fx, fy, ex, ey = by_method[c["method"]]
                fx.append(c["fit"])
                fy.append(c["fit_s"])
                ex.append(c["eval"])
                ey.append(c["eval_s"])
    return {"encode": nnls(rows, ys),
            "fit": {meth: nnls(v[0], v[1]) for meth, v in by_method.items()},
            "eval": {meth: nnls(v[2], v[3]) for meth, v in by_method.items()}}


def _encode_rows(measured: dict, rows: list, ys: list) -> None:
    total_row: dict = defaultdict(float)
    for ds, m in measured["datasets"].items():
        c = m["counts"]
        px = _megapixels(ds)
        rows.append({"eval": c["test"], "eval_px": c["test"] * px,
                     "view": c["fixed_first"], "view_px": c["fixed_first"] * px,
                     f"setup_{ds}": 1.0})
        ys.append(m["setup_s"])
        rows.append({"eval": c["eval_union"], "eval_px": c["eval_union"] * px,
                     "view": c["epoch_views"], "view_px": c["epoch_views"] * px})
        ys.append(m["cell_encode_s"])
        test, train, _ = encode_rows(ds, c)
        for k, v in list(test.items()) + list(train.items()):
            total_row[k] += v
    if measured["run"].get("encode_s") is not None:
        rows.append(dict(total_row))
        ys.append(measured["run"]["encode_s"])


def predict(model: dict, counts_by_ds: dict) -> dict:
    """Seconds per phase (and fits per method) for the plan counts ``counts_by_ds``. A dataset
    not measured gets the mean of the measured datasets' set-up constants."""
    enc = model["encode"]
    setups = [v for k, v in enc.items() if k.startswith("setup_")]
    mean_setup = sum(setups) / len(setups) if setups else 0.0
    out = {p: 0.0 for p in PHASES}
    fits = defaultdict(float)
    per_ds = {}
    for ds, c in counts_by_ds.items():
        test_x, train_x, _ = encode_rows(ds, c)
        test = apply(enc, test_x) + enc.get(f"setup_{ds}", mean_setup)
        views = apply(enc, train_x)
        fit = ev = 0.0
        for x in c["cells"]:
            f = apply(model["fit"].get(x["method"], {}), x["fit"])
            fits[x["method"]] += f
            fit += f
            ev += apply(model["eval"].get(x["method"], {}), x["eval"])
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
    if args.joint_fits is not None:
        cmd += ["--joint-fits", args.joint_fits]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
           "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    t = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=args.timeout)
    except subprocess.TimeoutExpired as exc:
        # stopped: the cells done so far (records are written atomically) are still analysed
        def text(b):
            return b.decode(errors="replace") if isinstance(b, bytes) else (b or "")

        out.mkdir(parents=True, exist_ok=True)
        (out / "grid_run.log").write_text(" ".join(cmd) + "\n" + text(exc.stdout)
                                          + text(exc.stderr))
        print(f"grid.py: the bench run on {out} passed --timeout {args.timeout:g} s and was "
              f"stopped; analysing the cells it finished (later scales are skipped)",
              file=sys.stderr)
        return {"wall_s": time.perf_counter() - t, "encode_s": None, "run_s": None,
                "command": " ".join(cmd), "cut_short": True}
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
        if not ran:
            continue
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
    test = sum(apply(model["encode"], encode_rows(ds, d["counts"])[0])
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
    # of "other": before bench's clock starts (imports, config, plan with its input identities)
    out["startup"] = (m["run"]["wall_s"] - m["run"]["run_s"]) if m["run"]["run_s"] else None
    return out


def totals(counts_by_ds: dict) -> dict:
    keys = ["test", "eval_union", "epoch_views", "fixed_views"]
    t = {k: sum(c[k] for c in counts_by_ds.values()) for k in keys}
    t["cells"] = sum(len(c["cells"]) for c in counts_by_ds.values())
    t["fit_units"] = sum(x["fit"]["units"] for c in counts_by_ds.values() for x in c["cells"])
    return t


# --------------------------------------------------------------------------- report
FEATURE_NAMES = {"cell": "cell", "steps": "step", "step_classes": "(step, class) pair",
                 "image_epoch_classes": "(image, epoch, class) triple",
                 "image_classes": "(image, class) pair", "classes": "class",
                 "test_classes": "(test image, class) pair"}


def bounds(model: dict, full: dict) -> list[str]:
    """One line per phase: which term of the fitted model carries its projected time."""
    enc = model["encode"]
    parts = defaultdict(float)
    for ds, c in full.items():
        test_x, train_x, _ = encode_rows(ds, c)
        for phase, x in (("test encoding", test_x), ("train views", train_x)):
            for k, v in x.items():
                parts[(phase, "per megapixel (decoding, resizing)" if k.endswith("_px")
                       else "per image (model, transfer, crop)")] += enc.get(k, 0.0) * v
    lines = []
    for phase in ("test encoding", "train views"):
        total = sum(v for (p, _), v in parts.items() if p == phase) or 1.0
        lines.append(f"- {phase}: " + ", ".join(
            f"{100 * v / total:.0f}% {what}" for (p, what), v in sorted(parts.items())
            if p == phase))
    for phase, key in (("fits", "fit"), ("evaluation", "eval")):
        by = defaultdict(lambda: defaultdict(float))
        for c in full.values():
            for x in c["cells"]:
                coef = model[key].get(x["method"], {})
                feats = x["fit"] if key == "fit" else x["eval"]
                for k, v in coef.items():
                    by[x["method"]][k] += v * feats.get(k, 0.0)
        total = sum(sum(d.values()) for d in by.values()) or 1.0
        top = sorted(by.items(), key=lambda kv: -sum(kv[1].values()))[:3]
        lines.append(f"- {phase}: " + "; ".join(
            f"{meth} {100 * sum(d.values()) / total:.0f}% (mostly per "
            f"{FEATURE_NAMES.get(max(d, key=d.get), max(d, key=d.get))})"
            for meth, d in top if sum(d.values()) > 0))
    return lines


def render(res: dict) -> str:
    a = res["args"]
    proj = res["projection"]["phases"]
    goal = 3600.0
    lines = [
        "# The paper grid: measured on generated stand-ins, projected to full scale", "",
        f"Backbone `{a['backbone']}` (random weights), device `{a['device']}`, methods "
        f"`{a['methods']}`, shots {a['shots']}, seeds {a['seeds']}, datasets: "
        f"{', '.join(a['datasets'])}. Overrides for the measured runs: "
        f"{', '.join(a['set'] or []) or 'none'} (the projection uses the real configs); "
        f"joint fits: {a.get('joint_fits') or 'auto (on CUDA only)'}. "
        f"Per-class pools capped at {a['cap']} images; {a['distinct']} distinct JPEGs per class "
        f"(the other files hard links to them).", ""]
    if not res["machine"].get("cuda"):
        lines += ["**No GPU in this session**: these are CPU numbers at reduced scale; "
                  "`bash benchmarks/gpu_check.sh` runs the full-scale grid on a GPU.", ""]
    lines += ["## Measured runs", ""]
    rows = []
    for m in res["runs"]:
        ph, t = m["phases"], m["totals"]
        label = f"{m['scale']:g}" + (" (cut short)" if m["run"].get("cut_short") else "")
        rows.append([label, t["cells"], t["test"], t["eval_union"] + t["epoch_views"]
                     + t["fixed_views"], ph["test encoding"], ph["train views"], ph["fits"],
                     ph["evaluation"], ph["other"], ph.get("startup") or "", ph["wall"]])
    lines += [table(["scale", "cells", "test images", "train encodes", "test enc s",
                     "train views s", "fits s", "eval s", "other s", "of which start-up s",
                     "wall s"], rows), "",
              "Train encodes: eval-transform train/val images + per-epoch crops + fixed views. "
              "Other: wall time outside the four phases (process start, model loading, "
              "planning, writing records); start-up: before bench's own clock starts.", ""]
    if res.get("scaling"):
        lines += ["## Scaling: the smaller scales predict the larger", "",
                  "Each scale predicted from the plan's counts at that scale with the model fitted "
                  "on the smaller scales only; ratio = measured / predicted (1.0 = time grows "
                  "exactly as the counts say). From one scale alone, fixed costs (a dataset's "
                  "set-up, a cell's overhead) cannot be told from per-image or per-step costs; "
                  "from two they can. The measured split of encoding into test and train views "
                  "uses the model fitted on every scale up to that one.", ""]
        rows = []
        for s in res["scaling"]:
            rows += [[s["scale"], ",".join(f"{x:g}" for x in s["fitted_on"]), p,
                      s["predicted"][p], s["measured"][p],
                      s["measured"][p] / s["predicted"][p] if s["predicted"][p] else ""]
                     for p in PHASES + ["total"]]
        lines += [table(["scale", "fitted on", "phase", "predicted s", "measured s", "ratio"],
                        rows), ""]
    ft = res["projection"]["totals"]
    scales = ", ".join(f"{r['scale']:g}" for r in res["runs"])
    lines += [
        "## Projection to full scale", "",
        f"Full-scale plan: {ft['cells']} cells; {ft['test']:,} test images, {ft['eval_union']:,} "
        f"eval-transform train/val images, {ft['epoch_views']:,} per-epoch view encodes, "
        f"{ft['fixed_views']:,} fixed-view encodes ({', '.join(a['project_datasets'])}; shots "
        f"{a['project_shots']}, seeds {a['project_seeds']}). Model fitted on every measured "
        f"scale ({scales}). Methods not measured, so not in the projection: "
        f"{', '.join(a.get('unmeasured') or []) or 'none'}.", "",
        table(["phase", "projected s", "projected h", "share"],
              [[p, proj[p], proj[p] / 3600, f"{100 * proj[p] / proj['total']:.0f}%"]
               for p in PHASES] + [["**total**", proj["total"], proj["total"] / 3600, "100%"]]),
        "",
        f"Against the goal of one hour for the whole grid: {proj['total'] / goal:.2f}x the goal "
        f"on this machine with this backbone.", "",
        "What carries each phase's projected time (the fitted model's terms):", "",
        *res["projection"]["bounds"], "",
        "Fits by method (projected seconds) and the fitted cost per cell and per unit of each "
        "feature (steps, (step, class) pairs, (image, epoch, class) triples; (image, class) "
        "pairs, classes):", "",
        table(["method", "projected s", "fitted coefficients (s)"],
              [[k, v, ", ".join(f"{f} {c:.3g}" for f, c in res["model"]["fit"][k].items() if c)]
               for k, v in sorted(res["projection"]["fits_by_method"].items(),
                                  key=lambda kv: -kv[1])]), "",
        "Encoding (fitted): ms per eval-transform image and per train view, each a fixed part "
        "plus a part per megapixel of the file: "
        + ", ".join(f"{k} {1000 * v:.3g}" for k, v in res["model"]["encode"].items()
                    if not k.startswith("setup_")) + ".", "",
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
    ap.add_argument("--project-datasets", default="all",
                    help="datasets of the full-scale projection (default: the eleven; one not "
                         "measured gets the fitted per-image rates and the mean set-up time)")
    ap.add_argument("--project-shots", default="1,2,4,8,16")
    ap.add_argument("--project-seeds", default="1,2,3")
    ap.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="override for the measured runs (e.g. epochs=2 on a CPU); repeatable")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--joint-fits", default=None,
                    help="bench run --joint-fits (default: bench's, auto: on CUDA, off on a CPU)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the run (CPU)")
    ap.add_argument("--cap", type=int, default=200, help="per-class train/val pool cap")
    ap.add_argument("--distinct", type=int, default=4, help="generated JPEGs per class")
    ap.add_argument("--gen-processes", type=int, default=max(1, (os.cpu_count() or 1) - 1))
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per bench run")
    ap.add_argument("--work", default="/tmp/bench-grid")
    ap.add_argument("--name", default="grid", help="results/<name>.{json,md}")
    ap.add_argument("--out", default=None, help="also copy the result files into this folder")
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
    for flag in ("datasets", "project_datasets"):
        value = getattr(args, flag)
        names = ([d.name for d in GRID] if value == "all"
                 else [d.strip() for d in value.split(",")])
        unknown = [d for d in names if d not in BY_NAME]
        if unknown:
            ap.error(f"--{flag.replace('_', '-')}: unknown {', '.join(unknown)}; choose from "
                     f"{', '.join(BY_NAME)}")
        setattr(args, flag, names)
    try:
        args.shot_list = [int(x) for x in args.shots.split(",")]
        args.seed_list = [int(x) for x in args.seeds.split(",")]
        args.project_shot_list = [int(x) for x in args.project_shots.split(",")]
        args.project_seed_list = [int(x) for x in args.project_seeds.split(",")]
    except ValueError:
        ap.error("--shots/--seeds/--project-shots/--project-seeds: comma lists of integers "
                 "expected")
    return args


def report(args, runs: list, models: list, full: dict, info: dict) -> None:
    """Write grid.{json,md} from the scales measured so far (after each one: a run cut short
    keeps what it measured)."""
    scaling = []
    for i, m in enumerate(runs[1:], 1):  # each scale predicted from the smaller ones only
        counts = {ds: {**d["counts"], "cells": d["cells"]} for ds, d in m["datasets"].items()}
        pred = predict(models[i - 1], counts)["phases"]
        scaling.append({"scale": m["scale"], "fitted_on": [r["scale"] for r in runs[:i]],
                        "predicted": pred, "measured": m["phases"]})
    projection = predict(models[-1], full)
    projection["totals"] = totals(full)
    projection["bounds"] = bounds(models[-1], full)
    projection["datasets_counts"] = {ds: {k: v for k, v in c.items() if k != "cells"}
                                     for ds, c in full.items()}
    res = {"args": dict(vars(args)), "machine": info, "runs": runs, "model": models[-1],
           "scaling": scaling, "projection": projection}
    write_results(args.name, res, render(res), args.out)


def main(argv=None) -> None:
    args = parse(argv)
    from bench.base.errors import BenchError

    try:
        from methods import METHODS

        args.method_names = METHODS.select(args.methods)
        grid_cells(args.datasets[:1], args.method_names, args.shot_list, args.seed_list,
                   args.backbone, args.set)  # bad --set / methods: one line, before any work
    except BenchError as exc:
        print(f"grid.py: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    import torch

    torch.set_num_threads(args.threads)
    info = machine_info()
    work = Path(args.work)
    runs, models, full = [], [], None
    for scale in args.scale_list:
        m = measure(args, scale, work)
        if not m["datasets"]:
            if not runs:
                raise SystemExit("grid.py: no cell finished; nothing to report")
            break
        model = fit_model(runs + [m])
        m["phases"] = measured_phases(m, model)
        m["totals"] = totals({ds: {**d["counts"], "cells": d["cells"]}
                              for ds, d in m["datasets"].items()})
        runs.append(m)
        models.append(model)
        print(f"scale {scale:g}: wall {m['run']['wall_s']:.1f} s, phases "
              + ", ".join(f"{k} {v:.1f}" for k, v in m["phases"].items() if v is not None),
              flush=True)
        if full is None:  # the paper grid with the real configs (no --set), methods that ran
            ran = [x for x in args.method_names if x in model["fit"]]
            args.unmeasured = [x for x in args.method_names if x not in model["fit"]]
            full_cells = grid_cells(args.project_datasets, ran, args.project_shot_list,
                                    args.project_seed_list, args.backbone, None)
            full = {ds: plan_counts(scaled(BY_NAME[ds], 1.0, args.cap), full_cells[ds])
                    for ds in args.project_datasets}
        report(args, runs, models, full, info)
        if m["run"].get("cut_short"):
            break


if __name__ == "__main__":
    main()
