"""CoOp: time per training step and peak memory against the number of classes, for the default
settings and the memory-saving ones (docs/protocol.md §9: the text encoder runs over every class prompt
every step, forward and backward).

    .venv/bin/python benchmarks/coop_memory.py [--classes 10,100,1000] [--backbone bench-bench-vit64]

Each (classes, setting) runs in its own subprocess (peak memory is per process): a CoOp task with
random 32-row batches of image features, ``--steps`` timed steps after one warm-up step. Peak
memory: on CUDA ``torch.cuda.max_memory_allocated`` during training; on CPU the growth of the
process's peak resident set (ru_maxrss) over its value after setup.

Settings: ``default`` (configs/methods/coop.yaml: the sequence cut after the longest prompt's
EOT, all classes at once), ``full_sequence`` (cut_sequence false: all context_length tokens, as
the original code runs), ``memory_saving`` (class_chunk 100 + grad_checkpointing),
``no_shared_prefix`` (the default without running the prompts' common beginning once:
methods/_shared_prefix.py), ``float_mask`` (the default settings with the text blocks called
without the ``is_causal`` hint, as open_clip calls them: the float mask added to every attention
score instead of the causal kernels of ``scaled_dot_product_attention``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from _common import machine_info, machine_md, median, table, write_results

SETTINGS = {
    "default": {},
    "full_sequence": {"cut_sequence": False},
    "memory_saving": {"class_chunk": 100, "grad_checkpointing": True},
    "float_mask": {},
    "no_shared_prefix": {"shared_prefix": False},
}


def class_names(kind: str, classes: int) -> list[str]:
    """``numbered``: "class N thing" (their common first word joins the shared prefix);
    ``imagenet``: real names, those of the grid benchmark's stand-ins (grid_data.py)."""
    if kind == "imagenet":
        from grid_data import class_names as real_names

        return real_names(classes)
    return [f"class {i} thing" for i in range(classes)]


def _float_mask_blocks(coop) -> None:
    """The A side of the causal-kernel comparison: every text block called as open_clip calls it,
    the causal mask added to the scores as a float tensor (no ``is_causal`` hint)."""
    coop._text_block = lambda block, x, mask: block(x, attn_mask=mask)


def one(backbone_name: str, classes: int, setting: str, steps: int, device: str,
        precision: str, threads: int, names: str = "numbered") -> dict:
    import resource

    import torch

    torch.set_num_threads(threads)
    import methods.coop as coop
    from bench.backbone import Backbone
    from bench.config import MethodSpec, resolve_method_config
    from bench.views import CachedViews
    from methods.base import FeatureSplit, Task

    dev = torch.device(device)
    bb = Backbone(backbone_name, None, dev)
    _, cfg = resolve_method_config(MethodSpec("coop"), "bench", 16)
    if setting == "float_mask":
        _float_mask_blocks(coop)
    cfg = {**cfg, **SETTINGS[setting], "epochs": 1, "warmup_epochs": 0, "precision": precision}
    n = 32 * (steps + 1)
    d = bb.model.text_projection.shape[1] if not isinstance(bb.model.text_projection, torch.nn.Module) \
        else bb.model.text_projection.out_features
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(n, d, generator=g).to(dev)
    labels = torch.randint(classes, (n,), generator=g).to(dev)
    task = Task(dataset="bench", classnames=class_names(names, classes),
                templates=["a photo of a {}."], shots=16, seed=1, config=cfg, device=dev,
                train=FeatureSplit(feats, labels), val=FeatureSplit(feats[:0], labels[:0]),
                train_views=CachedViews(feats[None], 1), backbone=bb)
    times: list[float] = []
    orig_train = coop.train

    def timed_train(task_, params, step, opt, scaler=None):
        def tstep(x, y, scale):
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            loss = step(x, y, scale)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
            return loss
        return orig_train(task_, params, tstep, opt, scaler)

    coop.train = timed_train
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    fitted = coop.fit(task)
    out = {"classes": classes, "setting": setting, "steps_timed": len(times) - 1,
           "step_s": median(times[1:]), "step_s_all": times, "seq_len": fitted.info["seq_len"],
           "shared_prefix_len": fitted.info["shared_prefix_len"], "names": names,
           "precision": fitted.info["precision"], "device": device, "backbone": backbone_name}
    if dev.type == "cuda":
        out["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
        out["peak_over_setup_mib"] = (torch.cuda.max_memory_allocated() - base) / 2**20
        out["memory_kind"] = "cuda max_memory_allocated"
    else:
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        out["peak_mib"] = rss1
        out["peak_over_setup_mib"] = rss1 - rss0
        out["memory_kind"] = "peak RSS (growth over setup)"
    return out


def sweep(backbone: str, classes: list[int], settings: list[str], steps: int, device: str,
          precision: str, threads: int, timeout: float = 1800, names: str = "numbered"
          ) -> list[dict]:
    rows = []
    for c in classes:
        for s in settings:
            cmd = [sys.executable, __file__, "--one", "--backbone", backbone, "--classes", str(c),
                   "--settings", s, "--steps", str(steps), "--device", device,
                   "--precision", precision, "--threads", str(threads), "--names", names]
            try:
                p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
            except subprocess.TimeoutExpired:
                rows.append({"classes": c, "setting": s, "error": f"timeout {timeout}s"})
                continue
            lines = [l for l in p.stdout.splitlines() if l.startswith("RESULT ")]
            if p.returncode != 0 or not lines:
                err = (p.stderr.strip().splitlines() or ["?"])[-1]
                rows.append({"classes": c, "setting": s, "error": err[:300]})
            else:
                rows.append(json.loads(lines[-1][7:]))
            print(rows[-1] if "error" in rows[-1] else
                  f"{c} classes {s}: {rows[-1]['step_s']:.3f} s/step, "
                  f"{rows[-1]['peak_over_setup_mib']:.0f} MiB", flush=True)
    return rows


def render_rows(rows):
    return table(["classes", "setting", "seq len", "shared prefix", "precision",
                  "step s (median)", "peak MiB", "peak over setup MiB"],
                 [[r["classes"], r["setting"], r.get("seq_len", ""),
                   r.get("shared_prefix_len", ""), r.get("precision", ""),
                   r.get("step_s", r.get("error", "")), r.get("peak_mib", ""),
                   r.get("peak_over_setup_mib", "")] for r in rows])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="bench-bench-vit64")
    ap.add_argument("--classes", default="10,100,1000")
    ap.add_argument("--settings", default="default,full_sequence,memory_saving")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--names", choices=["numbered", "imagenet"], default="numbered",
                    help="class names of the synthetic task (see class_names)")
    ap.add_argument("--name", default="coop_memory")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        r = one(args.backbone, int(args.classes), args.settings, args.steps, args.device,
                args.precision, args.threads, args.names)
        print("RESULT " + json.dumps(r))
        return
    import torch

    torch.set_num_threads(args.threads)
    info = machine_info()
    rows = sweep(args.backbone, [int(c) for c in args.classes.split(",")],
                 args.settings.split(","), args.steps, args.device, args.precision, args.threads,
                 names=args.names)
    md = ["# CoOp: step time and peak memory against the number of classes", "",
          f"Backbone `{args.backbone}` (random init; its text tower), device {args.device}, "
          f"{args.threads} torch thread(s), batch 32, median of {args.steps} steps after a "
          "warm-up step, one subprocess per row. Settings: default (sequence cut after the "
          "longest prompt's EOT), full_sequence (all context tokens, as the original code), "
          "memory_saving (class_chunk 100 + grad_checkpointing), float_mask (default without the causal "
          "attention kernels: the mask added as floats, as open_clip's block does), no_shared_prefix "
          "(default without running the common [SOS] + context positions once). "
          f"Class names: {args.names}. Memory on CPU: the growth of "
          "the peak resident set over setup; on CUDA: max_memory_allocated.", "",
          render_rows(rows), "", "## Machine", machine_md(info)]
    write_results(args.name, {"machine": info, "args": vars(args), "rows": rows}, "\n".join(md))


if __name__ == "__main__":
    main()
