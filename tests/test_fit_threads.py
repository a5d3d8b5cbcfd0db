"""Fits run on --fit-threads CPU threads (default 1); image encoding keeps torch's default."""

from __future__ import annotations

import json

import pytest
import torch

from bench.threads import torch_threads

PROBE = '''
import json, os, torch
from methods import METHODS
from methods.zero_shot import zero_shot

@METHODS.register("probe_threads")
def probe(task):
    with open(os.environ["THREADS_OUT"], "a") as f:
        f.write(json.dumps({"fit": torch.get_num_threads()}) + "\\n")
    return zero_shot(task)
'''


def test_torch_threads_sets_and_restores():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with torch_threads(0):  # 0 / None: unchanged
        assert torch.get_num_threads() == before


@pytest.mark.parametrize("flag,want", [((), 1), (("--fit-threads", "2"), 2)])
def test_fit_runs_on_the_asked_threads_and_the_record_says_so(tmp_path, miniroot, run_cli,
                                                               monkeypatch, flag, want,
                                                               plugin_state):
    (tmp_path / "plug").mkdir()
    (tmp_path / "plug" / "probe_threads.py").write_text(PROBE)
    (tmp_path / "plug" / "probe_threads.yaml").write_text("defaults: {}\nschema: {}\n")
    seen = tmp_path / "seen.jsonl"
    monkeypatch.setenv("THREADS_OUT", str(seen))
    before = torch.get_num_threads()
    code, _, err = run_cli("run", "--include", tmp_path / "plug", "--data-root", miniroot,
                           "--datasets", "dtd", "--methods", "probe_threads", "--shots", "1",
                           "--seeds", "1", "--backbone", "bench-test-tiny", "--pretrained",
                           "none", "--device", "cpu", "--output", tmp_path / "o", "--quiet",
                           *flag)
    assert code == 0, err
    assert json.loads(seen.read_text())["fit"] == want
    (rec,) = [json.loads(p.read_text()) for p in (tmp_path / "o" / "results").rglob("*.json")]
    assert rec["timings"]["fit_threads"] == want
    assert torch.get_num_threads() == before  # restored after the cell


def test_bad_fit_threads_is_a_usage_error(tmp_path, run_cli):
    code, _, err = run_cli("run", "--fit-threads", "-1", "--output", tmp_path, "--dry-run")
    assert code == 2 and "--fit-threads" in err and "Traceback" not in err
