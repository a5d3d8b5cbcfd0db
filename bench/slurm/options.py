"""SLURM options: the `bench run` flags and the sweep YAML's ``slurm:`` mapping, merged
(flags win), validated and normalised by ``slurm_options``."""

from __future__ import annotations

import argparse
import re
import shlex

from bench.base.errors import UsageError, did_you_mean

DEFAULT_TIME = "4:00:00"  # submitit's own default (5 minutes) is too short for a real job

# key in the YAML `slurm:` mapping -> (what it must be, CLI flag)
SLURM_YAML_KEYS = {
    "partition": ("a partition name", "--partition"),
    "account": ("an account name", "--account"),
    "qos": ("a QOS name", "--qos"),
    "time": ("a time limit: minutes, or [D-]HH:MM[:SS], e.g. 90 or 2:00:00", "--time"),
    "gpus_per_job": ("a whole number of GPUs (0 or more)", "--gpus-per-job"),
    "cpus_per_job": ("a whole number of CPUs (1 or more)", "--cpus-per-job"),
    "mem": ("a memory size such as 16G or 4000M", "--mem"),
    "array_parallelism": ("the most array tasks running at once (1 or more)",
                          "--array-parallelism"),
    "sbatch_args": ("a list of extra sbatch arguments such as --constraint=a100",
                    "--sbatch-arg"),
    "submitit_dir": ("a folder for submitit's logs and pickles", "--submitit-dir"),
    "max_requeue": ("how often a task that hits its time limit is requeued (0 or more)",
                    "--max-requeue"),
}

# sbatch options submitit writes itself; --sbatch-arg must not set them behind its back
_RESERVED_SBATCH = {"array", "output", "error", "open-mode", "signal", "job-name", "wckey",
                    "parsable"}


class _NoWait(argparse.Action):
    """``--no-wait`` sets both ``args.no_wait`` (True) and ``args.wait`` (False)."""

    def __call__(self, parser, namespace, values, option_string=None):
        namespace.no_wait = True
        namespace.wait = False


def add_slurm_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the SLURM / submitit option group to the `run` parser."""
    g = parser.add_argument_group(
        "SLURM and submitit (--launcher slurm|local; also settable under `slurm:` in the sweep "
        "YAML, flags win)")
    g.add_argument("--partition", help="SLURM partition")
    g.add_argument("--account", help="SLURM account to charge")
    g.add_argument("--qos", help="SLURM quality of service")
    g.add_argument("--time", help=f"time limit per array task: minutes or [D-]HH:MM[:SS] "
                                  f"(default {DEFAULT_TIME}); a task that reaches it is "
                                  f"checkpointed, requeued and resumes")
    g.add_argument("--gpus-per-job", type=int, metavar="N", help="GPUs per array task (default 0)")
    g.add_argument("--cpus-per-job", type=int, metavar="N", help="CPUs per array task")
    g.add_argument("--mem", help="memory per array task, e.g. 32G")
    g.add_argument("--array-parallelism", type=int, metavar="N",
                   help="most array tasks running at once (SLURM's %%N; default: all)")
    g.add_argument("--sbatch-arg", dest="sbatch_args", action="append", metavar="ARG",
                   help="extra sbatch argument, e.g. --sbatch-arg=--constraint=a100; repeatable")
    g.add_argument("--submitit-dir", metavar="DIR",
                   help="folder for submitit's logs and pickles (default OUTPUT/sweep/submitit)")
    g.add_argument("--max-requeue", type=int, metavar="N",
                   help="requeues allowed after hitting the time limit (default 3; preemptions "
                        "are always requeued)")
    g.add_argument("--no-wait", nargs=0, action=_NoWait,
                   help="submit and return at once; follow with `bench status OUTPUT`")
    parser.set_defaults(no_wait=False, wait=True)


def parse_time_minutes(value, where: str = "--time") -> int:
    """Minutes from 90, '90', '1:30:00', '2-00:00', '1-12:00:00' or '45:00' (MM:SS)."""
    if isinstance(value, bool):
        raise UsageError(f"{where}: expected {SLURM_YAML_KEYS['time'][0]}, not {value!r}")
    if isinstance(value, (int, float)):
        minutes = float(value)
    else:
        text = str(value).strip()
        m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text)
        if not m:
            raise UsageError(f"{where}: {value!r} is not {SLURM_YAML_KEYS['time'][0]}")
        days, a, b, c = m.groups()
        days = int(days or 0)
        if days and b is None:  # D-HH
            minutes = days * 1440 + int(a) * 60
        elif c is not None:  # [D-]HH:MM:SS
            minutes = days * 1440 + int(a) * 60 + int(b) + int(c) / 60
        elif b is not None:  # D-HH:MM, or MM:SS as sbatch reads it
            minutes = days * 1440 + int(a) * 60 + int(b) if days else int(a) + int(b) / 60
        else:
            minutes = int(a)
    if minutes <= 0:
        raise UsageError(f"{where}: the time limit must be positive, not {value!r}")
    return max(1, int(round(minutes)))


def _check_int(value, key: str, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        else:
            raise UsageError(f"{where}: expected {SLURM_YAML_KEYS[key][0]}, not {value!r}")
    if value < minimum:
        raise UsageError(f"{where}: expected {SLURM_YAML_KEYS[key][0]}, not {value}")
    return value


def _check_str(value, key: str, where: str) -> str:
    if isinstance(value, (dict, list, bool)) or value is None or str(value).strip() == "":
        raise UsageError(f"{where}: expected {SLURM_YAML_KEYS[key][0]}, not {value!r}")
    return str(value).strip()


def parse_sbatch_args(args: list[str], where: str = "--sbatch-arg") -> dict:
    """['--constraint=a100', '--exclusive', '--gres gpu:2'] -> submitit additional_parameters."""
    out: dict = {}
    for raw in args:
        for token in _split_sbatch(raw, where):
            if not token.startswith("--"):
                raise UsageError(f"{where}: {raw!r}: give long sbatch options such as "
                                 f"--constraint=a100 (short forms like -C are not accepted)")
            name, eq, value = token[2:].partition("=")
            if not re.fullmatch(r"[a-z][a-z0-9-]*", name):
                raise UsageError(f"{where}: {raw!r} is not an sbatch option")
            if name in _RESERVED_SBATCH:
                raise UsageError(f"{where}: --{name} is set by bench/submitit itself and cannot "
                                 f"be overridden")
            out[name.replace("-", "_")] = value if eq else True
    return out


def _split_sbatch(raw: str, where: str) -> list[str]:
    try:
        parts = shlex.split(str(raw))
    except ValueError as exc:
        raise UsageError(f"{where}: {raw!r}: {exc}") from None
    tokens: list[str] = []
    for p in parts:  # "--gres gpu:2" -> "--gres=gpu:2"
        if tokens and not p.startswith("-") and "=" not in tokens[-1]:
            tokens[-1] = f"{tokens[-1]}={p}"
        else:
            tokens.append(p)
    return tokens


def slurm_options(args, sweep: dict | None) -> dict:
    """Merge CLI flags over the sweep YAML's ``slurm:`` mapping; validated and normalised.

    Returns a dict with keys partition, account, qos, time_min, gpus_per_job, cpus_per_job,
    mem, array_parallelism, sbatch_args (list), additional_parameters (dict), submitit_dir,
    max_requeue (None where unset).
    """
    yaml_opts = (sweep or {}).get("slurm") or {}
    if not isinstance(yaml_opts, dict):
        raise UsageError(f"sweep file: 'slurm' must be a mapping of options "
                         f"({', '.join(SLURM_YAML_KEYS)}), not {type(yaml_opts).__name__}")
    for key in yaml_opts:
        if key not in SLURM_YAML_KEYS:
            hint = did_you_mean(str(key), SLURM_YAML_KEYS, cutoff=0.5, prefix="; did you mean")
            raise UsageError(f"sweep file: unknown key 'slurm.{key}'{hint} (known: "
                             f"{', '.join(SLURM_YAML_KEYS)})")
    merged: dict = {}
    for key in SLURM_YAML_KEYS:
        flag_value = getattr(args, key, None) if args is not None else None
        if flag_value is not None and flag_value != []:
            merged[key] = (flag_value, SLURM_YAML_KEYS[key][1])
        elif key in yaml_opts and yaml_opts[key] is not None:
            merged[key] = (yaml_opts[key], f"sweep file: slurm.{key}")
    opts: dict = {k: None for k in ("partition", "account", "qos", "gpus_per_job",
                                    "cpus_per_job", "mem", "array_parallelism", "submitit_dir",
                                    "max_requeue")}
    for key in ("partition", "account", "qos"):
        if key in merged:
            opts[key] = _check_str(*merged[key][:1], key, merged[key][1])
    value, where = merged.get("time", (DEFAULT_TIME, "--time"))
    opts["time_min"] = parse_time_minutes(value, where)
    for key, minimum in (("gpus_per_job", 0), ("cpus_per_job", 1), ("array_parallelism", 1),
                         ("max_requeue", 0)):
        if key in merged:
            opts[key] = _check_int(merged[key][0], key, merged[key][1], minimum)
    if "mem" in merged:
        value, where = merged["mem"]
        text = str(value).strip().upper() if not isinstance(value, bool) else ""
        if isinstance(value, int) and not isinstance(value, bool):
            text = f"{value}M"  # sbatch's unit for a bare number is megabytes
        if not re.fullmatch(r"\d+(\.\d+)?[KMGT]?B?", text):
            raise UsageError(f"{where}: expected {SLURM_YAML_KEYS['mem'][0]}, not {value!r}")
        opts["mem"] = text.removesuffix("B") if text.endswith(("KB", "MB", "GB", "TB")) else text
    sbatch = []
    if "sbatch_args" in merged:
        value, where = merged["sbatch_args"]
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise UsageError(f"{where}: expected {SLURM_YAML_KEYS['sbatch_args'][0]}, "
                             f"not {value!r}")
        sbatch = list(value)
    opts["sbatch_args"] = sbatch
    opts["additional_parameters"] = parse_sbatch_args(sbatch)
    if "submitit_dir" in merged:
        opts["submitit_dir"] = _check_str(merged["submitit_dir"][0], "submitit_dir",
                                          merged["submitit_dir"][1])
    return opts
