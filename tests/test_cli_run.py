"""`bench run` end to end on the miniature data root, and its answers to bad input."""

import json
import os
import time
from pathlib import Path

import pytest

from tests.conftest import TINY

BASE = ["run", "--backbone", TINY, "--pretrained", "none", "--quiet"]


def _records(out: Path):
    return sorted((out / "results").rglob("*.json"))


def test_run_rerun_resumes_and_computes_nothing(run_cli, miniroot, tmp_path):
    out = tmp_path / "out"
    args = BASE + ["--data-root", miniroot, "--datasets", "eurosat,dtd", "--methods",
                   "zero_shot,linear_probe", "--shots", "1,2", "--seeds", "1,2", "--output", out]
    code, _, err = run_cli(*args)
    assert code == 0, err
    files = _records(out)
    assert len(files) == 2 * 2 * 2 * 2
    rec = json.loads(files[0].read_text())
    for key in ("backbone", "weights", "dataset", "method", "config", "shots", "seed",
                "metrics", "timings", "versions", "fewshot"):
        assert key in rec
    assert rec["status"] == "ok" and 0 <= rec["metrics"]["top1"] <= 100
    split = json.loads((out / rec["fewshot"]["path"]).read_text())
    assert len(split["train"]) == rec["fewshot"]["n_train"]
    assert not Path(split["train"][0][0]).is_absolute()  # portable subset
    mtimes = {f: f.stat().st_mtime_ns for f in files}
    code, _, err = run_cli(*args)
    assert code == 0 and "0 to run" in err
    assert {f: f.stat().st_mtime_ns for f in _records(out)} == mtimes
    # Growing the grid runs only the new cells.
    code, _, err = run_cli(*(args[:-6] + ["--shots", "1,2,4", "--seeds", "1,2", "--output", out]))
    assert code == 0 and "8 to run" in err
    assert len(_records(out)) == 24
    # ... and the report reads them back: every method and dataset by its display name.
    code, table, err = run_cli("report", out, "--color", "never")
    assert code == 0, err
    for name in ("Zero-shot CLIP", "Linear probe", "EuroSAT", "DTD", "Average", "4-shot"):
        assert name in table
    code, _, err = run_cli("report", out, "--format", "markdown", "--out", tmp_path / "t.md")
    assert code == 0 and "| Linear probe" in (tmp_path / "t.md").read_text()


def test_sweep_yaml_and_set_overrides(run_cli, miniroot, tmp_path):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(f"backbone: {TINY}\npretrained: none\ndata_root: {miniroot}\n"
                     f"datasets: [eurosat]\nmethods: [linear_probe]\nshots: [2]\nseeds: [1]\n"
                     f"output: {tmp_path / 'o'}\nset: {{bisection_steps: 0}}\n")
    code, _, err = run_cli("run", "--config", sweep, "--quiet", "--set", "linear_probe.max_iter=50")
    assert code == 0, err
    rec = json.loads(_records(tmp_path / "o")[0].read_text())
    assert rec["config"]["bisection_steps"] == 0 and rec["config"]["max_iter"] == 50
    assert rec["shots"] == 2 and len(rec["selected"]["c_trace"]) == 7


@pytest.mark.parametrize("extra, needle", [
    (["--methods", "zero_shott"], "Did you mean 'zero_shot'"),
    (["--methods", "nothing*"], "matches no method"),
    (["--methods", ","], "--methods is empty"),
    (["--methods", "linear_probe:nope"], "no variant 'nope'"),
    (["--datasets", "eurosatt"], "Did you mean 'eurosat'"),
    (["--shots", ""], "--shots is empty"),
    (["--shots", "1,x"], "'x' is not an integer"),
    (["--shots", "0"], "must be >= 1"),
    (["--shots", "2,2"], "listed twice"),
    (["--seeds", "1.5"], "not an integer"),
    (["--set", "nokey=1"], "no selected method has a config key 'nokey'"),
    (["--set", "linear_probe.nokey=1"], "unknown key 'nokey'"),
    (["--set", "novalue"], "expected key=value"),
    (["--batch-size", "0"], "must be a positive number"),
    (["--launcher", "cloud"], "invalid choice"),
    (["--autocast", "maybe"], "invalid choice"),
    (["--cache-dtype", "int8"], "invalid choice"),
])
def test_bad_input_is_a_clear_usage_error(run_cli, miniroot, tmp_path, extra, needle):
    code, out, err = run_cli(*(BASE + ["--data-root", miniroot, "--output", tmp_path, "--dry-run"]
                               + extra))
    assert code == 2
    assert needle in err and "Traceback" not in err


def test_bad_paths_and_weights(run_cli, miniroot, tmp_path):
    cases = [
        (["--data-root", tmp_path / "missing"], "does not exist"),
        (["--data-root", miniroot / "eurosat" / "split_zhou_EuroSAT.json"], "is a file"),
        (["--backbone", "RN5O"], "unknown backbone 'RN5O'"),
        (["--pretrained", tmp_path / "nope.pt"], "no such checkpoint file"),
        (["--pretrained", "not_a_tag"], "neither a file nor a known open_clip tag"),
    ]
    for extra, needle in cases:
        argv = BASE + ["--data-root", miniroot, "--output", tmp_path / "o", "--dry-run"] + extra
        code, _, err = run_cli(*argv)
        assert code == 2 and needle in err, (extra, err)


def test_checkpoint_that_is_not_a_checkpoint(run_cli, miniroot, tmp_path):
    junk = tmp_path / "weights.pt"
    junk.write_bytes(b"this is not a checkpoint at all")
    code, _, err = run_cli(*(BASE[:3] + ["--pretrained", junk, "--data-root", miniroot,
                                         "--datasets", "eurosat", "--methods", "zero_shot",
                                         "--shots", "1", "--seeds", "1", "--output", tmp_path / "o"]))
    assert code == 2 and "not an open_clip/CLIP checkpoint" in err and "Traceback" not in err


def test_offline_tag_fails_fast_with_one_clear_sentence(run_cli, miniroot, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    t0 = time.perf_counter()
    code, _, err = run_cli("run", "--backbone", "RN50-quickgelu", "--pretrained", "openai",
                           "--data-root", miniroot, "--datasets", "eurosat", "--methods",
                           "zero_shot", "--shots", "1", "--seeds", "1", "--output", tmp_path / "o")
    assert time.perf_counter() - t0 < 30
    assert code == 1
    assert "RN50-quickgelu/openai" in err and "--pretrained /path/to/checkpoint.pt" in err
    assert "Traceback" not in err


def test_malformed_and_unknown_sweep_yaml(run_cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("methods: [zero_shot\nshots: 1")
    code, _, err = run_cli("run", "--config", bad, "--dry-run")
    assert code == 2 and "not valid YAML" in err and "line" in err
    typo = tmp_path / "typo.yaml"
    typo.write_text("metods: [zero_shot]\n")
    code, _, err = run_cli("run", "--config", typo, "--dry-run")
    assert code == 2 and "unknown key 'metods'" in err and "Did you mean 'methods'" in err
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("batch_size: lots\n")
    code, _, err = run_cli("run", "--config", wrong, "--dry-run")
    assert code == 2 and "'batch_size' must be int" in err
    code, _, err = run_cli("run", "--config", tmp_path / "absent.yaml", "--dry-run")
    assert code == 2 and "does not exist" in err
    for text, needle in [("cache_dtype: fp16\n", "cache_dtype 'fp16': choose one of float32, float16"),
                         ("autocast: sometimes\n", "autocast 'sometimes': choose one of auto, on, off")]:
        wrong.write_text(text)
        code, _, err = run_cli("run", "--config", wrong, "--dry-run")
        assert code == 2 and needle in err, err


def test_feature_options_resolve_and_are_recorded(run_cli, miniroot, tmp_path):
    from bench.cli import build_parser
    from bench.resolve import resolve

    sweep = tmp_path / "s.yaml"
    sweep.write_text("autocast: false\ncache_dtype: float16\n")
    argv = BASE[1:] + ["--data-root", str(miniroot), "--output", str(tmp_path / "o")]
    opts = resolve(build_parser().parse_args(["run", *argv])).options
    assert opts["autocast"] == "auto" and opts["cache_dtype"] == "float32"  # the defaults
    opts = resolve(build_parser().parse_args(["run", *argv, "--config", str(sweep)])).options
    assert opts["autocast"] == "off" and opts["cache_dtype"] == "float16"  # YAML false -> off
    opts = resolve(build_parser().parse_args(["run", *argv, "--config", str(sweep),
                                              "--autocast", "on"])).options
    assert opts["autocast"] == "on"  # the flag wins over the YAML
    out = tmp_path / "run"
    code, _, err = run_cli(*(BASE + ["--data-root", miniroot, "--datasets", "dtd", "--methods",
                                     "zero_shot", "--shots", "1", "--seeds", "1", "--output", out,
                                     "--cache-dtype", "float16", "--autocast", "on"]))
    assert code == 0, err
    rec = json.loads(_records(out)[0].read_text())
    # autocast applies on CUDA only: on this CPU the features are fp32, stored as float16
    assert rec["features"] == {"device": "cpu", "precision": "fp32", "cache_dtype": "float16"}


def test_cache_dtype_choices_are_the_caches_dtypes():
    from bench.resolve import CACHE_DTYPES
    from bench.features import DTYPES

    assert set(CACHE_DTYPES) == set(DTYPES)


def test_autocast_auto_is_on_for_cuda_only():
    import torch

    from bench.runner.context import _autocast

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert _autocast("auto", cuda) and not _autocast("auto", cpu)
    assert _autocast("on", cuda) and not _autocast("off", cuda)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_output_without_write_permission(run_cli, miniroot, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    code, _, err = run_cli(*(BASE + ["--data-root", miniroot, "--datasets", "eurosat",
                                     "--methods", "zero_shot", "--output", ro / "out"]))
    assert code == 2 and "choose a folder you can write to" in err


def test_ls(run_cli):
    code, out, _ = run_cli("ls", "methods")
    assert code == 0 and "zero_shot" in out and "linear_probe" in out
    code, out, _ = run_cli("ls", "datasets")
    assert code == 0 and "EuroSAT" in out
    code, out, _ = run_cli("ls", "backbones")
    assert code == 0 and "RN50-quickgelu" in out and "openai" in out


def test_zero_shot_and_linear_probe_over_all_eleven_datasets(run_cli, miniroot, tmp_path):
    from datasets_registry import COOP_TAG, DATASETS

    out = tmp_path / "all"
    code, stdout, err = run_cli(*(BASE + ["--data-root", miniroot, "--datasets", "all",
                                          "--methods", "zero_shot,linear_probe", "--shots", "1,2",
                                          "--seeds", "1", "--output", out]))
    assert code == 0, err
    records = [json.loads(p.read_text()) for p in _records(out)]
    assert {r["dataset"] for r in records} == set(DATASETS.names(COOP_TAG))
    assert len(records) == 11 * 2 * 2 and all(r["status"] == "ok" for r in records)
    # The table names every dataset by its display name, plus the 11-dataset average.
    for name in ("ImageNet", "FGVCAircraft", "UCF101", "Average"):
        assert name in stdout


def _cached_keys(cache: Path) -> set[tuple]:
    keys = [json.loads(p.read_text()) for p in cache.rglob("key.json")]
    return {(k["dataset"], k["split"], k["transform"]) for k in keys}


def test_eval_features_of_train_and_val_are_encoded_only_for_methods_that_read_them(
        run_cli, miniroot, tmp_path):
    out = tmp_path / "out"
    args = BASE + ["--data-root", miniroot, "--datasets", "dtd", "--shots", "1,2", "--seeds", "1",
                   "--output", out]
    code, _, err = run_cli(*(args + ["--methods", "clip_adapter_visual", "--set", "epochs=2"]))
    assert code == 0, err
    # The protocol's fresh crops per epoch live in memory for the run; only test is cached.
    assert _cached_keys(out / "cache") == {("dtd", "test", "eval")}
    code, _, err = run_cli(*(args + ["--methods", "linear_probe"]))
    assert code == 0, err
    assert {("dtd", "train", "eval"), ("dtd", "val", "eval")} <= _cached_keys(out / "cache")
    # The first probe cell encoded the union for all; that time is encode_s, not fit_s.
    probe = [json.loads(f.read_text())["timings"] for f in _records(out)
             if json.loads(f.read_text())["method"] == "linear_probe"]
    assert len(probe) == 2 and sum("encode_s" in t for t in probe) == 1
    assert all(t["fit_s"] >= 0 for t in probe)
