"""The dataset registry: every module in this package registers its dataset(s) on import."""

from bench.base.registry import Registry

DATASETS = Registry("dataset", "datasets_registry")

# Tags: "coop" = the eleven datasets of the CoOp protocol (what `--datasets all` means with a data
# root); "demo" = the built-in offline demo suite (the default without a data root);
# "domain_target" = ImageNet-V2, -Sketch, -A and -R, evaluation-only targets of the
# domain-generalization protocol (never selected by `--datasets all`).
COOP_TAG = "coop"
DEMO_TAG = "demo"
DOMAIN_TAG = "domain_target"


def register(dataset, *, order: float, tags: tuple[str, ...]):
    """Register a dataset object under its own name, display name and description."""
    return DATASETS.add(dataset.name, dataset, display_name=dataset.display_name,
                        description=dataset.description, order=order, tags=tags)
