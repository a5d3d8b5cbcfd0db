"""Hostile input and faults on the CLI (issue 15): one clear line, the documented exit code, no
traceback, and nothing already written changed. Catalogue: docs/reliability.md.
"""

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[1]
BASE = ["run", "--backbone", TINY, "--pretrained", "none", "--quiet"]
ONE = ["--datasets", "eurosat", "--methods", "zero_shot", "--shots", "1", "--seeds", "1",
       "--device", "cpu"]


def _state(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (to show that nothing changed)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture()
def done(run_cli, miniroot, tmp_path_factory):
    """An output folder holding one finished cell."""
    out = tmp_path_factory.mktemp("done") / "out"
    code, _, err = run_cli(*(BASE + ["--data-root", miniroot, "--output", out] + ONE))
    assert code == 0, err
    return out


@pytest.fixture()
def immutable(tmp_path):
    """A folder nobody can write into (root included: chattr +i; others: mode 0555)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() == 0:
        if shutil.which("chattr") is None or subprocess.run(
                ["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
            pytest.skip("running as root on a file system without chattr +i")
    else:
        folder.chmod(0o555)
    yield folder
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    folder.chmod(0o755)


# --- the last resort ------------------------------------------------------------------------

def test_unexpected_exception_is_one_line_with_the_traceback_saved(run_cli, monkeypatch,
                                                                   tmp_path):
    import bench.commands.ls as ls

    def broken(args):
        raise RuntimeError("something nobody expected\nsecond line")

    monkeypatch.setattr(ls, "main", broken)
    monkeypatch.setenv("BENCH_CRASH_DIR", str(tmp_path))
    code, out, err = run_cli("ls", "methods")
    assert code == 1 and "Traceback" not in err and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("bench: internal error: RuntimeError: something nobody expected "
                               "second line; full traceback saved to ")
    saved = Path(lines[0].rsplit("saved to ", 1)[1])
    assert saved.parent == tmp_path
    text = saved.read_text()
    assert "Traceback" in text and "in broken" in text and "bench ls methods" in text


def test_usage_errors_still_exit_2_and_help_exits_0(run_cli):
    code, _, err = run_cli("ls", "nothing")
    assert code == 2 and "invalid choice" in err and "internal error" not in err
    with pytest.raises(SystemExit) as exc:
        run_cli("--help")
    assert exc.value.code == 0


# --- permissions ---------------------------------------------------------------------------

def test_cache_dir_that_cannot_be_written(run_cli, miniroot, done, immutable):
    before = _state(done)
    for cache in (immutable, immutable / "sub"):  # the folder itself, or one to create in it
        code, _, err = run_cli(*(BASE + ["--data-root", miniroot, "--output", done,
                                         "--cache-dir", cache, "--datasets", "dtd",
                                         "--methods", "zero_shot", "--shots", "1",
                                         "--seeds", "1", "--device", "cpu"]))
        assert code == 2 and "Traceback" not in err, err
        line = next(line for line in err.splitlines() if line.startswith("bench: error:"))
        assert str(immutable) in line and "choose a folder you can write to" in line
        assert "--cache-dir" in line
    after = _state(done)
    assert {k: v for k, v in after.items() if k in before} == before  # nothing changed
    assert not [k for k in after if k.endswith((".lock", ".tmp"))]


def test_report_and_plot_out_into_a_folder_that_cannot_be_written(run_cli, done, immutable):
    before = _state(done)
    for argv, target in ((["report", done, "--out", immutable / "t.md"], immutable / "t.md"),
                         (["plot", done, "--out", immutable / "curves"], immutable / "curves.png")):
        code, _, err = run_cli(*argv)
        assert code == 2 and "Traceback" not in err, err
        assert (f"bench: error: cannot write {target} (" in err
                and "choose a folder you can write to" in err), err
    code, _, err = run_cli("plot", done, "--out", immutable / "sub" / "curves")
    assert code == 2 and f"permission denied: {immutable / 'sub'}" in err
    assert _state(done) == before and list(immutable.iterdir()) == []


@pytest.mark.parametrize("dpi", ["-5", "0", "100000"])
def test_plot_dpi_out_of_range(run_cli, done, dpi):
    before = _state(done)
    code, _, err = run_cli("plot", done, "--dpi", dpi)
    assert code == 2
    assert f"bench: error: --dpi must be between 10 and 2400 (dots per inch of the PNG; " \
           f"default 150), got {dpi}" in err
    assert _state(done) == before  # no plots folder either


# --- file modes ------------------------------------------------------------------------------

@pytest.mark.parametrize("umask, want", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_honour_the_umask(run_cli, miniroot, tmp_path, umask, want):
    from results.atomic import atomic_write_text

    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        out = tmp_path / "out"
        code, _, err = run_cli(*(BASE + ["--data-root", miniroot, "--output", out] + ONE))
        assert code == 0, err
        code, _, err = run_cli("report", out, "--out", tmp_path / "table.md")
        assert code == 0, err
    finally:
        os.umask(old)
    files = [tmp_path / "a.txt", tmp_path / "table.md"] + [p for p in out.rglob("*") if p.is_file()]
    assert {"cache", "results"} <= {p.relative_to(out).parts[0] for p in files if out in p.parents}
    modes = {str(p): oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
    assert set(modes.values()) == {oct(want)}, modes


# --- split files -----------------------------------------------------------------------------

@pytest.fixture()
def data_root(tmp_path):
    from tests.miniroot import make_miniroot

    return make_miniroot(tmp_path / "data")


def test_split_path_leaving_the_dataset_fails_its_dataset_in_run(run_cli, data_root, tmp_path):
    path = data_root / "eurosat" / "split_zhou_EuroSAT.json"
    data = json.loads(path.read_text())
    data["test"][1][0] = "../../../../../../etc/hostname"
    path.write_text(json.dumps(data))
    out = tmp_path / "out"
    code, _, err = run_cli(*(BASE + ["--data-root", data_root, "--datasets", "eurosat,dtd",
                                     "--methods", "zero_shot", "--shots", "1", "--seeds", "1",
                                     "--output", out]))
    assert code == 1 and "Traceback" not in err
    needle = ("entry 1 of 'test' has the path '../../../../../../etc/hostname', which leaves "
              "the image folder ('..')")
    assert err.count(needle) == 1, err
    recs = [json.loads(p.read_text()) for p in (out / "results").rglob("*.json")]
    assert sorted((r["dataset"], r["status"]) for r in recs) == [("dtd", "ok"),
                                                                  ("eurosat", "failed")]


def test_label_out_of_range_counts_the_classes_of_the_file(tmp_path):
    """A 10-class file (labels 0..9) with one label damaged to 12: 10 classes, not 11."""
    from bench.base.errors import BenchError
    from datasets_registry.split_file import read_split_file

    names = [f"class{i}" for i in range(10)]
    rows = [[f"{n}/{j}.jpg", i, n] for i, n in enumerate(names) for j in range(3)]
    data = {"train": rows, "val": rows[:10], "test": [list(r) for r in rows]}
    data["test"][4] = [data["test"][4][0], 12, "class1"]
    path = tmp_path / "split.json"
    path.write_text(json.dumps(data))
    with pytest.raises(BenchError) as exc:
        read_split_file(path)
    assert str(exc.value) == (
        f"split file {path}: label 12 ('class1', which is also the name of label 1; first at "
        f"entry 4 of 'test') is out of range for 10 classes: labels must be 0..9 without gaps; "
        f"the file is damaged or not a CoOp split file")
    data["test"][4] = [data["test"][4][0], 12, "new name"]  # a new name: then 11 classes
    path.write_text(json.dumps(data))
    with pytest.raises(BenchError, match=r"label 12 \('new name'; first at entry 4 of 'test'\) "
                                         r"is out of range for 11 classes: labels must be 0..10 "
                                         r"without gaps, and labels \[10\] never occur"):
        read_split_file(path)


# --- flags -----------------------------------------------------------------------------------

@pytest.mark.parametrize("flag, value, needle", [
    ("--shots", "1,,2", "--shots '1,,2': item 2 is empty (two commas in a row, or a comma at an "
                        "end); give e.g. --shots 1,2,4,8,16"),
    ("--shots", "1,2,", "item 3 is empty"),
    ("--seeds", "", "--seeds is empty: give a comma-separated list of positive integers, e.g. "
                    "--seeds 1,2,3"),
    ("--seeds", "1,x", "--seeds: 'x' is not an integer; give a comma-separated list of positive "
                       "integers, e.g. --seeds 1,2,3"),
])
def test_bad_shot_and_seed_lists(run_cli, miniroot, tmp_path, flag, value, needle):
    out = tmp_path / "out"
    code, _, err = run_cli(*(BASE + ["--data-root", miniroot, "--output", out, "--dry-run",
                                     flag, value]))
    assert code == 2 and needle in err and "Traceback" not in err
    assert "--shots 1,2,4" not in err or flag == "--shots"
    assert not out.exists()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_without_a_gpu_is_a_usage_error_before_any_work(run_cli, miniroot, tmp_path, device):
    out = tmp_path / "out"
    for extra in ([], ["--dry-run"]):
        code, _, err = run_cli(*(BASE + ["--data-root", miniroot, "--output", out, "--device",
                                         device] + ONE[:-2] + extra))
        assert code == 2, err
        assert f"bench: error: --device {device}: no CUDA GPU is visible on this machine" in err
        assert "use --device cpu" in err and "cells" not in err  # before planning
    assert not out.exists()


def test_cuda_is_not_checked_for_slurm_jobs(monkeypatch):
    """SLURM jobs run on GPU nodes: a login node without a GPU may submit --device cuda."""
    from bench.execution import _check_device

    _check_device("cuda", "slurm")  # no error
    with pytest.raises(Exception, match="GPU index must be a number"):
        _check_device("cuda:x", "inprocess")


# --- signals ---------------------------------------------------------------------------------

def _records(out: Path) -> list[Path]:
    folder = out / "results"
    return sorted(p for p in folder.rglob("*.json")) if folder.is_dir() else []


@pytest.mark.slow
def test_sigterm_stops_cleanly_releases_locks_and_exits_143(miniroot, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "bench"] + BASE + [
        "--data-root", str(miniroot), "--output", str(out), "--datasets", "eurosat,dtd",
        "--methods", "zero_shot,linear_probe,clip_adapter_visual", "--shots", "1,2",
        "--seeds", "1,2", "--set", "epochs=30", "--device", "cpu"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 120
    while not _records(out) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "finished before the signal: " + proc.stderr.read()
    locks = list((out / "locks").glob("*.lock"))
    assert locks  # it holds locks when the signal comes
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == ("bench: terminated (SIGTERM); results written so far "
                                            "are kept, rerun to resume")
    assert "Traceback" not in err
    assert not [p for p in out.rglob("*") if p.suffix == ".lock" or p.name.endswith(".tmp")]
    kept = {p: p.read_bytes() for p in _records(out)}
    assert kept and all(json.loads(b) for b in kept.values())  # complete records only
    assert not any(json.loads(b)["status"] == "failed" for b in kept.values())  # not a cell error
    rerun = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert all(p.read_bytes() == b for p, b in kept.items())  # nothing written was changed
    assert len(_records(out)) == 2 * 3 * 2 * 2


def test_sigterm_handler_is_only_installed_where_nobody_owns_the_signal():
    from bench.base.errors import Terminated, sigterm_as_interrupt

    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    with sigterm_as_interrupt():
        handler = signal.getsignal(signal.SIGTERM)
        assert callable(handler)
        with pytest.raises(Terminated):
            handler(signal.SIGTERM, None)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored

    def submitit_like(signum, frame):  # e.g. submitit's checkpoint/requeue handler
        pass

    signal.signal(signal.SIGTERM, submitit_like)
    try:
        with sigterm_as_interrupt():
            assert signal.getsignal(signal.SIGTERM) is submitit_like  # left alone
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    assert issubclass(Terminated, KeyboardInterrupt) and not issubclass(Terminated, Exception)


# --- warnings --------------------------------------------------------------------------------

def test_warnings_are_one_line_each_and_once(run_cli, monkeypatch):
    import bench.commands.ls as ls

    def noisy(args):
        for _ in range(3):
            warnings.warn("record x is damaged\n  (not JSON)", UserWarning)
        warnings.warn("another one", RuntimeWarning)
        return 0

    monkeypatch.setattr(ls, "main", noisy)
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # the filters would not hide the repeats
        code, _, err = run_cli("ls", "methods")
    assert code == 0
    assert err.splitlines() == ["bench: warning: record x is damaged (not JSON)",
                                "bench: warning: another one"]


# --- issue 27: one line and exit 2 where a traceback or a silent default was -----------------

DRY = BASE + ["--dry-run"]


@pytest.mark.parametrize("seeds", ["4294967296", "1,99999999999999999999"])
@pytest.mark.parametrize("dry", [True, False])
def test_seed_too_large_for_numpy(run_cli, miniroot, tmp_path, seeds, dry):
    out = tmp_path / "out"
    argv = BASE + ["--data-root", miniroot, "--output", out] + ONE[:6] + ["--seeds", seeds]
    code, _, err = run_cli(*(argv + (["--dry-run"] if dry else [])))
    assert code == 2 and "Traceback" not in err and "internal error" not in err, err
    assert err.count("\n") == 1 and "--seeds: " in err and "is too large: at most 4294967295" in err
    assert not out.exists()
    code, _, err = run_cli(*(argv[:-1] + ["4294967295", "--dry-run"]))  # the largest is fine
    assert code == 0, err


@pytest.mark.parametrize("device", ["tpu", "meta", "gpu", ""])
def test_unknown_device_is_a_usage_error(run_cli, miniroot, tmp_path, device):
    code, _, err = run_cli(*(BASE + ["--data-root", miniroot, "--output", tmp_path / "o"]
                             + ONE[:-2] + ["--device", device, "--dry-run"]))
    assert code == 2 and "Traceback" not in err and "internal error" not in err
    assert f"bench: error: --device {device!r}: choose auto" in err and "cuda:N" in err


def _sweep(tmp_path, content) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


@pytest.mark.parametrize("content, needle", [
    (b"methods: [zero_shot]\n# caf\xe9\n", "is not UTF-8 text (byte 0xe9 at offset 26); save it "
                                           "as UTF-8"),
    ("", "is empty (no keys): give at least the grid's methods or datasets"),
    ("# only a comment\n", "is empty (no keys)"),
    ("shots: [1]\nmethods: [zero_shot]\nshots: [2]\n",
     "is not valid YAML at line 3, column 1: key 'shots' is given twice (first at line 1); keep "
     "one"),
    ("set: {lr: 0.1, lr: 0.2}\n", "key 'lr' is given twice (first at line 1)"),
])
def test_sweep_file_faults_name_the_file(run_cli, tmp_path, content, needle):
    path = _sweep(tmp_path, content)
    code, out, err = run_cli(*(DRY + ["--config", path, "--output", tmp_path / "o"]))
    assert code == 2 and "Traceback" not in err and "internal error" not in err, err
    assert f"bench: error: sweep file {path} {needle}" in err or \
        (f"bench: error: sweep file {path}" in err and needle in err), err
    assert "cells" not in err and out == ""


@pytest.mark.parametrize("content, needle", [
    ("seeds: [4294967296]\n", "seeds: 4294967296 is too large"),
    ("seeds: []\n", "seeds is empty: give a comma-separated list of positive integers, e.g. "
                    "seeds: [1, 2, 3]"),
    ("shots: '1,,2'\n", "shots '1,,2': item 2 is empty"),
    ("device: tpu\n", "device 'tpu': choose auto"),
    ("datasets: []\n", "datasets is empty: name at least one dataset"),
    ("methods: ''\n", "methods is empty: name at least one method"),
    ("batch_size: 0\n", "batch_size must be a positive number"),
    ("launcher: cloud\n", "launcher 'cloud': choose one of"),
])
def test_sweep_values_are_named_by_file_and_key_not_by_flag(run_cli, tmp_path, content, needle):
    path = _sweep(tmp_path, content)
    code, _, err = run_cli(*(DRY + ["--config", path, "--output", tmp_path / "o"]))
    assert code == 2 and "Traceback" not in err, err
    assert f"bench: error: sweep file {path}: {needle}" in err, err
    assert " --" not in err.split(needle)[0].split("bench: error:")[-1]  # no flag named first


@pytest.mark.parametrize("value", ["", " ", ","])
def test_empty_datasets_is_an_error_like_empty_methods(run_cli, tmp_path, value):
    code, _, err = run_cli(*(DRY + ["--datasets", value, "--output", tmp_path / "o"]))
    assert code == 2 and "bench: error: --datasets is empty: name at least one dataset (see " \
                         "`bench ls datasets`)" in err
    code, _, err = run_cli(*(DRY + ["--methods", value, "--output", tmp_path / "o"]))
    assert code == 2 and "--methods is empty" in err


@pytest.mark.parametrize("protocol, datasets", [("crossdataset", "dtd"), ("domain", "all")])
def test_transfer_source_that_cannot_be_read_is_refused_at_plan_time(run_cli, data_root,
                                                                     tmp_path, protocol, datasets):
    shutil.rmtree(data_root / "imagenet")
    out = tmp_path / "out"
    code, _, err = run_cli(*(DRY + ["--data-root", data_root, "--protocol", protocol,
                                    "--datasets", datasets, "--methods", "zero_shot",
                                    "--shots", "1", "--seeds", "1", "--output", out]))
    assert code == 2 and "Traceback" not in err
    assert "bench: error: source dataset imagenet cannot be read: dataset ImageNet: folder" in err
    assert "or choose another with --source" in err and "cells" not in err


def test_ls_methods_says_when_an_included_plugin_cannot_be_imported(run_cli, tmp_path,
                                                                    plugin_state):
    broken = tmp_path / "broken.py"
    broken.write_text("import no_such_module_for_bench\nfrom methods import METHODS\n\n\n"
                      "@METHODS.register('broken_plugin', description='never imports')\n"
                      "def fit(task):\n    pass\n")
    # a fresh process: in this one the registries are loaded, and --include imports at once
    proc = subprocess.run([sys.executable, "-m", "bench", "ls", "methods", "--include", broken],
                          cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    code, out, err = proc.returncode, proc.stdout, proc.stderr
    assert code == 2 and "broken_plugin" not in out
    assert f"bench: error: plugin {broken} failed to import: ModuleNotFoundError: No module " \
           f"named 'no_such_module_for_bench'; fix it or leave it out of --include" in err


def test_library_log_lines_come_as_bench_warnings():
    """open_clip logs with ``logging.warning(...)``: without a handler, Python prints
    ``WARNING:root:...``; in a command they are bench's one-line warnings, once each."""
    probe = ("import logging, sys\n"
             "import bench.commands.ls as ls\n"
             "def noisy(args):\n"
             "    for _ in range(2):\n"
             "        logging.warning('QuickGELU mismatch between final model config')\n"
             "    logging.getLogger('open_clip.factory').error('weights missing')\n"
             "    return 0\n"
             "ls.main = noisy\n"
             "from bench.cli import main\n"
             "sys.exit(main(['ls', 'methods']))\n")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [
        "bench: warning: QuickGELU mismatch between final model config",
        "bench: warning: open_clip: weights missing"]


def test_data_root_without_backbone_says_what_it_uses_and_fails_at_once_offline(
        run_cli, miniroot, tmp_path, monkeypatch):
    """Offline and without the default weights: one line before anything is planned, not a
    plan and then a failure in the first job."""
    import bench.backbone

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(bench.backbone, "cached_weights", lambda name, tag: False)
    argv = ["run", "--data-root", miniroot, "--output", tmp_path / "o", "--quiet"] + ONE
    for extra in (["--dry-run"], []):
        code, out, err = run_cli(*(argv + extra))
        assert code == 1 and "Traceback" not in err and out == ""
        lines = err.splitlines()
        assert len(lines) == 2 and lines[0] == (
            "bench: no --backbone given: the protocol's RN50-quickgelu with --pretrained openai "
            "(name another with --backbone and --pretrained)")
        assert lines[1].startswith("bench: error: could not get the pretrained weights "
                                   "RN50-quickgelu/openai: they are not in the local open_clip/"
                                   "Hugging Face cache")
        assert "(HF_HUB_OFFLINE=1 is set)" in lines[1] and "--pretrained /path/to/" in lines[1]
        assert not (tmp_path / "o").exists()
    monkeypatch.setattr(bench.backbone, "cached_weights", lambda name, tag: True)
    code, _, err = run_cli(*(argv + ["--dry-run"]))  # cached: planned, saying what it uses
    assert code == 0 and "no --backbone given: the protocol's RN50-quickgelu" in err
    monkeypatch.setattr(bench.backbone, "cached_weights", lambda name, tag: False)
    code, _, err = run_cli(*(argv + ["--dry-run", "--launcher", "slurm"]))  # jobs run elsewhere
    assert code == 0, err


def test_cached_weights_looks_in_the_hugging_face_cache_only(tmp_path):
    from bench.backbone import cached_weights

    assert cached_weights("RN50-quickgelu", "openai", hub_cache=str(tmp_path)) is False
    snapshot = tmp_path / "models--timm--resnet50_clip.openai" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("abc123")
    (snapshot / "open_clip_model.safetensors").write_bytes(b"weights")
    assert cached_weights("RN50-quickgelu", "openai", hub_cache=str(tmp_path)) is True


def test_ls_backbones_says_what_it_waits_for_when_slow(run_cli, monkeypatch):
    import bench.backbone
    import bench.progress

    monkeypatch.setattr(bench.backbone, "list_backbones", lambda: [("RN50", ["openai"])])
    code, out, err = run_cli("ls", "backbones")
    assert code == 0 and "RN50" in out and err == ""  # fast: nothing said

    def slow():
        time.sleep(0.5)
        return [("RN50", ["openai"])]

    monkeypatch.setattr(bench.backbone, "list_backbones", slow)
    monkeypatch.setattr(bench.progress, "SLOW_S", 0.05)
    code, out, err = run_cli("ls", "backbones")
    assert code == 0 and "RN50" in out
    assert err.startswith("bench: loading open_clip to list its models and pretrained tags")
