"""The built-in offline demo: a tiny pretrained CLIP and a generated few-shot suite (issue 5).

``demo_defaults()`` returns what `bench run` uses when neither --data-root nor --backbone is
given: {"backbone": name, "pretrained": checkpoint path, "data_root": folder with the demo
datasets in the CoOp split-file layout (generated on first use)}.

- ``datasets_registry._demo.world``: the procedurally generated pretraining world (images +
  captions), which the suite also draws on;
- ``bench.demo.pretrain``: contrastive pretraining of the tiny CLIP (`bench demo pretrain`);
- ``datasets_registry._demo.suite``: the demo few-shot datasets (`bench demo data`), registered in
  ``datasets_registry/demo.py`` with the tag ``demo``.
"""

from __future__ import annotations

from pathlib import Path

from configs import MODEL_DIR

MODEL_NAME = "bench-demo-rn"
CHECKPOINT = MODEL_DIR / f"{MODEL_NAME}.pt"
# The demo's ViT (docs/demo.md), for the methods that tune inside a ViT image tower: `bench run`
# on the demo uses it when such a method is named (`--methods all` keeps the ResNet one).
VIT_MODEL_NAME = "bench-demo-vit"
VIT_CHECKPOINT = MODEL_DIR / f"{VIT_MODEL_NAME}.pt"


def demo_data_root() -> Path:
    """Where the demo datasets live: $BENCH_DEMO_DIR/data-<version>, else ~/.cache/bench/demo/..."""
    from datasets_registry._demo.suite import demo_data_root as root

    return root()


def demo_defaults(generate: bool = True) -> dict:
    """Backbone name, checkpoint path and data root of the demo; generates the data if missing."""
    from datasets_registry._demo.suite import ensure_demo_data

    root = ensure_demo_data() if generate else demo_data_root()
    return {"backbone": MODEL_NAME, "pretrained": str(CHECKPOINT.resolve()), "data_root": root}

