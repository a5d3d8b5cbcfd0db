"""Faults and bad input: each one gets a clear message and exit code, and nothing is lost.

The catalogue in docs/reliability.md points at these tests (and at tests/test_cli_run.py,
tests/test_datasets.py, tests/test_feature_cache.py, tests/test_locks.py, tests/test_kill.py).
"""

import dataclasses
import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import TINY

BASE = ["run", "--backbone", TINY, "--pretrained", "none", "--quiet"]
ALL_METHODS = ("zero_shot", "linear_probe", "coop", "clip_adapter_visual", "clip_adapter_text",
               "clip_adapter_both")


def _records(out: Path, failed: bool = False) -> dict[str, dict]:
    """cell_id -> record of every (done, or also failed) record under ``out``."""
    recs = {}
    for path in sorted((out / "results").rglob("*.json")):
        if path.name.endswith(".failed.json") and not failed:
            continue
        rec = json.loads(path.read_text())
        recs[rec["cell_id"]] = rec
    return recs


def _leftovers(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*") if p.name.endswith(".tmp") or p.suffix == ".lock")


def _fingerprint(rec: dict) -> dict:
    return {k: rec.get(k) for k in ("status", "metrics", "selected", "logits_sha256", "fewshot")}


@pytest.fixture()
def data_root(tmp_path):
    """A private copy of the miniature root, for tests that damage it."""
    from tests.miniroot import make_miniroot

    return make_miniroot(tmp_path / "data")


# --- determinism and leakage ----------------------------------------------------------------

def test_same_cells_twice_on_cpu_are_bit_identical(run_cli, miniroot, tmp_path):
    args = BASE + ["--data-root", miniroot, "--datasets", "eurosat", "--methods",
                   ",".join(ALL_METHODS), "--shots", "2", "--seeds", "1", "--set", "epochs=2",
                   "--device", "cpu"]
    for name in ("a", "b"):  # separate outputs and caches: everything is recomputed
        code, _, err = run_cli(*args, "--output", tmp_path / name)
        assert code == 0, err
    a, b = _records(tmp_path / "a"), _records(tmp_path / "b")
    assert len(a) == len(ALL_METHODS) and a.keys() == b.keys()
    for cid in a:
        assert _fingerprint(a[cid]) == _fingerprint(b[cid]), a[cid]["method"]
        assert len(a[cid]["logits_sha256"]) == 64
    rec = next(iter(a.values()))
    assert rec["seed"] == 1
    assert {"torch", "numpy", "open_clip", "sklearn", "python", "bench"} <= set(rec["versions"])


def test_task_has_no_test_data_by_construction():
    from methods.base import Task

    fields = {f.name for f in dataclasses.fields(Task)}
    assert fields == {"dataset", "classnames", "templates", "shots", "seed", "config", "device",
                      "train", "val", "train_views", "backbone"}
    assert not any("test" in f for f in fields)


def _rotate_test_labels(split_path: Path) -> None:
    data = json.loads(split_path.read_text())
    names = {label: name for _, label, name in data["train"]}
    n = len(names)
    data["test"] = [[rel, (label + 1) % n, names[(label + 1) % n]]
                    for rel, label, _ in data["test"]]
    split_path.write_text(json.dumps(data))


def test_test_labels_never_reach_a_method(run_cli, data_root, tmp_path):
    """Changing only the test labels changes the accuracy, never what a method chose or
    predicted: the fitted classifiers (logits on every test image) are bit-identical."""
    args = BASE + ["--datasets", "eurosat", "--methods", ",".join(ALL_METHODS)
                   + ",clip_adapter_visual:search", "--shots", "2", "--seeds", "1",
                   "--set", "epochs=2", "--device", "cpu"]
    code, _, err = run_cli(*args, "--data-root", data_root, "--output", tmp_path / "a")
    assert code == 0, err
    _rotate_test_labels(data_root / "eurosat" / "split_zhou_EuroSAT.json")
    code, _, err = run_cli(*args, "--data-root", data_root, "--output", tmp_path / "b")
    assert code == 0, err
    # Matched by cell, not by cell_id: the ids differ, since the split file (an input) changed.
    by_cell = lambda recs: {(r["method"], r["variant"], r["shots"], r["seed"]): r  # noqa: E731
                            for r in recs.values()}
    a, b = by_cell(_records(tmp_path / "a")), by_cell(_records(tmp_path / "b"))
    assert len(a) == len(ALL_METHODS) + 1 and a.keys() == b.keys()
    for cid in a:
        assert a[cid]["selected"] == b[cid]["selected"], a[cid]["method"]
        assert a[cid]["logits_sha256"] == b[cid]["logits_sha256"], a[cid]["method"]
    # the rotation did change the test labels: some accuracy moved
    assert any(a[c]["metrics"]["top1"] != b[c]["metrics"]["top1"] for c in a)
    search = [r for r in a.values() if r.get("variant") == "search"]
    assert search and search[0]["selected"]  # a val-only selection was made and recorded


# --- damaged files -------------------------------------------------------------------------

def test_corrupted_cache_entry_is_recomputed_with_a_warning(run_cli, miniroot, tmp_path):
    cache = tmp_path / "cache"
    args = BASE + ["--data-root", miniroot, "--datasets", "eurosat,dtd", "--methods",
                   "zero_shot,linear_probe", "--shots", "1", "--seeds", "1",
                   "--cache-dir", cache]
    code, _, err = run_cli(*args, "--output", tmp_path / "a")
    assert code == 0, err
    shards = sorted(cache.rglob("shard-*.bin"))
    assert shards
    for i, shard in enumerate(shards):  # flip a byte in some, cut others short
        data = bytearray(shard.read_bytes())
        if i % 2:
            data[-1] ^= 0xFF
        else:
            data = data[: len(data) // 2]
        shard.write_bytes(bytes(data))
    code, _, err = run_cli(*args, "--output", tmp_path / "b")
    assert code == 0, err
    # however many shards, in however many datasets: one warning, one count at the end
    damaged = [line for line in err.splitlines() if "damaged" in line]
    assert len(shards) > 2 and len(damaged) == 2, err
    assert damaged[0] == "bench: warning: feature cache: damaged shards found (checksum or size " \
                         "wrong); each is deleted and its features are recomputed (a run counts " \
                         "them at its end)"
    assert damaged[1].startswith(f"bench: warning: feature cache: {len(shards)} damaged shard(s) "
                                 f"were deleted and their features recomputed, e.g. {cache}")
    assert "UserWarning" not in err and "warnings.warn" not in err  # no source line
    a, b = _records(tmp_path / "a"), _records(tmp_path / "b")
    assert {c: _fingerprint(r) for c, r in a.items()} == {c: _fingerprint(r) for c, r in b.items()}


def test_damaged_result_record_is_rerun_not_reported(run_cli, miniroot, tmp_path):
    out = tmp_path / "out"
    args = BASE + ["--data-root", miniroot, "--datasets", "eurosat", "--methods", "zero_shot",
                   "--shots", "1", "--seeds", "1", "--output", out]
    code, _, err = run_cli(*args)
    assert code == 0, err
    path = next((out / "results").rglob("*.json"))
    good = json.loads(path.read_text())
    path.write_text(path.read_text()[:40])  # a partial file (copied by another tool, say)
    code, _, err = run_cli(*args)
    assert code == 0 and "1 to run" in err
    damaged = [line for line in err.splitlines() if "is damaged" in line]
    assert len(damaged) == 1 and damaged[0].startswith(f"bench: warning: result {path}"), err
    assert _fingerprint(json.loads(path.read_text())) == _fingerprint(good)


def test_temp_files_of_dead_writers_are_cleaned_and_live_ones_kept(tmp_path):
    from results.atomic import _HOST, clean_temp_files

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    names = {"dead": f".a.json~{_HOST}~{dead.pid}~x1.tmp",
             "live": f".b.json~{_HOST}~{os.getpid()}~x2.tmp",
             "other_young": ".c.json~elsewhere~1~x3.tmp",
             "other_old": ".d.json~elsewhere~1~x4.tmp"}
    for name in names.values():
        (tmp_path / "sub").mkdir(exist_ok=True)
        (tmp_path / "sub" / name).write_text("{")
    old = time.time() - 7 * 3600
    os.utime(tmp_path / "sub" / names["other_old"], (old, old))
    assert clean_temp_files(tmp_path) == 2
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == sorted(
        [names["live"], names["other_young"]])


@pytest.mark.parametrize("damage, needle", [
    ("truncate", "image file is truncated"),
    ("text", "cannot identify image file"),
    ("missing", "No such file or directory"),
])
def test_unreadable_image_fails_its_dataset_once_and_others_go_on(run_cli, data_root, tmp_path,
                                                                  damage, needle):
    import PIL.ImageFile

    split = json.loads((data_root / "eurosat" / "split_zhou_EuroSAT.json").read_text())
    victim = data_root / "eurosat" / "2750" / split["test"][0][0]
    if damage == "truncate":
        from PIL import Image
        import io

        buf = io.BytesIO()
        Image.effect_noise((64, 64), 60).convert("RGB").save(buf, format="JPEG")
        victim.write_bytes(buf.getvalue()[:-200])
    elif damage == "text":
        victim.write_text("<html>404 Not Found</html>")
    else:
        victim.unlink()
    out = tmp_path / "out"
    code, _, err = run_cli(*(BASE + ["--data-root", data_root, "--datasets", "eurosat,dtd",
                                     "--methods", "zero_shot,linear_probe", "--shots", "1",
                                     "--seeds", "1,2", "--output", out]))
    assert code == 1 and "Traceback" not in err
    assert err.count("cannot read image") == 1  # said once for the dataset, not per cell
    assert str(victim) in err and needle in err  # naming the file and the reason
    assert "4 cell(s) are recorded as failed" in err
    recs = _records(out, failed=True)
    assert len(recs) == 8
    failed = [r for r in recs.values() if r["status"] == "failed"]
    assert {r["dataset"] for r in failed} == {"eurosat"} and len(failed) == 4
    assert all(str(victim) in r["error"]["message"] for r in failed)
    assert all(r["status"] == "ok" for r in recs.values() if r["dataset"] == "dtd")
    assert PIL.ImageFile.LOAD_TRUNCATED_IMAGES is False  # nothing turned truncation into noise


@pytest.mark.parametrize("content, needle", [
    ("{\"train\": [[\"a.jpg\", 0, ", "is not valid JSON"),
    ("[[\"a.jpg\", 0, \"x\"]]", "must be a JSON object with keys 'train', 'val' and 'test'"),
    (None, "label 7 ('Forest', which is also the name of label 1; first at entry 0 of 'test') "
           "is out of range for 3 classes: labels must be 0..2 without gaps;"),
])
def test_bad_split_file_fails_its_dataset_with_one_message(run_cli, data_root, tmp_path,
                                                            content, needle):
    path = data_root / "eurosat" / "split_zhou_EuroSAT.json"
    if content is None:  # one label out of range
        data = json.loads(path.read_text())
        data["test"][0] = [data["test"][0][0], 7, "Forest"]
        content = json.dumps(data)
    path.write_text(content)
    out = tmp_path / "out"
    code, _, err = run_cli(*(BASE + ["--data-root", data_root, "--datasets", "eurosat,dtd",
                                     "--methods", "zero_shot", "--shots", "1", "--seeds", "1",
                                     "--output", out]))
    assert code == 1 and "Traceback" not in err
    assert err.count(needle) == 1, err
    recs = _records(out, failed=True)
    assert sorted((r["dataset"], r["status"]) for r in recs.values()) == [
        ("dtd", "ok"), ("eurosat", "failed")]


def test_class_with_fewer_than_k_images_takes_all_and_says_so(run_cli, miniroot, tmp_path):
    out = tmp_path / "out"
    code, _, err = run_cli(*(BASE + ["--data-root", miniroot, "--datasets", "eurosat",
                                     "--methods", "zero_shot", "--shots", "4", "--seeds", "1",
                                     "--output", out]))
    assert code == 0, err
    warning = [line for line in err.splitlines() if "fewer than 4 distinct images" in line]
    assert len(warning) == 1 and "'Herbaceous Vegetation Land' 3" in warning[0]
    assert "CoOp's rule" in warning[0] and "fewshot.short_classes" in warning[0]
    rec = next(iter(_records(out).values()))
    assert rec["fewshot"]["short_classes"]["train"] == {"2": 3}  # 3 of the asked 4: all of them
    assert rec["fewshot"]["n_train"] == 4 + 4 + 3
    assert rec["fewshot"]["short_classes"]["val"] == {"0": 2, "1": 2, "2": 2}


# --- the output folder ---------------------------------------------------------------------

def test_output_under_a_regular_file(run_cli, miniroot, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, _, err = run_cli(*(BASE + ["--data-root", miniroot, "--datasets", "eurosat",
                                     "--methods", "zero_shot", "--output", blocker / "out"]))
    assert code == 2 and f"{blocker} is a file, not a folder" in err
    assert "choose a folder you can write to" in err and "Traceback" not in err


def test_output_without_write_permission_even_as_root(run_cli, miniroot, tmp_path):
    locked = tmp_path / "ro"
    locked.mkdir()
    if os.geteuid() == 0:  # root ignores modes, but not the immutable attribute
        if shutil.which("chattr") is None or subprocess.run(
                ["chattr", "+i", str(locked)], capture_output=True).returncode != 0:
            pytest.skip("running as root on a file system without chattr +i")
    else:
        locked.chmod(0o500)
    try:
        code, _, err = run_cli(*(BASE + ["--data-root", miniroot, "--datasets", "eurosat",
                                         "--methods", "zero_shot", "--output", locked / "out"]))
        code2, _, err2 = run_cli(*(BASE + ["--data-root", miniroot, "--datasets", "eurosat",
                                           "--methods", "zero_shot", "--output", locked]))
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(locked)], check=True)
        locked.chmod(0o700)
    assert code == 2 and "cannot write there" in err and "choose a folder you can write to" in err
    assert code2 == 2 and "cannot write there" in err2
    assert "Traceback" not in err + err2


class _FullDisk:
    """os.fsync raising ENOSPC for the ``after``-th and later files whose path contains
    ``where`` (what a full disk does: the data cannot be made durable)."""

    def __init__(self, where: str, after: int):
        self.where, self.after, self.seen = where, after, 0
        self.real = os.fsync

    def __call__(self, fd):
        path = os.readlink(f"/proc/self/fd/{fd}")
        if self.where in path and ".pred.npz~" not in path:  # counts records, not their predictions
            self.seen += 1
            if self.seen > self.after:
                raise OSError(errno.ENOSPC, "No space left on device")
        return self.real(fd)


@pytest.mark.parametrize("where, after", [("/results/", 2), ("/cache/", 0)])
def test_disk_full_stops_with_one_message_and_keeps_what_was_written(
        run_cli, miniroot, tmp_path, monkeypatch, where, after):
    out = tmp_path / "out"
    args = BASE + ["--data-root", miniroot, "--datasets", "eurosat", "--methods",
                   "zero_shot,linear_probe", "--shots", "1,2", "--seeds", "1", "--output", out]
    full = _FullDisk(where, after)
    monkeypatch.setattr(os, "fsync", full)
    code, _, err = run_cli(*args)
    monkeypatch.undo()
    assert code == 1 and "Traceback" not in err
    assert err.count("disk full writing") == 1 and "free space on /" in err
    assert "then rerun the same command to resume" in err
    assert _leftovers(out) == []  # no partial or temporary file, no lock left
    written = _records(out, failed=True)
    assert len(written) == after if where == "/results/" else not written
    assert all(r["status"] == "ok" for r in written.values())
    # freeing space and rerunning finishes the grid with the same numbers as a clean run
    code, _, err = run_cli(*args)
    assert code == 0, err
    code, _, err = run_cli(*(args[:-1] + [tmp_path / "clean"]))
    assert code == 0, err
    final, clean = _records(out), _records(tmp_path / "clean")
    assert len(final) == 4
    assert {c: _fingerprint(r) for c, r in final.items()} == {
        c: _fingerprint(r) for c, r in clean.items()}
    for cid, rec in written.items():  # records written before the disk filled are untouched
        assert final[cid] == rec


# --- two runs on one output ----------------------------------------------------------------

_SPY = textwrap.dedent("""
    # Runs `bench ...` with a spy on the runner: every cell computed is logged as
    # "<pid> <cell id>", and both processes start running cells at the same moment.
    import os, sys, time
    from pathlib import Path
    import bench.runner as runner
    import bench.runner.cell as lifecycle
    from results.records import cell_id

    log, barrier, n = Path(os.environ["SPY_LOG"]), Path(os.environ["SPY_BARRIER"]), 2
    real_run_cell, real_run_job = lifecycle.run_cell, runner.run_job

    def run_cell(cell, *a, **k):
        with open(log, "a") as fh:
            fh.write(f"{os.getpid()} {cell_id(cell)}\\n")
        time.sleep(0.3)
        return real_run_cell(cell, *a, **k)

    def run_job(job):
        (barrier / str(os.getpid())).touch()
        deadline = time.time() + 60
        while len(list(barrier.iterdir())) < n and time.time() < deadline:
            time.sleep(0.01)
        return real_run_job(job)

    lifecycle.run_cell, runner.run_job = run_cell, run_job
    from bench.cli import main
    sys.exit(main(sys.argv[1:]))
""")


@pytest.mark.slow
def test_two_concurrent_runs_compute_every_cell_exactly_once(miniroot, tmp_path):
    out = tmp_path / "out"
    spy = tmp_path / "spy.py"
    spy.write_text(_SPY)
    (tmp_path / "barrier").mkdir()
    env = {**os.environ, "SPY_LOG": str(tmp_path / "computed.log"),
           "SPY_BARRIER": str(tmp_path / "barrier"), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    argv = [sys.executable, str(spy)] + BASE + [
        "--data-root", str(miniroot), "--datasets", "eurosat,dtd", "--methods",
        "zero_shot,linear_probe", "--shots", "1,2", "--seeds", "1", "--output", str(out),
        "--device", "cpu"]
    procs = [subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, results):
        assert p.returncode == 0, err
    lines = (tmp_path / "computed.log").read_text().split()
    pids, cells = lines[0::2], lines[1::2]
    recs = _records(out)
    assert len(recs) == 8 and all(r["status"] == "ok" for r in recs.values())
    assert sorted(cells) == sorted(recs)  # every cell computed once: none twice, none lost
    assert len(set(pids)) == 2  # both processes did work (they shared the grid)
    assert any("another bench process" in err for _, err in results)
    assert _leftovers(out) == []


def test_unreadable_train_image_read_only_by_the_probe_fails_the_rest_of_its_dataset_once(
        run_cli, data_root, tmp_path):
    """Train images with the eval transform are encoded on first use (the linear probe): a
    broken one then fails that dataset's remaining cells with one message, not one per cell."""
    split = json.loads((data_root / "eurosat" / "split_zhou_EuroSAT.json").read_text())
    victim = data_root / "eurosat" / "2750" / split["train"][0][0]
    victim.write_text("<html>404 Not Found</html>")
    out = tmp_path / "out"
    code, _, err = run_cli(*(BASE + ["--data-root", data_root, "--datasets", "eurosat,dtd",
                                     "--methods", "zero_shot,linear_probe", "--shots", "16",
                                     "--seeds", "1,2", "--output", out]))
    assert code == 1 and "Traceback" not in err
    assert err.count("cannot read image") == 1 and str(victim) in err
    recs = _records(out, failed=True)
    assert len(recs) == 8
    eurosat = {(r["method"], r["seed"]): r["status"] for r in recs.values()
               if r["dataset"] == "eurosat"}
    assert all(s == "failed" for (m, _), s in eurosat.items() if m == "linear_probe")
    # zero-shot never reads train images: its cells (run first) keep their results
    assert all(s == "ok" for (m, _), s in eurosat.items() if m == "zero_shot")
    assert all(r["status"] == "ok" for r in recs.values() if r["dataset"] == "dtd")
