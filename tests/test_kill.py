"""`bench run` killed with SIGKILL at random moments, then rerun, ends with exactly the results
of a run that was never interrupted, and leaves no partial file and no lock behind.

Kill points: while the model loads or features are extracted (no record yet), right after the
first record appears, and in the middle of the grid; each with a random extra delay, so that
over runs the kill lands inside feature-shard writes, split writes and record writes. The
random seed is printed on failure (set BENCH_KILL_SEED to replay it).
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[1]
GRID = ["--datasets", "eurosat,dtd", "--methods", "zero_shot,linear_probe,clip_adapter_visual",
        "--shots", "1,2", "--seeds", "1,2", "--set", "epochs=2", "--device", "cpu"]
N_CELLS = 2 * 3 * 2 * 2


def _bench(miniroot, out: Path) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "bench", "run", "--backbone", TINY, "--pretrained", "none",
            "--quiet", "--data-root", str(miniroot), "--output", str(out)] + GRID
    return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)


def _n_records(out: Path) -> int:
    folder = out / "results"
    return sum(1 for _ in folder.rglob("k*.json")) if folder.is_dir() else 0


def _outcome(out: Path) -> dict:
    recs = {}
    for path in (out / "results").rglob("*.json"):
        rec = json.loads(path.read_text())  # every file parses: none is partial
        recs[rec["cell_id"]] = {k: rec.get(k) for k in ("status", "metrics", "selected",
                                                         "logits_sha256", "fewshot")}
    return recs


def _kill_when(proc: subprocess.Popen, out: Path, records: int, delay: float) -> str:
    """SIGKILL ``proc`` ``delay`` s after ``records`` records exist; says what happened."""
    deadline = time.time() + 120
    while _n_records(out) < records and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(delay)
    if proc.poll() is not None:
        return f"finished before the kill (code {proc.returncode})"
    n = _n_records(out)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return f"killed with {n} record(s) written"


@pytest.mark.slow
def test_sigkill_at_random_points_then_rerun_equals_an_uninterrupted_run(miniroot, tmp_path):
    seed = int(os.environ.get("BENCH_KILL_SEED", time.time_ns() % 10**6))
    rng = random.Random(seed)
    ref, out = tmp_path / "ref", tmp_path / "out"
    proc = _bench(miniroot, ref)
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    reference = _outcome(ref)
    assert len(reference) == N_CELLS

    points = [(0, rng.uniform(0.5, 3.0)),  # loading, extracting, writing cache shards
              (1, rng.uniform(0.0, 0.3)),  # right after the first record
              (N_CELLS // 2, rng.uniform(0.0, 0.5))]  # mid-grid
    story = []
    for records, delay in points:
        proc = _bench(miniroot, out)
        story.append(f"kill after {records} records + {delay:.2f} s: "
                     f"{_kill_when(proc, out, records, delay)}")
    assert any("killed" in s for s in story), story
    proc = _bench(miniroot, out)  # the rerun that finishes the grid
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    note = f"BENCH_KILL_SEED={seed}; " + "; ".join(story)
    print(note)
    assert _outcome(out) == reference, note
    leftovers = [p for p in out.rglob("*") if p.name.endswith(".tmp") or ".lock" in p.name]
    assert leftovers == [], note
