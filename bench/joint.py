"""Joint fits (``bench run --joint-fits``): the cells of one seed that differ only in shots,
trained together by a method that can (CoOp, KgCoOp: one text-encoder pass per step for all,
methods.coop.train_together).

Why: on a GPU a CoOp step over a few hundred class prompts is bound by kernel launches, not
arithmetic (a 100-class step is a small fraction of the GPU), so K cells in one pass should cost
about one. On a CPU a pass costs about its prompts, so joining pays only for tiny passes, where
the per-step overhead is most of a step (benchmarks/results/coop_joint.md: 1.3-1.9x for 2-5 cells
of 10 classes, 0.83-1.0x from 50 classes); ``auto`` (the default) therefore allows 1,024 prompts
a pass on CUDA and 50 on a CPU (five 10-class cells: the demo's CoOp fits 1.30x faster, the same
logits). Results equal the one-by-one fits up to float rounding (docs/methods.md, "Joint fits");
each record says which cells it trained with (``joint_fit``).

A method offers it where it registers: ``fit_together`` (tasks -> one Fitted per task) and
``join_key`` (config -> what must agree for two cells to share a pass, or None when this
config cannot: CoOp's class-specific context, say).
"""

from __future__ import annotations

import json

from bench.protocols import protocol_of

# Prompts (cells x classes) one joint pass may hold. On CUDA: five 100-class cells, two of
# SUN397's 397; ImageNet's 1,000-class cells, whose pass is already large, run alone. On a CPU:
# five 10-class cells (EuroSAT's, the demo's); 20 classes and up run alone.
DEFAULT_JOINT_PROMPTS = 1024
CPU_JOINT_PROMPTS = 50
JOINT_CHOICES = ("auto", "on", "off")


def joint_limit(option, device) -> int:
    """The most prompts per joint pass (0: no joint fits) for the run's option and device:
    ``auto`` is :data:`DEFAULT_JOINT_PROMPTS` on CUDA, :data:`CPU_JOINT_PROMPTS` elsewhere;
    ``on`` is :data:`DEFAULT_JOINT_PROMPTS` on any device; ``off`` or 0 is off; a number is
    that limit."""
    if option in (None, "auto"):
        return DEFAULT_JOINT_PROMPTS if device.type == "cuda" else CPU_JOINT_PROMPTS
    return {"on": DEFAULT_JOINT_PROMPTS, "off": 0}.get(option, option)


def check_option(value) -> int | str | None:
    """``--joint-fits`` / a sweep's ``joint_fits`` as given -> auto, on, off or a number of
    prompts (0 = off); None when it is none of them. YAML reads a bare on / off as a boolean."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, str) and value in JOINT_CHOICES:
        return value
    try:
        n = int(value)
    except (TypeError, ValueError):
        return None
    return n if n >= 0 else None


def _key(cell) -> tuple | None:
    from methods import METHODS  # imports the method modules (torch): at run time only

    entry = METHODS.entry(cell["method"])
    join_key = entry.extra.get("join_key")
    if "fit_together" not in entry.extra or join_key is None:
        return None
    key = join_key(cell["config"])
    if key is None:
        return None
    rest = {k: v for k, v in cell.items() if k not in ("shots", "config", "variant", "inputs")}
    return (json.dumps(rest, sort_keys=True, default=str), protocol_of(cell), key)


def fit_units(cells: list[dict], limit: int, n_classes: int) -> list[list[dict]]:
    """``cells`` (one dataset and seed) in the groups they are fitted in: cells of the same
    method and join key, at most ``limit // n_classes`` a group, the most shots first (they
    train longest; fewer-shot cells drop out of the pass early); every other cell alone. The
    groups keep the order of their first cell."""
    per = limit // max(n_classes, 1)
    if per < 2:
        return [[c] for c in cells]
    groups: dict = {}
    ordered = []  # each cell alone, or its key's group at the place of the group's first cell
    for cell in cells:
        key = _key(cell)
        if key is None:
            ordered.append([cell])
        elif key in groups:
            groups[key].append(cell)
        else:
            groups[key] = [cell]
            ordered.append(groups[key])
    units = []
    for members in ordered:
        members = sorted(members, key=lambda c: -c["shots"])
        units.extend(members[i:i + per] for i in range(0, len(members), per))
    return units
