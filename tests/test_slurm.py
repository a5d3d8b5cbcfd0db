"""End-to-end tests of `bench run --launcher slurm|local` and `bench status` on a real SLURM.

They need the single-node cluster of scripts/slurm_up.sh (munge, MariaDB, slurmdbd, slurmctld,
slurmd on localhost). Without one they skip, except where SLURM is expected: when CI is set
(CI=true/1), BENCH_REQUIRE_SLURM=1, or scripts/ci/setup-slurm.sh left its mark
($BENCH_SLURM_STATE/required): then a missing cluster fails them, so a broken cluster never
passes as "skipped".

Small data (two 3-class datasets of 32 px images generated here) and the tiny random-init test
model (seeded, so every process computes the same numbers); each SLURM task pays the torch +
open_clip import (about 6-10 s).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

STATE = Path(os.environ.get("BENCH_SLURM_STATE", "/var/tmp/bench-slurm"))
REPO = Path(__file__).resolve().parents[1]
GRID = ["--backbone", "bench-test-tiny", "--pretrained", "none", "--datasets", "eurosat,dtd",
        "--methods", "zero_shot,linear_probe", "--shots", "1,2", "--seeds", "1,2", "--quiet",
        "--set", "linear_probe.bisection_steps=1"]  # a quicker C search
N_CELLS = 16  # 2 datasets x 2 methods x 2 shots x 2 seeds


def _slurm_problem() -> str | None:
    for tool in ("sinfo", "sbatch", "sacct", "scancel"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not on PATH"
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                             timeout=20)
        if out.returncode != 0:
            return f"sinfo fails: {out.stderr.strip()[:200]}"
        if not any(s.strip() in ("idle", "mixed", "allocated") for s in out.stdout.split()):
            return f"no usable node (sinfo says {out.stdout.split()})"
        acct = subprocess.run(["sacct", "-n", "-X", "-S", "now-1minutes"], capture_output=True,
                              text=True, timeout=20)
        if acct.returncode != 0:
            return f"sacct fails (accounting is needed): {acct.stderr.strip()[:200]}"
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"SLURM does not answer: {exc}"
    return None


def _slurm_required() -> bool:
    return (os.environ.get("CI", "").lower() in ("1", "true", "yes")
            or os.environ.get("BENCH_REQUIRE_SLURM") == "1"
            or (STATE / "required").exists())


@pytest.fixture(scope="module", autouse=True)
def slurm_cluster():
    problem = _slurm_problem()
    if problem:
        msg = (f"no local SLURM cluster ({problem}); bring one up with `sudo "
               f"scripts/slurm_up.sh` (stop it with scripts/slurm_down.sh)")
        if _slurm_required():
            pytest.fail(msg + " -- SLURM is required here (CI, BENCH_REQUIRE_SLURM=1 or "
                              f"{STATE}/required)")
        pytest.skip(msg)


def make_data(root: Path) -> Path:
    """Two tiny CoOp-layout datasets (EuroSAT and DTD folders and split files), 3 classes."""
    rng = np.random.default_rng(0)
    from PIL import Image

    specs = {"eurosat": ("2750", "split_zhou_EuroSAT.json", ["Annual Crop Land", "Forest", "River"]),
             "dtd": ("images", "split_zhou_DescribableTextures.json", ["banded", "dotted", "striped"])}
    for name, (sub, split_file, classes) in specs.items():
        split = {"train": [], "val": [], "test": []}
        for label, cname in enumerate(classes):
            base = np.array([100 + 25 * label, 140 - 20 * label, 110 + 10 * label])
            for sname, n in (("train", 6), ("val", 3), ("test", 8)):
                for i in range(n):
                    rel = f"c{label}/{sname}_{i}.png"
                    img = np.clip(base + rng.normal(0, 70, (32, 32, 3)), 0, 255).astype("uint8")
                    path = root / name / sub / rel
                    path.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(img).save(path)
                    split[sname].append([rel, label, cname])
        (root / name / split_file).write_text(json.dumps(split))
    return root


def bench(*args, timeout: float = 300, check: bool = False) -> subprocess.CompletedProcess:
    # One thread everywhere (sbatch and submitit pass the environment on to the tasks): float
    # reductions then add up in the same order in every process, so the numbers can be
    # compared exactly.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "bench", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=REPO)
    if check and proc.returncode != 0:
        raise AssertionError(f"bench {' '.join(map(str, args))} -> {proc.returncode}\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


def results(output: Path) -> dict[str, dict]:
    """cell_id -> the numbers that must not depend on the launcher."""
    out = {}
    for path in (output / "results").rglob("*.json"):
        assert not path.name.startswith("."), f"temporary file left behind: {path}"
        rec = json.loads(path.read_text())
        assert rec["cell_id"] not in out, f"cell {rec['cell_id']} written twice"
        out[rec["cell_id"]] = {"status": rec["status"], "metrics": rec.get("metrics"),
                               "selected": rec.get("selected"), "path": str(path)}
    return out


def wait_until(cond, timeout: float, what: str, poll: float = 0.5):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = cond()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def latest_submission(output: Path) -> dict:
    subs = sorted((output / "sweep" / "submissions").glob("*.json"))
    assert subs, f"no submission recorded under {output}/sweep/submissions"
    return json.loads(subs[-1].read_text())


def all_tasks_ended(output: Path) -> bool:
    from bench.slurm import active_tasks

    return not active_tasks(latest_submission(output))


def sacct_rows(job_id: str, duplicates: bool = False) -> list[list[str]]:
    cmd = ["sacct", "-n", "-P", "-X", "-o", "JobID,State,Account,QOS", "-j", job_id]
    if duplicates:
        cmd.insert(1, "-D")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout
    return [line.split("|") for line in out.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return make_data(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def reference(data_root, tmp_path_factory) -> dict[str, dict]:
    """The whole grid through the default in-process launcher."""
    out = tmp_path_factory.mktemp("inprocess")
    bench("run", *GRID, "--data-root", data_root, "--output", out, check=True)
    ref = results(out)
    assert len(ref) == N_CELLS and all(r["status"] == "ok" for r in ref.values())
    return ref


def _same(ref: dict, got: dict, ids=None) -> None:
    ids = set(ref) if ids is None else set(ids)
    assert set(got) == ids
    for cid in ids:
        assert got[cid]["status"] == ref[cid]["status"] == "ok", got[cid]["path"]
        assert got[cid]["metrics"] == ref[cid]["metrics"], got[cid]["path"]
        assert got[cid]["selected"] == ref[cid]["selected"], got[cid]["path"]


def test_slurm_sweep_matches_inprocess(data_root, reference, tmp_path):
    """A sweep YAML with a `slurm:` mapping, grouped per method so several array tasks share
    one dataset's features in one cache and one results folder."""
    out = tmp_path / "out"
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        f"output: {out}\n"
        "launcher: slurm\n"
        "group_by: method\n"
        "slurm:\n"
        "  partition: debug\n"
        "  account: bench\n"
        "  qos: normal\n"
        "  time: '0:20:00'\n"
        "  cpus_per_job: 1\n"
        "  mem: 2G\n"
        "  array_parallelism: 4\n"
        "  sbatch_args: ['--comment=bench-e2e']\n")
    proc = bench("run", "--config", sweep, *GRID, "--data-root", data_root, timeout=400)
    assert proc.returncode == 0, proc.stderr
    assert "submitted 4 task(s) with 16 cells as SLURM array" in proc.stderr
    _same(reference, results(out))

    sub = latest_submission(out)
    assert sub["launcher"] == "slurm" and len(sub["tasks"]) == 4
    assert sorted(len(t["cells"]) for t in sub["tasks"]) == [4, 4, 4, 4]
    rows = sacct_rows(sub["array_id"])
    assert len(rows) == 4 and all(r[1] == "COMPLETED" for r in rows), rows
    assert all(r[2] == "bench" and r[3] == "normal" for r in rows), rows
    script = (Path(sub["submitit_dir"]) / sub["array_id"]
              / f"{sub['array_id']}_submission.sh").read_text()
    for line in ("--partition=debug", "--time=20", "--cpus-per-task=1", "--mem=2G",
                 "--comment=bench-e2e", "--array=0-3%4", "--signal=USR2@"):
        assert line in script, f"{line} missing from the sbatch script:\n{script}"
    # one cache shared by the tasks: no temporary file of an interrupted write is left
    assert (out / "cache").is_dir() and not list((out / "cache").rglob(".*.tmp"))

    status = bench("status", out, check=True)
    assert "16 cells: 16 done, 0 failed, 0 pending" in status.stdout
    assert status.stdout.count("COMPLETED") == 4

    again = bench("run", "--config", sweep, *GRID, "--data-root", data_root, check=True)
    assert "16 already done" in again.stderr and "submitted" not in again.stderr
    assert len(list((out / "sweep" / "submissions").glob("*.json"))) == 1


def test_cancelled_task_then_rerun_completes(data_root, reference, tmp_path):
    out = tmp_path / "out"
    args = ["run", *GRID, "--data-root", data_root, "--output", out, "--launcher", "slurm",
            "--time", "20"]
    # submitted held, so nothing runs until the test releases it: no race with the cancel
    proc = bench(*args, "--no-wait", "--sbatch-arg=--hold", check=True)
    assert "not waiting" in proc.stderr
    sub = latest_submission(out)
    assert len(sub["tasks"]) == 2  # default grouping: one task per (backbone, dataset)
    victim = sub["tasks"][1]
    # a rerun while the array still has cells to write would compute them twice: refused
    early = bench(*args)
    assert early.returncode == 1 and "still queued or running" in early.stderr, early.stderr
    subprocess.run(["scancel", victim["job_id"]], check=True, timeout=30)
    subprocess.run(["scontrol", "release", sub["array_id"]], check=True, timeout=30)
    wait_until(lambda: all_tasks_ended(out), 180, "both tasks to end")
    before = results(out)
    written = {cid: Path(r["path"]).stat().st_mtime_ns for cid, r in before.items()}
    victim_ids = {c["id"] for c in victim["cells"]}
    missing = victim_ids - set(before)
    assert missing == victim_ids  # cancelled while held: it wrote nothing
    assert set(before) >= {c["id"] for c in sub["tasks"][0]["cells"]}

    status = bench("status", out)
    assert status.returncode == 1, status.stdout
    # a task cancelled before it started may leave no accounting record: GONE
    assert any(f"{victim['job_id']} {state}" in status.stdout for state in ("CANCELLED", "GONE"))
    assert f"{len(missing)} pending" in status.stdout
    assert "no longer running" in status.stdout and victim["stderr"] in status.stdout

    rerun = bench(*args, timeout=400)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(before)} already done), {len(missing)} to run in 1 job(s)" in rerun.stderr
    resub = latest_submission(out)
    assert {c["id"] for t in resub["tasks"] for c in t["cells"]} == missing
    after = results(out)
    _same(reference, after)  # nothing lost, nothing duplicated, same numbers
    for cid, mtime in written.items():  # cells done before the cancel were not redone
        assert Path(after[cid]["path"]).stat().st_mtime_ns == mtime
    status = bench("status", out)
    assert status.returncode == 0 and "16 done, 0 failed, 0 pending" in status.stdout


FLAKY = """
from methods import METHODS
from methods.zero_shot import zero_shot


@METHODS.register("flaky", display_name="Flaky (test plugin)", order=99)
def flaky(task):
    if task.shots == 2:
        raise RuntimeError("injected failure at 2 shots")
    return zero_shot(task)
"""


def test_failing_cell_is_reported_and_others_finish(data_root, reference, tmp_path):
    """A method raising inside some cells of a SLURM task (bad config values are refused at plan
    time, so the failure comes from a plugin method, which the tasks import too)."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "flaky.py").write_text(FLAKY)
    (plugins / "flaky.yaml").write_text("description: fails at 2 shots\ndefaults: {}\n")
    out = tmp_path / "out"
    grid = [a if a != "zero_shot,linear_probe" else "zero_shot,flaky" for a in GRID[:-2]]
    proc = bench("run", *grid, "--include", plugins, "--data-root", data_root, "--output", out,
                 "--launcher", "slurm", "--datasets", "eurosat", "--time", "20", timeout=300)
    assert proc.returncode == 1, proc.stderr
    got = results(out)
    failed = {cid: r for cid, r in got.items() if r["status"] == "failed"}
    ok = {cid: r for cid, r in got.items() if r["status"] == "ok"}
    assert len(got) == 8 and len(failed) == 2  # flaky k=2, seeds 1 and 2
    assert all("/flaky/" in r["path"] and "/k2-" in r["path"] for r in failed.values())
    # the other cells finished, with the numbers of the in-process run (zero_shot cells have the
    # same config, hence the same cell ids, as the reference)
    zs = {cid for cid, r in ok.items() if "/zero_shot/" in r["path"]}
    assert len(zs) == 4
    _same({c: reference[c] for c in zs}, {c: ok[c] for c in zs})
    assert len(ok) == 6

    status = bench("status", out, "--include", plugins, "--tracebacks")
    assert status.returncode == 1
    assert "6 done, 2 failed, 0 pending" in status.stdout
    assert status.stdout.count("eurosat/flaky/k2/s") == 2
    assert "RuntimeError: injected failure at 2 shots" in status.stdout
    assert "Traceback (most recent call last)" in status.stdout
    assert "COMPLETED" in status.stdout  # the task itself went on and ended normally


def _open_fifo_writer(path: Path, timeout: float) -> int:
    """Open a FIFO for writing once a reader has it open (O_NONBLOCK fails until then)."""
    end = time.monotonic() + timeout
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            if time.monotonic() > end:
                raise AssertionError(f"no reader opened {path} within {timeout} s") from None
            time.sleep(0.2)
            continue
        os.set_blocking(fd, True)
        return fd


def test_checkpoint_requeue_resumes(data_root, reference, tmp_path):
    """A running task is checkpointed and requeued; the requeued run resumes where it stopped.

    One task runs the whole grid (group_by backbone: both datasets in turn). One test image of
    the second dataset is a named pipe, so the task writes every cell of the first dataset and
    then blocks in open() on the pipe: a deterministic "running, half done" point, whatever the
    machine's speed. USR2 without SIGTERM (what SLURM sends before a time limit; submitit's
    `_interrupt(timeout=True)`) then makes submitit checkpoint the task and requeue it (submitit
    calls it a preemption, as the task ran far less than its 20 minutes; the requeue is the
    same). The requeued run skips the cells already written and blocks on the pipe again; the
    test then feeds the real image through it and the sweep finishes."""
    root = tmp_path / "data"
    shutil.copytree(data_root, root)
    out = tmp_path / "out"
    proc = bench("run", *GRID, "--data-root", root, "--output", out, "--launcher", "slurm",
                 "--group-by", "backbone", "--time", "20", "--no-wait", "--sbatch-arg=--hold",
                 check=True)
    sub = latest_submission(out)
    (task,) = sub["tasks"]
    assert len(task["cells"]) == N_CELLS
    second = task["cells"][-1]["label"].split("/")[0]
    first_cells = [c for c in task["cells"] if not c["label"].startswith(second + "/")]
    assert len(first_cells) == N_CELLS // 2
    folder = {"eurosat": root / "eurosat" / "2750", "dtd": root / "dtd" / "images"}[second]
    split_file = next((root / second).glob("split_zhou_*.json"))
    pipe = folder / json.loads(split_file.read_text())["test"][0][0]
    image = pipe.read_bytes()
    pipe.unlink()
    os.mkfifo(pipe)
    subprocess.run(["scontrol", "release", sub["array_id"]], check=True, timeout=30)

    wait_until(lambda: all((out / c["result"]).exists() for c in first_cells), 180,
               f"the {second} cells' predecessors")
    mtimes = {c["id"]: (out / c["result"]).stat().st_mtime_ns for c in first_cells}
    time.sleep(1)
    assert not any((out / c["result"]).exists() for c in task["cells"] if c not in first_cells)
    log_path = Path(task["stdout"])
    subprocess.run(["scancel", "--signal=USR2", task["job_id"]], check=True, timeout=30)
    wait_until(lambda: "bench: checkpoint of" in log_path.read_text(), 60, "the checkpoint")
    wait_until(lambda: log_path.read_text().count("bench: array task for") == 2, 120,
               "the requeued run to start")
    fd = _open_fifo_writer(pipe, 120)  # the requeued run is blocked on the pipe again
    with os.fdopen(fd, "wb") as fh:
        fh.write(image)
    wait_until(lambda: all_tasks_ended(out), 180, "the requeued task to end")

    log = log_path.read_text()
    assert "Requeued" in log, log[-3000:]
    assert log.count("bench: array task for") == 2, log[-3000:]  # ran twice: requeued
    finished = [ln for ln in log.splitlines() if ln.startswith("bench: finished")]
    assert len(finished) == 1 and f"'skipped': {N_CELLS // 2}" in finished[0], finished
    states = [r[1] for r in sacct_rows(task["job_id"], duplicates=True)]
    assert "REQUEUED" in states or len(states) >= 2, states
    got = results(out)
    _same(reference, got)  # every cell once, the numbers of the in-process run
    for cid, mtime in mtimes.items():  # the cells written before the requeue were kept
        assert Path(got[cid]["path"]).stat().st_mtime_ns == mtime
    status = bench("status", out, check=True)
    assert f"{N_CELLS} cells: {N_CELLS} done, 0 failed, 0 pending" in status.stdout


def test_local_launcher_matches_inprocess(data_root, reference, tmp_path):
    """submitit's local executor (subprocesses) runs the same job function."""
    out = tmp_path / "out"
    proc = bench("run", *GRID, "--data-root", data_root, "--output", out, "--launcher", "local",
                 "--datasets", "eurosat", "--time", "20", timeout=300)
    assert proc.returncode == 0, proc.stderr
    got = results(out)
    _same({c: reference[c] for c in got}, got)
    assert len(got) == 8
    status = bench("status", out, check=True)
    assert "8 done, 0 failed, 0 pending" in status.stdout and "FINISHED" in status.stdout
