"""What a `bench run` sweeps over: CLI flags merged over an optional sweep YAML (`--config`).

Sweep YAML keys (all optional; a CLI flag given explicitly wins over the file)::

    backbone: RN50-quickgelu       # or backbones: [{backbone: RN50-quickgelu, pretrained: openai}, ...]
    pretrained: openai
    datasets: all                  # list or comma string; names and patterns
    methods: [zero_shot, 'clip_adapter*']
    shots: [1, 2, 4, 8, 16]
    seeds: [1, 2, 3]
    data_root: /data/coop
    output: runs/paper
    cache_dir: runs/paper/cache
    device: auto
    set: {coop.n_ctx: 4, lr: 0.001}    # or a list of "key=value"
    launcher: inprocess | local | slurm
    group_by: dataset
    batch_size: 64
    workers: 4
    slurm: {partition: gpu, time: 240, ...}   # see docs/slurm.md
    protocol: fewshot | base2novel | domain | crossdataset   # docs/protocol.md §12
    source: imagenet               # domain / crossdataset: the dataset trained on
    decode: cpu | gpu              # where images are decoded and augmented (docs/protocol.md §9)
    fit_threads: 1                 # CPU threads for fitting (bench/threads.py; 0 = torch's default)
    joint_fits: auto               # auto | on | off | N: cells differing in shots fitted together (bench/joint.py)
    determinism: portable          # portable | native | off: the reproducibility policy (bench/base/determinism.py)
"""

from __future__ import annotations

from pathlib import Path

from bench.config import load_yaml
from bench.base.errors import UsageError, did_you_mean

DEFAULT_SHOTS = [1, 2, 4, 8, 16]
DEFAULT_SEEDS = [1, 2, 3]
DEFAULT_FIT_THREADS = 1  # CPU threads for fitting a cell (bench/threads.py says why one)
PROTOCOL_BACKBONE = ("RN50-quickgelu", "openai")
_EXAMPLES = {"shots": "1,2,4,8,16", "seeds": "1,2,3"}  # shown in the messages of each flag

SWEEP_KEYS = {
    "backbone": str, "pretrained": (str, type(None)), "backbones": list, "datasets": (str, list),
    "methods": (str, list), "shots": (int, str, list), "seeds": (int, str, list),
    "data_root": str, "output": str, "cache_dir": str, "device": str, "set": (dict, list),
    "launcher": str, "group_by": str, "batch_size": int, "workers": int, "cache_dtype": str,
    "autocast": (bool, str), "slurm": dict, "protocol": str, "source": str, "decode": str, "fit_threads": int,
    "joint_fits": (str, int, bool), "determinism": str,
}


class Sweep(dict):
    """A sweep file's keys and values, and the file they came from (None: no ``--config``)."""

    path: str | None = None


def load_sweep(path: str | None) -> Sweep:
    sweep = Sweep()
    if not path:
        return sweep
    data = load_yaml(Path(path), "sweep file")
    if not data:  # a run would silently take the full default grid
        raise UsageError(f"sweep file {path} is empty (no keys): give at least the grid's "
                         f"methods or datasets, e.g. 'methods: [zero_shot, coop]'; known keys: "
                         f"{', '.join(sorted(SWEEP_KEYS))}")
    for key, value in data.items():
        if key not in SWEEP_KEYS:
            hint = did_you_mean(key, SWEEP_KEYS)
            raise UsageError(f"sweep file {path}: unknown key {key!r}.{hint} Known keys:"
                             f" {', '.join(sorted(SWEEP_KEYS))}")
        types = SWEEP_KEYS[key]
        if not isinstance(value, types) or (isinstance(value, bool) and types is int):
            want = " or ".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
            raise UsageError(f"sweep file {path}: {key!r} must be {want}, "
                             f"not {type(value).__name__} ({value!r})")
    sweep.update(data)
    sweep.path = str(path)
    return sweep


def named(cli_value, sweep: dict, key: str, flag: str) -> str:
    """How a message names the value ``pick`` takes: the flag when it was given on the command
    line (or defaults), ``sweep file PATH: key`` when it came from the sweep file."""
    path = getattr(sweep, "path", None)
    if cli_value is None and path and key in sweep:
        return f"sweep file {path}: {key}"
    return flag


# Seeds seed numpy's generator too, whose seeds are 32-bit (np.random.seed(2**32) raises).
MAX_SEED = 2**32 - 1
MAX_SEED_WHY = " (a seed also seeds numpy's generator, which takes 32-bit seeds)"


def parse_int_list(value, flag: str, maximum: int | None = None, why: str = "") -> list[int]:
    """'1,2,4' / 4 / [1, 2] -> [1, 2, 4]; positive, unique, at most ``maximum`` (``why``: the
    reason, for the message); otherwise a UsageError. ``flag`` names the value in messages: ``--seeds``, or ``sweep file F: seeds``
    (:func:`named`), each with an example written the way it is given there."""
    if isinstance(value, int) and not isinstance(value, bool):
        items = [value]
    elif isinstance(value, list):
        items = value
    else:
        items = [s.strip() for s in str(value).split(",")]
        if items == [""]:
            items = []
    key = flag.rpartition(" ")[2].lstrip("-")
    example = _EXAMPLES.get(key, "1,2,3")
    example = (f"{key}: [{example.replace(',', ', ')}]" if flag.startswith("sweep file")
               else f"{flag} {example}")
    if not items:
        raise UsageError(f"{flag} is empty: give a comma-separated list of positive integers, "
                         f"e.g. {example}")
    if "" in items:
        raise UsageError(f"{flag} {value!r}: item {items.index('') + 1} is empty (two commas in "
                         f"a row, or a comma at an end); give e.g. {example}")
    out = []
    for item in items:
        try:
            n = int(item)
            if isinstance(item, float) or isinstance(item, bool) or str(n) != str(item).strip():
                raise ValueError
        except (TypeError, ValueError):
            raise UsageError(f"{flag}: {item!r} is not an integer; give a comma-separated list "
                             f"of positive integers, e.g. {example}") from None
        if n < 1:
            raise UsageError(f"{flag}: {n} must be >= 1")
        if maximum is not None and n > maximum:
            raise UsageError(f"{flag}: {n} is too large: at most {maximum}{why}; give e.g. "
                             f"{example}")
        if n in out:
            raise UsageError(f"{flag}: {n} is listed twice")
        out.append(n)
    return out


def overrides_list(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, dict):
        return [f"{k}={v}" for k, v in value.items()]
    return [str(v) for v in value]


def pick(cli_value, sweep: dict, key: str, default=None):
    """An explicit CLI value wins, then the sweep file, then the default."""
    if cli_value is not None:
        return cli_value
    return sweep.get(key, default)
