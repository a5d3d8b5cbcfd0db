"""CoCoOp: seconds per training step against classes C and batch B, and the batched text pass
against the released code's per-image loop.

    .venv/bin/python benchmarks/cocoop_cost.py [--backbone bench-demo-rn] [--classes 10,100]
        [--batches 1,4] [--steps 5]

Rows ``step``: the real ``cocoop`` training step (methods/cocoop.py, default config: sequence
cut, all B x C prompts in one pass) timed inside ``fit`` on random image features, median of
``--steps`` steps after a warm-up step; ``no_shared_prefix`` runs every prompt whole ([SOS] +
the image's context once per (image, class) prompt, not once per image); ``full_sequence`` also
runs every context position (the release's encoder input). Rows ``loop``: forward + backward of
the text features of B images, batched (``CoCoOpModel.text``) against a Python loop over the
images through CoOp's ``PromptEncoder`` (the structure of trainers/cocoop.py's
CustomCLIP.forward).
"""

from __future__ import annotations

import argparse
import time

from _common import machine_info, machine_md, median, table, write_results


SETTINGS = {
    "default": {},
    "no_shared_prefix": {"shared_prefix": False},  # every (image, class) prompt run whole
    "full_sequence": {"cut_sequence": False, "shared_prefix": False},  # the release's input
}


def _task(bb, classes: int, batch: int, steps: int, overrides: dict):
    import torch

    from bench.config import MethodSpec, resolve_method_config
    from bench.views import CachedViews
    from methods.base import FeatureSplit, Task

    _, cfg = resolve_method_config(MethodSpec("cocoop"), "bench", 16)
    cfg = {**cfg, "epochs": 1, "warmup_epochs": 0, "batch_size": batch, **overrides}
    n = batch * (steps + 1)
    d = int(bb.model.visual.output_dim)
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(n, d, generator=g)
    labels = torch.randint(classes, (n,), generator=g)
    return Task(dataset="bench", classnames=[f"class {i} thing" for i in range(classes)],
                templates=["a photo of a {}."], shots=16, seed=1, config=cfg,
                device=torch.device("cpu"), train=FeatureSplit(feats, labels),
                val=FeatureSplit(feats[:0], labels[:0]), train_views=CachedViews(feats[None], 1),
                backbone=bb)


def step_time(bb, classes: int, batch: int, steps: int, overrides: dict) -> dict:
    import methods.cocoop as cocoop

    times: list[float] = []
    orig = cocoop.train

    def timed_train(task_, params, step, opt, scaler=None):
        def tstep(x, y, scale):
            t = time.perf_counter()
            loss = step(x, y, scale)
            times.append(time.perf_counter() - t)
            return loss
        return orig(task_, params, tstep, opt, scaler)

    cocoop.train = timed_train
    try:
        fitted = cocoop.fit(_task(bb, classes, batch, steps, overrides))
    finally:
        cocoop.train = orig
    return {"step_s": median(times[1:]), "seq_len": fitted.info["seq_len"],
            "shared_prefix_len": fitted.info["shared_prefix_len"],
            "precision": fitted.info["precision"]}


def loop_vs_batched(bb, classes: int, batch: int, steps: int) -> dict:
    import torch

    from methods.base import normalize
    from methods.cocoop import CoCoOpModel, RowPromptEncoder, meta_net
    from methods.coop import PromptEncoder, build_layout, text_tower

    tower = text_tower(bb.model)
    names = [f"class {i} thing" for i in range(classes)]
    layout = build_layout(bb.tokenizer, names, 4, "end", bb.context_length)
    kw = dict(dtype=torch.float32, cut_sequence=True, grad_checkpointing=False,
              device=torch.device("cpu"))
    W, D = tower.token_embedding.weight.shape[1], int(bb.model.visual.output_dim)
    model = CoCoOpModel(0.02 * torch.randn(4, W), meta_net(D, W, 16),
                        RowPromptEncoder(tower, layout, **kw), 4096)
    coop = PromptEncoder(tower, layout, **kw)
    img = normalize(torch.randn(batch, D))
    every = torch.arange(classes)

    def batched():
        model.text(img, classes).sum().backward()

    def loop():
        out = [coop(model.ctx + model.meta(img[b:b + 1])[0], every) for b in range(batch)]
        torch.stack(out).sum().backward()

    res = {}
    for name, fn in (("batched_s", batched), ("loop_s", loop)):
        ts = []
        for _ in range(steps + 1):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
        res[name] = median(ts[1:])
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="bench-demo-rn")
    ap.add_argument("--classes", default="10,100")
    ap.add_argument("--batches", default="1,4")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-loop", action="store_true", help="skip the loop-vs-batched rows")
    ap.add_argument("--name", default="cocoop_cost")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from bench.backbone import Backbone

    info = machine_info()
    bb = Backbone(args.backbone, "none", torch.device("cpu"))
    rows = []
    for c in [int(x) for x in args.classes.split(",")]:
        for b in [int(x) for x in args.batches.split(",")]:
            for setting, o in SETTINGS.items():
                r = {"kind": "step", "classes": c, "batch": b, "setting": setting,
                     **step_time(bb, c, b, args.steps, o)}
                rows.append(r)
                print(r, flush=True)
            if not args.no_loop and b > 1:
                r = {"kind": "loop", "classes": c, "batch": b,
                     **loop_vs_batched(bb, c, b, args.steps)}
                rows.append(r)
                print(r, flush=True)
    steps_md = table(["classes", "batch", "setting", "seq len", "shared prefix", "precision",
                      "step s (median)"],
                     [[r["classes"], r["batch"], r["setting"], r["seq_len"],
                       r.get("shared_prefix_len", ""), r["precision"], r["step_s"]]
                      for r in rows if r["kind"] == "step"])
    loop_md = table(["classes", "batch", "batched fwd+bwd s", "per-image loop s", "speed-up"],
                    [[r["classes"], r["batch"], r["batched_s"], r["loop_s"],
                      round(r["loop_s"] / r["batched_s"], 2)] for r in rows if r["kind"] == "loop"])
    md = ["# CoCoOp: seconds per training step", "",
          f"Backbone `{args.backbone}` (its architecture, random init: the cost is the same), "
          f"CPU, {args.threads} torch thread(s), median of {args.steps} steps after a warm-up "
          "step, random image features.", "", steps_md, "",
          "Text features of B images (forward + backward), batched vs the release's loop:", "",
          loop_md, "", "## Machine", machine_md(info)]
    write_results(args.name, {"machine": info, "args": vars(args), "rows": rows}, "\n".join(md))


if __name__ == "__main__":
    main()
