"""Sizes of per-image predictions files (results/predictions.py): each logits option, stored and
deflate-compressed, for the demo suite, the paper grid's eleven datasets and ImageNet's 50,000 x
1,000 test set. Sizes, not timings: the files are built in memory and measured; nothing here
depends on the machine.

Logits are CLIP-like (100 x cosine: a N(0.2, 0.02) cosine per class, the true class 0.035
higher), stand-ins for the real ones: float16 and float32 mantissas of such values are close to
random bits, so compression saves little on them, whatever the method. ``--output OUT`` instead
measures real prediction files already written under an output folder.

    .venv/bin/python benchmarks/prediction_sizes.py            # -> benchmarks/results/prediction_sizes.{json,md}
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from grid_data import GRID  # noqa: E402
from results.predictions import encode, to_bytes  # noqa: E402

OPTIONS = ("none", "top5", "full16", "full32")
RESULTS = ROOT / "benchmarks" / "results"


def clip_like(n: int, classes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    logits = 100 * (0.2 + 0.02 * rng.standard_normal((n, classes), dtype=np.float32))
    logits[np.arange(n), labels] += 100 * 0.035
    return logits, labels


def measure(n: int, classes: int) -> dict:
    logits, labels = clip_like(n, classes)
    out = {}
    for opt in OPTIONS:
        arrays, meta = encode({"test": (logits, labels)}, opt)
        out[opt] = {"stored": len(to_bytes(arrays, meta, compress=False)),
                    "deflate": len(to_bytes(arrays, meta, compress=True))}
    return out


def demo_sizes() -> list[tuple[str, int, int]]:
    from datasets_registry._demo.suite import SUITE, in_memory_split

    return [(name, len(in_memory_split(name)[1]), len(spec.classnames))
            for name, spec in SUITE.items()]


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000


def measure_output(output: Path) -> int:
    """Count and size of the real predictions files under ``output``, per dataset."""
    per: dict[str, list[int]] = {}
    for f in sorted((output / "results").rglob("*.pred.npz")):
        per.setdefault(f.relative_to(output / "results").parts[1], []).append(f.stat().st_size)
    if not per:
        print(f"no predictions files under {output}/results", file=sys.stderr)
        return 2
    for ds, sizes in per.items():
        print(f"{ds}: {len(sizes)} files, {human(sum(sizes))} in all, {human(sum(sizes) / len(sizes))}"
              f" each on average ({human(min(sizes))}-{human(max(sizes))})")
    total = [x for v in per.values() for x in v]
    print(f"all: {len(total)} files, {human(sum(total))}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-demo", action="store_true", help="skip the demo suite")
    ap.add_argument("--methods", type=int, default=15, help="methods in the projected grid")
    ap.add_argument("--cells", type=int, default=15, help="shots x seeds per method and dataset")
    ap.add_argument("--output", type=Path, default=None,
                    help="measure the predictions files under this `bench run` output instead")
    args = ap.parse_args()
    if args.output is not None:
        return measure_output(args.output)

    rows = {}
    suites = {"grid": [(d.name, d.test, d.classes) for d in GRID]}
    if not args.no_demo:
        suites["demo"] = demo_sizes()
    for suite, items in suites.items():
        for name, n, classes in items:
            rows[f"{suite}/{name}"] = {"n": n, "classes": classes, "sizes": measure(n, classes)}
            print(f"{suite}/{name}: {n} x {classes}: " + ", ".join(
                f"{o} {human(s['deflate'])}" for o, s in rows[f"{suite}/{name}"]["sizes"].items()),
                flush=True)

    def total(suite, opt, kind):
        return sum(r["sizes"][opt][kind] for k, r in rows.items() if k.startswith(suite + "/"))

    summary = {s: {o: {k: total(s, o, k) for k in ("stored", "deflate")} for o in OPTIONS}
               for s in suites}
    grid_factor = args.methods * args.cells
    data = {"rows": rows, "per_cell_set": summary, "grid_factor": grid_factor,
            "note": "CLIP-like synthetic logits; sizes in bytes"}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "prediction_sizes.json").write_text(json.dumps(data, indent=1) + "\n")

    md = ["# Predictions file sizes (results/predictions.py)", "",
          "One file per cell; CLIP-like synthetic logits (see the script). `stored` = npz without "
          "compression, `deflate` = the default (compressed npz).", "",
          "| test set | images x classes | " + " | ".join(
              f"{o} stored | {o} deflate" for o in OPTIONS) + " |",
          "|---|---|" + "---|---|" * len(OPTIONS)]
    for key, r in rows.items():
        md.append(f"| {key} | {r['n']:,} x {r['classes']:,} | " + " | ".join(
            f"{human(r['sizes'][o]['stored'])} | {human(r['sizes'][o]['deflate'])}"
            for o in OPTIONS) + " |")
    md += ["", f"Per set of cells (one method, one shot count, one seed, every dataset of the "
               f"suite), and the paper grid ({args.methods} methods x {args.cells} shot-seed "
               f"cells = x{grid_factor}):", "",
           "| suite | option | stored | deflate | grid, deflate |", "|---|---|---|---|---|"]
    for s, per in summary.items():
        for o in OPTIONS:
            md.append(f"| {s} | {o} | {human(per[o]['stored'])} | {human(per[o]['deflate'])} | "
                      f"{human(per[o]['deflate'] * grid_factor) if s == 'grid' else ''} |")
    (RESULTS / "prediction_sizes.md").write_text("\n".join(md) + "\n")
    print("\n".join(md[-(len(summary) * len(OPTIONS) + 2):]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
