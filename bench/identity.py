"""What a result is made of: the fingerprint of a cell's inputs, computed at plan time.

``attach_inputs(cells, ...)`` sets ``cell["inputs"]`` on every cell::

    split     hash of the dataset's lists as loaded (class names; train/val/test items): the
              split file, or the folder listing for ImageNet
    test      hash of the test images' file identities (size + mtime_ns, os.stat only)
    subset    hash of the cell's few-shot train/val items (its sampler, shots and seed) and of
              their files' identities
    weights   the backbone weights' fingerprint (tag, or a content hash of a local file)
    features  how image features are made: device type, precision, cache storage dtype, and
              ``decode: gpu`` where images are decoded on the device (bench.gpu_images)
    views     the train views the cell's method gets (bench.views.resolve_views)
    targets   (domain / cross-dataset protocols) per target dataset: its split and test hashes
    determinism  the reproducibility policy the cell runs under (bench.base.determinism): the same
              cell under another policy may give other bits, so it is another result

The resolved method config is part of the cell itself. A done record counts as done only if its
``inputs`` equal the cell's (results.store.ResultStore.exists); otherwise the cell runs again and
the old record is moved aside. Only ``os.stat`` touches the images: a warm rerun of the demo
stats each image once.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from bench.base.errors import BenchError, UsageError
from bench.views import resolve_views
from datasets_registry.fewshot import SAMPLERS


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def sampler_of(config: dict) -> str:
    name = config.get("fewshot_sampler", "dassl")
    if name not in SAMPLERS:
        raise UsageError(f"fewshot_sampler must be one of {', '.join(SAMPLERS)}, not {name!r}")
    return name


def draw_subset(splits, shots: int, seed: int, sampler: str = "dassl"):
    return SAMPLERS[sampler](splits.train, splits.val, shots, seed, len(splits.classnames))


class _DatasetInputs:
    """Fingerprints of one dataset's lists and images, computed once per plan."""

    def __init__(self, dataset, data_root: str):
        from bench.features import file_identity

        self._ident = file_identity
        self.problem = None
        try:
            self.splits = dataset.load(Path(data_root))
        except (BenchError, OSError) as exc:  # unreadable data: the run reports it per dataset
            self.problem = str(exc)
            self.splits = None
            self.split = self.test = None
            return
        _check_faults(dataset, self.splits, data_root)
        s = self.splits
        self.split = _hash({"classnames": s.classnames, "train": s.train, "val": s.val,
                            "test": s.test})
        self.test = self._files([rel for rel, _ in s.test])
        self._subsets: dict = {}

    def _files(self, relpaths) -> str:
        return _hash([(rel, self._ident(self.splits.image_dir / rel)) for rel in relpaths])

    def subset(self, shots: int, seed: int, sampler: str) -> str | None:
        if self.splits is None:
            return None
        key = (shots, seed, sampler)
        if key not in self._subsets:
            sub = draw_subset(self.splits, shots, seed, sampler)
            items = [rel for rel, _ in sub.train] + [rel for rel, _ in sub.val]
            self._subsets[key] = _hash({"sampler": sampler, "train": sub.train, "val": sub.val,
                                        "files": self._files(items)})
        return self._subsets[key]


def _check_faults(dataset, splits, data_root: str) -> None:
    """Refuse a dataset whose lists make its results wrong (an empty split, test leakage, an
    image with two labels); warn, once, about those bench copes with (datasets_registry.faults)."""
    import warnings

    from datasets_registry.faults import split_faults

    faults = split_faults(splits)
    errors = faults.errors()
    if errors:
        more = f" (and {len(errors) - 1} more fault(s))" if len(errors) > 1 else ""
        raise UsageError(f"{dataset.display_name}: {errors[0]}{more}; nothing was run: fix its "
                         f"lists (`bench data check --data-root {data_root} --datasets "
                         f"{dataset.name}` shows every fault), or leave {dataset.name} out of "
                         f"--datasets")
    for line in faults.warnings():
        warnings.warn(f"{dataset.display_name}: {line}", stacklevel=2)


def feature_inputs(device: str, options: dict) -> dict:
    """How features will be made, resolved the way the runner resolves them."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device).type
    autocast = options.get("autocast", "auto")
    amp = dev == "cuda" and (autocast in (True, "on") or autocast == "auto")
    out = {"device": dev, "precision": "amp" if amp else "fp32",
           "cache_dtype": options.get("cache_dtype", "float32")}
    decode = options.get("decode", "cpu")
    if decode != "cpu":  # absent for cpu, so the results from before --decode stay done
        out["decode"] = decode
    return out


def attach_inputs(cells: list[dict], data_root: str, device: str, options: dict) -> None:
    """Set ``cell["inputs"]`` on every cell (see the module docstring)."""
    from bench.backbone import resolve_pretrained, weights_fingerprint
    from datasets_registry import DATASETS
    from methods import METHODS

    from bench.base.determinism import requested

    features = feature_inputs(device, options or {})
    policy = (options or {}).get("determinism") or requested()
    datasets: dict[str, _DatasetInputs] = {}
    weights: dict[tuple, str] = {}
    for cell in cells:
        name = cell["dataset"]
        if name not in datasets:
            datasets[name] = _DatasetInputs(DATASETS.get(name), data_root)
        ds = datasets[name]
        wkey = (cell["backbone"], cell["pretrained"])
        if wkey not in weights:
            try:
                weights[wkey] = weights_fingerprint(cell["backbone"], resolve_pretrained(*wkey))
            except UsageError:  # reported by `bench run` before planning; the cell then fails
                weights[wkey] = f"{cell['backbone']}:unresolved:{cell['pretrained']}"
        spec = METHODS.entry(cell["method"]).extra.get("views")
        cell["inputs"] = {
            "split": ds.split, "test": ds.test,
            "subset": ds.subset(cell["shots"], cell["seed"], sampler_of(cell["config"])),
            "weights": weights[wkey], "features": features,
            "views": resolve_views(spec, cell["config"], cell["seed"]),
            "determinism": policy,
        }
        if cell.get("targets"):
            if ds.problem:  # every cell of a transfer protocol trains on it: refuse the run
                raise UsageError(f"source dataset {name} cannot be read: {ds.problem} (check it "
                                 f"with `bench data check --datasets {name}`, or choose another "
                                 f"with --source)")
            for t in cell["targets"]:
                if t not in datasets:
                    datasets[t] = _DatasetInputs(DATASETS.get(t), data_root)
                if datasets[t].problem:  # every cell would evaluate on it: refuse the run
                    raise UsageError(f"target dataset {t} cannot be read: {datasets[t].problem}"
                                     f" (check it with `bench data check --datasets {t}`, or "
                                     f"leave it out of --datasets)")
            cell["inputs"]["targets"] = {t: {"split": datasets[t].split, "test": datasets[t].test}
                                         for t in cell["targets"]}
