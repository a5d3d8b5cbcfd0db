"""The dataset registry: every module in this package registers its dataset(s) on import."""

from bench.registry import Registry

DATASETS = Registry("dataset", "datasets_registry")

# Tags: "coop" = the eleven datasets of the CoOp protocol (what `--datasets all` means with a data
# root); "demo" = the built-in offline demo suite (the default without a data root).
COOP_TAG = "coop"
DEMO_TAG = "demo"
